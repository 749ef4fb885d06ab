"""Query filters with the names users type: ?checkpoint=deepseek-r1&recipe=DQ3_K_M&status=ready."""
from __future__ import annotations

import django_filters

from registry.models import Variant


class VariantFilter(django_filters.FilterSet):
    checkpoint = django_filters.CharFilter(field_name="checkpoint__name")
    recipe = django_filters.CharFilter(field_name="recipe__name", lookup_expr="iexact")
    status = django_filters.ChoiceFilter(choices=Variant.Status.choices)

    class Meta:
        model = Variant
        fields = ["checkpoint", "recipe", "status"]
