"""The OpenAPI schema at /api/schema/: what each operation takes and every answer it can give.

The schema is a contract (tests/registry/api/test_schema_contract.py runs Schemathesis against the
live API), so this module holds what drf-spectacular cannot see in the views:

- `AutoSchema` adds the error answers every operation can give (the JSON body of registry.api.errors),
  marks an operation public when its permissions let an anonymous caller through, and marks the
  fields a serializer may withhold (`withheld_fields`: null for readers who may not see them);
- serializers of the bodies views build by hand (pull manifest, fit, comparison, quantization outcome);
- one `extend_schema_view` per view, applied there as a decorator: request and response bodies,
  status codes other than the default, parameters and examples.
Examples name what `dsq bootstrap` creates (deepseek-r1, the built-in recipes), so they work on any registry.
"""
from __future__ import annotations

import re

from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema,
                                   extend_schema_view)
from rest_framework import serializers
from rest_framework.request import Request

from registry import pulls
from registry.api import serializers as api
from registry.models import Release

# What each error status means in this API; an operation lists those it can give.
ERRORS = {
    400: "The request is malformed or names something that cannot be used (the message says what).",
    401: "No token where one is needed, or an invalid token.",
    403: "The caller may not do this (role, requester rules, CSRF for browser sessions).",
    404: "Nothing by that name or id (or not visible to this caller).",
    409: "The object is not in a state that allows this.",
    413: "The request body is over DSQ_MAX_REQUEST_BYTES.",
    415: "The Content-Type is not JSON, form or multipart data.",
    416: "The Range is not satisfiable for this file.",
    429: "Throttled: wait Retry-After seconds.",
}
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


class ErrorSerializer(serializers.Serializer):
    """Every API error (registry.api.errors)."""

    error = serializers.CharField(help_text="What went wrong, for a person to read.")
    status = serializers.IntegerField(help_text="The HTTP status code, repeated.")
    fields = serializers.DictField(required=False, child=serializers.JSONField(),
                                   help_text="Per-field messages of an invalid body or query (400 only).")


class PolicyRefusalSerializer(ErrorSerializer):
    """An approval refused by the release policy (409): the error, and the verdict with every failed line."""

    verdict = api.VerdictSerializer(required=False)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, plus errors, public reads and withheld fields (see the module docstring)."""

    def get_auth(self):
        auths = [a for a in super().get_auth() if a]
        if self._anonymous_allowed():
            auths.append({})
        return auths

    def _anonymous_allowed(self) -> bool:
        """Whether the view's permission classes let an anonymous caller make this request."""
        request = Request(RequestFactory().generic(self.method, self.path))
        request.user = AnonymousUser()
        return all(p.has_permission(request, self.view) for p in self.view.get_permissions())

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            responses.setdefault(str(code), self._get_response_for_code(
                OpenApiResponse(ErrorSerializer, description=ERRORS[code]), str(code), direction=direction))
        return responses

    def _error_codes(self) -> list[int]:
        # Any request: a NUL byte in the URL or a bad Content-Length (400), a bad token (401), throttles (429).
        codes = [400, 401, 429]
        if self.method in UNSAFE:
            codes += [403, 413]
            if self.get_request_serializer() is not None:
                codes.append(415)
        if "{" in self.path:
            codes.append(404)
        return codes

    def _get_filter_parameters(self):
        # django-filter reads an empty value as "no filter": say so in each choice's enum.
        parameters = super()._get_filter_parameters()
        for parameter in parameters:
            enum = parameter.get("schema", {}).get("enum")
            if enum is not None and "" not in enum:
                enum.append("")
        return parameters

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "response":
            for name in getattr(serializer, "withheld_fields", ()):
                if name in schema.get("properties", {}):
                    schema["properties"][name]["nullable"] = True
        return schema


def error_responses(*codes: int) -> dict:
    """Errors an operation gives besides those AutoSchema adds to every one of its kind."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERRORS[code]) for code in codes}


# -- bodies built by hand in the views --------------------------------------------------------


class QuantizationOutcomeSerializer(serializers.Serializer):
    created = serializers.BooleanField(help_text="true: a new job was queued (201); false: an existing job "
                                                 "or ready variant answers the request (200).")
    job = api.QuantizationJobSerializer(allow_null=True, help_text="The job building the variant; null when "
                                                                   "a ready variant answers.")
    variant = api.VariantSerializer(allow_null=True, help_text="The ready variant; null while a job builds it.")


class ManifestFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    url = serializers.CharField(help_text="Where to download it: the Hub at the pinned commit once published, "
                                          "else the registry.")
    registry_url = serializers.CharField(help_text="The same file from this registry.")


class ManifestReleaseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.CharField(help_text="v1, v2, …")
    state = serializers.ChoiceField(choices=[Release.State.APPROVED, Release.State.PUBLISHED])


class ManifestHubSerializer(serializers.Serializer):
    repo = serializers.CharField()
    commit = serializers.CharField()


class ManifestCommandsSerializer(serializers.Serializer):
    download = serializers.ListField(child=serializers.CharField(), help_text="One curl per file.")
    llama_server = serializers.CharField(allow_null=True)
    llama_cli = serializers.CharField(allow_null=True)
    llama_cli_hub = serializers.CharField(required=False, help_text="Published releases only.")
    llama_server_hub = serializers.CharField(required=False, help_text="Published releases only.")
    ollama = serializers.CharField(required=False, help_text="Published releases only.")


class ManifestSerializer(serializers.Serializer):
    """registry.pulls.manifest."""

    ref = serializers.CharField(help_text="model:QUANT@tag, the tag filled in")
    model = serializers.CharField()
    quant = serializers.CharField()
    tag = serializers.CharField()
    release = ManifestReleaseSerializer()
    variant = serializers.IntegerField()
    total_bytes = serializers.IntegerField()
    bits_per_weight = serializers.FloatField()
    source = serializers.ChoiceField(choices=["hub", "registry"])
    hub = ManifestHubSerializer(allow_null=True, help_text="null until the release is published")
    files = ManifestFileSerializer(many=True)
    commands = ManifestCommandsSerializer()


class HardwareSerializer(serializers.Serializer):
    name = serializers.CharField()
    n_gpu = serializers.IntegerField()
    gpu_bytes = serializers.IntegerField()
    label = serializers.CharField()
    reserve_bytes = serializers.IntegerField()


class GpuUseSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    layers = serializers.ListField(child=serializers.IntegerField())
    weights_bytes = serializers.IntegerField()
    kv_bytes = serializers.IntegerField()
    compute_bytes = serializers.IntegerField()
    reserve_bytes = serializers.IntegerField()
    total_bytes = serializers.IntegerField()


class FitSerializer(serializers.Serializer):
    """quant.fit.Fit.to_json, plus the model and recipe it was computed for."""

    hardware = HardwareSerializer()
    context = serializers.IntegerField()
    kv_cache = serializers.CharField()
    cache_type = serializers.CharField()
    weights_bytes = serializers.IntegerField()
    host_weights_bytes = serializers.IntegerField()
    kv_bytes = serializers.IntegerField()
    compute_bytes = serializers.IntegerField()
    total_bytes = serializers.IntegerField()
    per_gpu_bytes = serializers.IntegerField()
    gpu_bytes = serializers.IntegerField()
    headroom_bytes = serializers.IntegerField(help_text="Negative when it does not fit.")
    fits = serializers.BooleanField()
    gpus = GpuUseSerializer(many=True)
    model = serializers.CharField()
    recipe = serializers.CharField()


class ScoreSerializer(serializers.Serializer):
    mean = serializers.FloatField()
    std = serializers.FloatField(allow_null=True)


class ReportRowSerializer(serializers.Serializer):
    """quant.eval.report.ReportRow."""

    variant = serializers.CharField()
    source = serializers.CharField()
    scores = serializers.DictField(child=ScoreSerializer(), help_text="benchmark → score, percent")
    size_bytes = serializers.IntegerField(allow_null=True)
    bits_per_weight = serializers.FloatField(allow_null=True)
    ppl = serializers.FloatField(allow_null=True)
    kld_mean = serializers.FloatField(allow_null=True)
    top1_percent = serializers.FloatField(allow_null=True)
    average = serializers.FloatField(allow_null=True)
    acc_drop_percent = serializers.FloatField(allow_null=True)


class ComparisonSerializer(serializers.Serializer):
    """quant.eval.report.Report.to_dict; baseline null and no rows until a variant has quality results."""

    checkpoint = serializers.CharField()
    baseline = serializers.CharField(allow_null=True)
    benchmarks = serializers.ListField(child=serializers.CharField())
    acc_drop_definition = serializers.CharField(required=False)
    rows = ReportRowSerializer(many=True)


# -- parameters and examples ------------------------------------------------------------------

# registry.pulls.REF without its named groups (Python-only syntax; schemas use ECMA regexes)
REF_PATTERN = "^" + re.sub(r"\?P<\w+>", "", pulls.REF.pattern) + "$"
NAME_EXAMPLE = OpenApiExample("a catalogue checkpoint", value="deepseek-r1")
REF = OpenApiParameter("ref", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=REF_PATTERN,
                       description="model:QUANT[@tag]; the tag defaults to latest",
                       examples=[OpenApiExample("stable channel", value="deepseek-r1:Q4_K_M@stable")])
RANGE = OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                         description="One range, bytes=first-[last] or bytes=-suffix; anything else is ignored "
                                     "and the whole file is sent.")
FILE_HEADERS = [OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.HEADER, response=[200, 206],
                                 description=text)
                for name, text in [("ETag", "The file's sha256, quoted"), ("Accept-Ranges", "bytes"),
                                   ("Content-Disposition", "attachment; filename=…")]]
FIT_PARAMETERS = [
    OpenApiParameter("variant", OpenApiTypes.STR, pattern=r"^(\d+|" + REF_PATTERN[1:-1] + ")$",
                     description="A variant id or model:QUANT@tag (or give checkpoint and recipe instead)",
                     examples=[OpenApiExample("by tag", value="deepseek-r1:Q4_K_M@stable")]),
    OpenApiParameter("checkpoint", OpenApiTypes.STR, description="With recipe: a variant before it exists",
                     examples=[OpenApiExample("catalogue", value="deepseek-r1")]),
    OpenApiParameter("recipe", OpenApiTypes.STR, description="A recipe name (its newest version)",
                     examples=[OpenApiExample("built-in", value="DQ3_K_M")]),
    OpenApiParameter("hardware", OpenApiTypes.STR, description="A profile (8xH100-80GB, …) or custom:NxSIZE "
                     "(custom:4x48GB); default 8xH100-80GB"),
    OpenApiParameter("context", {"type": "integer", "minimum": 1},
                     description="Context length in tokens; default 32768"),
    OpenApiParameter("kv_cache", OpenApiTypes.STR, enum=["mla", "full"], description="default mla"),
    OpenApiParameter("cache_type", OpenApiTypes.STR, enum=["f32", "f16", "bf16", "q8_0"], description="default f16"),
    OpenApiParameter("ubatch", {"type": "integer", "minimum": 1}, description="llama.cpp's n_ubatch; default 512"),
    OpenApiParameter("flash_attn", OpenApiTypes.STR, description="1, true or yes: flash attention on"),
]
BINARY = OpenApiTypes.BINARY


# -- operations, one extend_schema_view per view -----------------------------------------------

checkpoints = extend_schema_view(
    create=extend_schema(request=api.CheckpointCreateSerializer, responses={201: api.CheckpointSerializer}),
    comparison=extend_schema(responses=ComparisonSerializer),
)

quantizations = extend_schema_view(
    create=extend_schema(request=api.QuantizationRequestSerializer, responses={
        201: OpenApiResponse(QuantizationOutcomeSerializer, description="A new job was queued."),
        200: OpenApiResponse(QuantizationOutcomeSerializer,
                             description="The same inputs are already queued, running or built."),
    }),
)

quantization_jobs = extend_schema_view(
    cancel=extend_schema(request=None, responses={200: api.QuantizationJobSerializer, **error_responses(409)},
                         description="Ask a queued or running job to stop (the requester, an approver or staff)."),
    retry=extend_schema(request=None, responses={200: api.QuantizationJobSerializer, **error_responses(409)},
                        description="Queue a failed or cancelled job again (the requester, an approver or staff)."),
)
benchmark_jobs = extend_schema_view(
    cancel=extend_schema(request=None, responses={200: api.BenchmarkJobSerializer, **error_responses(409)}),
    retry=extend_schema(request=None, responses={200: api.BenchmarkJobSerializer, **error_responses(409)}),
)

class ImatrixOutcomeSerializer(serializers.Serializer):
    created = serializers.BooleanField()
    job = api.ImatrixJobSerializer(allow_null=True)
    imatrix = api.ImatrixSerializer(allow_null=True)


imatrices = extend_schema_view(
    create=extend_schema(request=api.ImatrixRequestSerializer, responses={
        201: OpenApiResponse(ImatrixOutcomeSerializer, description="A new imatrix job was queued."),
        200: OpenApiResponse(ImatrixOutcomeSerializer,
                             description="The same inputs are already queued, running or computed."),
    }, description="Compute an importance matrix with llama-imatrix on the checkpoint's reference GGUF."),
)
imatrix_jobs = extend_schema_view(
    cancel=extend_schema(request=None, responses={200: api.ImatrixJobSerializer, **error_responses(409)}),
    retry=extend_schema(request=None, responses={200: api.ImatrixJobSerializer, **error_responses(409)}),
)
calibration_datasets = extend_schema_view(
    create=extend_schema(request=api.CalibrationDatasetCreateSerializer, responses={
        201: api.CalibrationDatasetSerializer, 200: api.CalibrationDatasetSerializer},
        description="Register a UTF-8 text file under DSQ_STORAGE_ROOT or DSQ_IMPORT_ROOTS (copied into storage)."),
)

releases = extend_schema_view(
    create=extend_schema(request=api.ReleaseRequestSerializer, responses={201: api.ReleaseSerializer},
                         description="Propose the next version of a ready variant for review."),
    approve=extend_schema(request=api.ApprovalSerializer, responses={
        200: api.ReleaseSerializer,
        409: OpenApiResponse(PolicyRefusalSerializer, description="The candidate fails its release policy and no "
                             "override justification was given (the verdict says why).")},
        description="Approve a candidate (an approver who did not request it). Refused with 409 and the verdict "
                    "when it lacks the evidence its release policy requires or exceeds a limit, unless `override` "
                    "holds a written justification."),
    evidence=extend_schema(responses={200: api.EvidenceSerializer},
                           description="The drop against the reference, the policy verdict line by line, the "
                                       "tensor types, sibling variants and the fit on each GPU profile."),
    reject=extend_schema(request=api.DecisionSerializer, responses={200: api.ReleaseSerializer}),
    publish=extend_schema(request=None, responses={
        202: OpenApiResponse(api.ReleaseSerializer, description="The upload to the Hub is scheduled."),
        **error_responses(409)}),
)

tags = extend_schema_view(
    create=extend_schema(request=api.ChannelSerializer, responses={
        201: OpenApiResponse(api.TagSerializer, description="A new channel."),
        200: OpenApiResponse(api.TagSerializer, description="An existing channel, moved.")}),
    move=extend_schema(request=api.MoveSerializer, responses={200: api.TagSerializer}),
)

pull = extend_schema(parameters=[REF], responses={200: ManifestSerializer})

fit = extend_schema(parameters=FIT_PARAMETERS, responses={200: FitSerializer, **error_responses(404)})

download = extend_schema(
    parameters=[RANGE, *FILE_HEADERS],
    responses={
        (200, "application/octet-stream"): OpenApiResponse(BINARY, description="The whole file."),
        (206, "application/octet-stream"): OpenApiResponse(BINARY, description="The requested range."),
        **error_responses(404, 416),
    })


class RecipeFieldExtension(OpenApiSerializerFieldExtension):
    """registry.api.serializers.RecipeField: a recipe by id, name or NAME@vN, always a string on the wire."""

    target_class = "registry.api.serializers.RecipeField"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "description": "A recipe by id, by name (its newest version) or as NAME@vN"}


# A NUL byte never reaches a view: registry.api.middleware.RequestGuard answers 400 for one anywhere in the
# URL (PostgreSQL text cannot hold it). Free-text query parameters say so, or a client reading the schema
# would take such a value for valid.
NO_NUL = "^[^\\u0000]*$"


def query_text_without_nul(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: `pattern` NO_NUL on every free-text query parameter."""
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                schema = parameter.get("schema", {})
                if (parameter.get("in") == "query" and schema.get("type") == "string"
                        and not {"enum", "pattern", "format"} & set(schema)):
                    schema["pattern"] = NO_NUL
    return result
