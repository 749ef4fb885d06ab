"""The Hub model card (README.md) of a base model's GGUF repo: metadata the Hub indexes, one section per quant.

The YAML header carries what the Hub uses to link a quantization to its base model
(`base_model`, `base_model_relation: quantized`, `library_name: gguf`, `quantized_by`, tags).
The body lists, for each published quant, its release, size, bits per weight, the recipe and
the quality drop against the reference. Built only from registry rows: no secret can reach it.
"""
from __future__ import annotations

import json

from django.conf import settings

from registry import hub
from registry.models import Release


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


def _number(x) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def drop_table(quality: dict) -> list[str]:
    """Rows `| benchmark | reference | this quant | drop |` from Variant.quality.

    A benchmark entry is either a number or a dict with `value` and optionally `reference`
    (then the drop is shown as value − reference and relative change).
    """
    if not quality:
        return ["_No benchmark results yet._"]
    rows = ["| benchmark | reference | this quant | drop |", "|---|---|---|---|"]
    for name in sorted(quality):
        entry = quality[name]
        if isinstance(entry, dict):
            value, ref = entry.get("value"), entry.get("reference")
            if value is None:
                value = ", ".join(f"{k}={_number(v)}" for k, v in sorted(entry.items())
                                  if isinstance(v, (int, float, str)))
        else:
            value, ref = entry, None
        drop = ""
        if isinstance(value, (int, float)) and isinstance(ref, (int, float)):
            drop = f"{value - ref:+.4g}" + (f" ({(value - ref) / ref:+.2%})" if ref else "")
        rows.append(f"| {name} | {_number(ref) if ref is not None else ''} | {_number(value)} | {drop} |")
    return rows


def quant_section(release: Release) -> list[str]:
    v = release.variant
    recipe = json.dumps(v.recipe.definition, indent=2, sort_keys=True)
    files = list(v.files.all())
    lines = [
        f"## {v.quant_name}",
        "",
        f"- Release: `{hub.tag(release)}`",
        f"- Size: {_fmt_bytes(v.total_bytes)} ({v.total_bytes} bytes) in {len(files)} file(s)",
        f"- Bits per weight: {v.bits_per_weight:.3f}",
        f"- Recipe: {v.recipe.name} v{v.recipe.version} (sha256 `{v.recipe.sha256[:16]}…`)",
        "",
        "Files:",
        "",
    ]
    lines += [f"- `{hub.path_in_repo(v, f.name)}` — {f.size} bytes, sha256 `{f.sha256}`" for f in files]
    lines += ["", "Quality against the reference:", "", *drop_table(v.quality), "",
              "<details><summary>Recipe</summary>", "", "```json", recipe, "```", "", "</details>", ""]
    return lines


def render_card(release: Release, repo_id: str) -> str:
    """README.md for the repo after `release` is published: every published quant plus this one."""
    from huggingface_hub import ModelCardData

    checkpoint = release.variant.checkpoint
    latest: dict[str, Release] = {}
    published = (Release.objects.filter(variant__checkpoint=checkpoint, state=Release.State.PUBLISHED)
                 .select_related("variant__recipe").order_by("version"))
    for r in [*published, release]:
        latest[r.variant.quant_name] = r
    data = ModelCardData(
        base_model=checkpoint.hf_repo or None,
        base_model_relation="quantized",
        library_name="gguf",
        quantized_by=settings.DSQ_QUANTIZED_BY,
        tags=["gguf", "quantized", checkpoint.family.lower(), checkpoint.architecture],
    )
    body = [
        f"# {checkpoint.name} GGUF",
        "",
        f"GGUF quantizations of [{checkpoint.hf_repo or checkpoint.name}]"
        f"({settings.HF_ENDPOINT}/{checkpoint.hf_repo})" if checkpoint.hf_repo else f"GGUF quantizations of {checkpoint.name}",
        "",
        "Each quant lives in its own folder; every release is a Hub tag `<QUANT>-v<N>`.",
        "",
        f"    llama-server -hf {hub.quant_ref(repo_id, release.variant.quant_name)}",
        "",
    ]
    for name in sorted(latest):
        body += quant_section(latest[name])
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)
