"""GET /api/fit: will a variant (or a checkpoint × recipe, before it exists) fit the hardware?"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from quant import fit as quant_fit
from quant import recipes as quant_recipes
from registry import pulls
from registry.api import schema
from registry.models import Checkpoint, Recipe, Variant


def _variant(value: str) -> Variant:
    if value.isdigit():
        return get_object_or_404(Variant.objects.select_related("checkpoint", "recipe"), pk=int(value))
    try:
        return pulls.resolve(pulls.parse_ref(value)).variant
    except ValueError as exc:
        raise ValidationError({"variant": str(exc)}) from None


def _tensors(variant: Variant) -> list[tuple[str, int]]:
    """Per-tensor bytes: the variant's stored plan, else the recipe's plan, else its size spread by parameters."""
    planned = (variant.plan or {}).get("tensors")
    if planned:
        return [(t["name"], int(t["bytes"])) for t in planned]
    try:
        return quant_fit.tensor_bytes(variant.checkpoint.config, variant.recipe.parsed())
    except (quant_recipes.RecipeError, KeyError, ValueError):
        return quant_fit.tensor_bytes_from_total(variant.checkpoint.config, variant.total_bytes)


def _int(params, name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        raise ValidationError({name: f"expected an integer, got {params.get(name)!r}"}) from None


@schema.fit
@api_view(["GET"])
@permission_classes([AllowAny])
def fit(request):
    """?variant=<id|model:QUANT@tag> or ?checkpoint=<name>&recipe=<name>, plus hardware, context,
    kv_cache (mla|full), cache_type (f16|q8_0), ubatch, flash_attn. Formula: quant/fit.py."""
    p = request.query_params
    if p.get("variant"):
        variant = _variant(p["variant"])
        config, label, tensors = variant.checkpoint.config, variant.recipe.name, _tensors(variant)
        model = variant.checkpoint.name
    elif p.get("checkpoint") and p.get("recipe"):
        checkpoint = get_object_or_404(Checkpoint, name=p["checkpoint"])
        recipe = Recipe.objects.filter(name__iexact=p["recipe"]).order_by("-version").first()
        if recipe is None:
            raise ValidationError({"recipe": f"unknown recipe {p['recipe']!r}"})
        config, label, model = checkpoint.config, recipe.name, checkpoint.name
        tensors = quant_fit.tensor_bytes(config, recipe.parsed())
    else:
        raise ValidationError("give variant=<id or model:QUANT@tag>, or checkpoint=<name>&recipe=<name>")
    try:
        hardware = quant_fit.parse_hardware(p.get("hardware", "8xH100-80GB"))
        result = quant_fit.fit(config, tensors, hardware, _int(p, "context", 32768),
                               kv_cache=p.get("kv_cache", "mla"), cache_type=p.get("cache_type", "f16"),
                               n_ubatch=_int(p, "ubatch", quant_fit.DEFAULT_UBATCH),
                               flash_attn=p.get("flash_attn", "0").lower() in ("1", "true", "yes"))
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    return Response(dict(result.to_json(), model=model, recipe=label))
