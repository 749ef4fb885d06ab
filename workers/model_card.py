"""The Hub model card (README.md) of a base model's GGUF repo: metadata the Hub indexes, one section per quant.

The YAML header carries what the Hub uses to link a quantization to its base model
(`base_model`, `base_model_relation: quantized`, `library_name: gguf`, `quantized_by`, tags).
The body lists, for each published quant, its release, size, bits per weight, the quality drop
against the reference metric by metric (registry.quality.drop), the release policy's verdict (and any
override, with its justification), the recipe and its tensor types; then, for a checkpoint in the study,
the study's published rows, labelled as such. Built only from registry rows: no secret can reach it.
"""
from __future__ import annotations

import json

from django.conf import settings

from quant.eval import report as eval_report
from registry import figures, hub, quality, release_policy
from registry.evidence import plan_of
from registry.models import Release


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


def quality_table(drop: quality.Drop) -> list[str]:
    """`| metric | reference | this quant | drop |`, one row per measured metric (registry.quality.Drop)."""
    if not drop.measured:
        return ["_No benchmark results yet._"]
    rows = ["| metric | reference | this quant | drop |", "|---|---|---|---|"]
    t = drop.tier1
    if t is not None:
        rows += [
            f"| Perplexity | {figures.plus_minus(t.reference_ppl, t.reference_ppl_uncertainty)} | "
            f"{figures.plus_minus(t.ppl, t.ppl_uncertainty)} | PPL ratio {t.ppl_ratio:.4f} "
            f"({figures.percent(100.0 * (t.ppl_ratio - 1.0), signed=True)}) |",
            f"| KLD mean | 0 | {figures.plus_minus(t.kld_mean, t.kld_mean_uncertainty)} | {figures.sig(t.kld_mean)} |",
        ]
        if t.kld_p99 is not None:
            rows.append(f"| KLD p99 | 0 | {figures.sig(t.kld_p99)} | {figures.sig(t.kld_p99)} |")
        rows.append(f"| Top-1 agreement | 100 % | {figures.percent(t.top1_percent)} | "
                    f"{100.0 - t.top1_percent:.2f} points of tokens differ |")
    for s in drop.scores:
        if s.reference is None:
            rows.append(f"| {s.benchmark} | — (no reference score) | {figures.plus_minus(s.mean, s.std, 2)} | — |")
            continue
        rows.append(f"| {s.benchmark} | {figures.plus_minus(s.reference_mean, s.reference_std, 2)} ({s.reference}) | "
                    f"{figures.plus_minus(s.mean, s.std, 2)} | {figures.plus_minus(s.drop_points, s.drop_std, 2)} points "
                    f"({figures.percent(s.drop_percent)}) |")
    return rows


def policy_lines(release: Release) -> list[str]:
    """The release policy's verdict stored at approval, line by line, and any override with its justification."""
    verdict = release_policy.Verdict.from_json(release.policy_verdict)
    if verdict is None:
        return ["Release policy: not checked (approved before release policies existed)."]
    lines = [f"Release policy ({verdict.policy}): **{'passed' if verdict.passed else 'failed'}**", ""]
    lines += [f"- {'✓' if c.passed else '✗'} {c.message}" for c in verdict.checks]
    if release.policy_override:
        lines += ["", f"**Approved with an override of the release policy** by {release.decided_by}: "
                      f"{release.policy_override}"]
    return lines


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
        *imatrix_lines(v),
        "",
        "Files:",
        "",
    ]
    lines += [f"- `{hub.path_in_repo(v, f.name)}` — {f.size} bytes, sha256 `{f.sha256}`" for f in files]
    drop = quality.drop(v, release_policy.policy_for(v.checkpoint).accuracy_reference)
    against = "this quant is the reference" if drop.baseline else f"against {drop.reference}" if drop.reference else ""
    lines += ["", f"Quality{' (' + against + ')' if against else ''}:", "", *quality_table(drop), "",
              *policy_lines(release), "",
              f"Recipe {v.recipe.name} v{v.recipe.version}: tensor types (weights per type)", "",
              *type_table(v), "",
              "<details><summary>Recipe</summary>", "", "```json", recipe, "```", "", "</details>", ""]
    return lines


def imatrix_lines(variant) -> list[str]:
    """Which importance matrix made the variant: its dataset, settings and the experts it had no data for."""
    im = variant.imatrix
    if im is None:
        return [f"- Importance matrix: sha256 `{variant.imatrix_sha256[:16]}…`"] if variant.imatrix_sha256 else []
    ds = im.dataset
    never = im.experts_never_routed
    return [f"- Importance matrix: llama-imatrix on {ds.name} (sha256 `{ds.sha256[:16]}…`, {ds.size} bytes; "
            f"{ds.source}), {im.chunk_count} chunks of {im.n_ctx} tokens, file sha256 `{im.sha256[:16]}…`; "
            + (f"{never} experts saw no calibration token and were quantized with uniform weights (llama.cpp's "
               "fallback)" if never else "every expert saw calibration tokens")]


def type_table(variant) -> list[str]:
    shares = plan_of(variant).type_breakdown()
    if not shares:
        return ["_No tensor plan stored._"]
    rows = ["| type | tensors | weights | share |", "|---|---:|---:|---:|"]
    rows += [f"| {r.type} | {r.tensors} | {r.weights if r.weights is not None else '—'} | "
             f"{figures.percent(r.weight_percent)} |" for r in shares]
    return rows


def published_section(checkpoint) -> list[str]:
    """The study's published rows for a checkpoint in it, labelled as published figures (not ours)."""
    table = quality.study_table(checkpoint)
    if table is None:
        return []
    data = eval_report.published_tables()[table]
    report = eval_report.Report(checkpoint=table, baseline=data["baseline"],
                                benchmarks=eval_report.published_benchmarks(), rows=eval_report.published_rows(table))
    return ["## Published results of the study", "",
            f"Figures published by {eval_report.PUBLISHED_LABEL.removeprefix('published (').rstrip(')')} for "
            f"{table}, against its baseline {data['baseline']}: **published figures, not measured by dsq**.", "",
            report.to_markdown(), ""]


def render_card(release: Release, repo_id: str) -> str:
    """README.md for the repo after `release` is published: every published quant plus this one."""
    from huggingface_hub import ModelCardData

    checkpoint = release.variant.checkpoint
    latest: dict[str, Release] = {}
    published = (Release.objects.filter(variant__checkpoint=checkpoint, state=Release.State.PUBLISHED)
                 .select_related("variant__recipe").order_by("version"))
    for r in [*published, release]:
        latest[r.variant.quant_name] = r
    # The Hub links a quantization to its base model by these two keys; a relation without a base is dangling.
    base = {"base_model": checkpoint.hf_repo, "base_model_relation": "quantized"} if checkpoint.hf_repo else {}
    data = ModelCardData(
        **base,
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
    if not checkpoint.hf_repo:
        body += [f"Base model: the local checkpoint {checkpoint.name}"
                 f"{' at revision ' + checkpoint.revision if checkpoint.revision else ''} (not on the Hub).", ""]
    for name in sorted(latest):
        body += quant_section(latest[name])
    body += published_section(checkpoint)
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)
