"""The API answers JSON whatever the Accept header asks for.

DRF would render its browsable HTML page for `Accept: text/html` (errors included) and a 406 for
an Accept it cannot meet. API views render only JSON (settings: DEFAULT_RENDERER_CLASSES); when a
client asks for something else, it gets JSON anyway rather than a refusal. Views with renderers of
their own (the schema as YAML or JSON, the Swagger UI page) still negotiate among them.
"""
from __future__ import annotations

from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class JSONContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (NotAcceptable, Http404):  # Http404: an unknown ?format=
            fallback = next((r for r in renderers if r.format == "json"), renderers[0])
            return fallback, fallback.media_type
