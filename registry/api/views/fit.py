"""GET /api/fit: will a variant (or a checkpoint × recipe, before it exists) fit the hardware?"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from quant import config_check
from quant import fit as quant_fit
from registry import placement, pulls
from registry.api import schema
from registry.models import Checkpoint, Recipe, Variant


def _variant(value: str) -> Variant:
    if value.isdigit():
        return get_object_or_404(Variant.objects.select_related("checkpoint", "recipe"), pk=int(value))
    try:
        return pulls.resolve(pulls.parse_ref(value)).variant
    except ValueError as exc:
        raise ValidationError({"variant": str(exc)}) from None


def _int(params, name: str, default: "int | None") -> "int | None":
    if name not in params:
        return default
    try:
        return int(params[name])
    except ValueError:
        raise ValidationError({name: f"expected an integer, got {params[name][:40]!r}"}) from None


FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _question(p) -> dict:
    """Hardware and the question's bounded parameters (quant.fit.check_question), checked before any work."""
    try:
        hardware = quant_fit.parse_hardware(p.get("hardware", "8xH100-80GB"))
        context = _int(p, "context", 32768)
        question = dict(hardware=hardware, context=context, kv_cache=p.get("kv_cache", "mla"),
                        cache_type=p.get("cache_type", "f16"),
                        n_ubatch=_int(p, "ubatch", min(quant_fit.DEFAULT_UBATCH, context)))
        quant_fit.check_question(question["context"], question["n_ubatch"], question["kv_cache"],
                                 question["cache_type"])
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    flag = p.get("flash_attn", "0").lower()
    if flag not in FLAGS:
        raise ValidationError({"flash_attn": f"expected one of {', '.join(FLAGS)}, got {flag[:20]!r}"})
    return dict(question, flash_attn=FLAGS[flag])


def _checked(checkpoint: Checkpoint) -> dict:
    """The checkpoint's config, if llama.cpp could load it (one registered before configs were checked may not)."""
    try:
        config_check.check(checkpoint.config)
    except ValueError as exc:
        raise ValidationError({"checkpoint": f"{checkpoint.name}'s registered config cannot be sized: {exc}"}) from None
    return checkpoint.config


@schema.fit
@api_view(["GET"])
@permission_classes([AllowAny])
def fit(request):
    """?variant=<id|model:QUANT@tag> or ?checkpoint=<name>&recipe=<name>, plus hardware (a profile or
    custom:NxSIZE, N up to quant.fit.MAX_GPUS), context (1..MAX_CONTEXT), kv_cache (mla|full), cache_type
    (f16|q8_0|bf16|f32), ubatch (1..context), flash_attn (0|1). Formula: quant/fit.py."""
    p = request.query_params
    question = _question(p)
    if p.get("variant"):
        variant = _variant(p["variant"])
        config, label, model = _checked(variant.checkpoint), variant.recipe.name, variant.checkpoint.name
        tensors = placement.variant_tensors(variant)
    elif p.get("checkpoint") and p.get("recipe"):
        checkpoint = get_object_or_404(Checkpoint, name=p["checkpoint"])
        recipe = Recipe.objects.filter(name__iexact=p["recipe"]).order_by("-version").first()
        if recipe is None:
            raise ValidationError({"recipe": f"unknown recipe {p['recipe']!r}"})
        config, label, model = _checked(checkpoint), recipe.name, checkpoint.name
        tensors = quant_fit.tensor_bytes(config, recipe.parsed())
    else:
        raise ValidationError("give variant=<id or model:QUANT@tag>, or checkpoint=<name>&recipe=<name>")
    try:
        result = quant_fit.fit(config, tensors, **question)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    return Response(dict(result.to_json(), model=model, recipe=label))
