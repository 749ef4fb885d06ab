"""Dashboard: checkpoints → variants with quality and release state, size-vs-quality chart, live jobs, history."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from django.conf import settings
from django.shortcuts import render

from registry import charts, quality
from registry import fleet as fleet_state
from registry.models import Checkpoint, QuantizationJob, Release, Tag, TagMove, Variant

GiB = 2**30


@dataclass
class VariantRow:
    checkpoint: str
    variant: Variant
    size_gib: float
    ppl: Optional[float]
    kld: Optional[float]
    drop: Optional[float]
    is_baseline: bool
    release: Optional[Release]


def _rows(checkpoints) -> tuple[list[VariantRow], dict[str, tuple]]:
    rows, points = [], {}
    for c in checkpoints:
        variants = list(c.variants.all())
        report = quality.comparison(c, [v for v in variants if v.status == Variant.Status.READY])
        for v in variants:
            row = quality.drop_of(v, report)
            releases = sorted(v.releases.all(), key=lambda r: -r.version)
            rows.append(VariantRow(c.name, v, v.total_bytes / GiB, row.ppl if row else None,
                                   row.kld_mean if row else None, row.acc_drop_percent if row else None,
                                   bool(row and report and row.variant == report.baseline),
                                   releases[0] if releases else None))
    for name in dict.fromkeys(r.checkpoint for r in rows):
        mine = [r for r in rows if r.checkpoint == name and r.size_gib > 0]
        chart = _chart_points(mine)
        if chart:
            points[name] = chart
    return rows, points


def _chart_points(rows: list[VariantRow]) -> "tuple[list[charts.Point], str, str] | None":
    """Task accuracy drop where a suite measured it, else mean KLD against the reference (tier 1);
    sizes in GiB, or MiB for small models."""
    if any(r.drop is not None for r in rows):
        metric, label = (lambda r: r.drop if r.drop is not None else (0.0 if r.is_baseline else None)), "accuracy drop (%)"
    else:
        metric, label = (lambda r: r.kld), "mean KLD vs reference"
    unit, scale = ("GiB", 1.0) if max((r.size_gib for r in rows), default=0) >= 1 else ("MiB", 1024.0)
    pts = [charts.Point(r.variant.recipe.name, r.size_gib * scale, metric(r)) for r in rows if metric(r) is not None]
    return (pts, label, f"size ({unit})") if pts else None


def dashboard(request):
    checkpoints = Checkpoint.objects.prefetch_related("variants__recipe", "variants__releases", "variants__files")
    rows, points = _rows(checkpoints)
    chosen = request.GET.get("checkpoint") or max(points, key=lambda k: len(points[k][0]), default=None)
    chart = charts.size_quality_svg(*points[chosen]) if chosen in points else None
    jobs = QuantizationJob.objects.select_related("checkpoint", "recipe")[:20]
    releases = Release.objects.select_related("variant__checkpoint", "variant__recipe", "requested_by",
                                              "decided_by")[:20]
    moves = TagMove.objects.select_related("tag__checkpoint", "from_release", "to_release", "moved_by")[:20]
    return render(request, "registry/dashboard.html", {
        "rows": rows, "chart": chart, "chart_checkpoint": chosen, "chart_choices": sorted(points),
        "jobs": jobs, "releases": releases, "moves": moves})


def fleet(request):
    """Workers, GPUs, queues, the oldest waiting job and stuck jobs (registry/fleet.py)."""
    return render(request, "registry/fleet.html", {"fleet": fleet_state.snapshot(),
                                                   "stuck_minutes": settings.DSQ_STUCK_MINUTES})


def job(request, kind: str, pk: int):
    """One job: state, queue, why it waits (its step), progress; for a task suite, scores and the server; for a
    queued quantization, its time plan (registry.estimates).

    Shows what the API shows anyone (log_tail and error stay in the API, for those who may read them)."""
    from django.http import Http404
    from django.shortcuts import get_object_or_404

    from registry.jobs import JOB_MODELS

    if kind not in JOB_MODELS:
        raise Http404("no such job kind")
    row = get_object_or_404(JOB_MODELS[kind], pk=pk)
    result = getattr(row, "result", None) or {}
    waiting = row.state == "queued" and row.step.startswith("waiting for")
    time_plan = None
    if kind == "quantize" and row.state == "queued":
        from registry import estimates

        time_plan = estimates.for_job(row)
    return render(request, "registry/job.html", {"job": row, "kind": kind, "waiting": waiting,
                                                 "scores": result.get("scores", []), "server": result.get("server"),
                                                 "shards": list(row.shards.all()) if kind == "quantize" else [],
                                                 "time_plan": time_plan})


def checkpoints(request):
    """The catalogue, filterable by family and architecture (?family=, ?architecture=)."""
    rows = Checkpoint.objects.prefetch_related("variants__recipe").order_by("name")
    chosen = {k: request.GET[k] for k in ("family", "architecture") if request.GET.get(k)}
    return render(request, "registry/checkpoints.html", {
        "checkpoints": rows.filter(**chosen), "chosen": chosen,
        "families": sorted(set(rows.values_list("family", flat=True))),
        "architectures": sorted(set(rows.values_list("architecture", flat=True)))})


def checkpoint(request, name: str):
    """One checkpoint: catalogue facts, its variants with quality (the dashboard's rows), releases and channels."""
    from django.shortcuts import get_object_or_404

    ckpt = get_object_or_404(Checkpoint.objects.prefetch_related("variants__recipe", "variants__releases",
                                                                 "variants__files"), name=name)
    rows, _ = _rows([ckpt])
    releases = (Release.objects.filter(variant__checkpoint=ckpt)
                .select_related("variant__recipe", "requested_by", "decided_by").order_by("-created_at"))
    tags = ckpt.tags.select_related("release__variant").order_by("quant", "kind", "name")
    return render(request, "registry/checkpoint.html", {"checkpoint": ckpt, "rows": rows, "releases": releases,
                                                        "tags": tags})


def variant(request, name: str, pk: int):
    """One variant: tensor types, quality against its reference, files with sha256, pull commands, fit.

    The figures are the review page's (registry.review, registry.quality, registry.evidence.plan_of) and the
    commands the pull manifest's (registry.pulls.manifest); files link only where access.can_read_files."""
    from django.shortcuts import get_object_or_404

    from registry import access, pulls, release_policy, review
    from registry.evidence import plan_of

    v = get_object_or_404(Variant.objects.select_related("checkpoint", "recipe"), pk=pk, checkpoint__name=name)
    policy = release_policy.policy_for(v.checkpoint)
    fit, fit_error = review.fit_lines(v)
    pullable = sorted((r for r in v.releases.all() if r.pullable), key=lambda r: -r.version)
    tags = list(Tag.objects.filter(release__variant=v).select_related("release").order_by("kind", "name"))
    pull = None
    if pullable:
        tag = next((t for t in tags if t.release_id == pullable[0].pk and t.kind == Tag.Kind.CHANNEL), None) \
            or next((t for t in tags if t.release_id == pullable[0].pk), None)
        ref = pulls.Ref(v.checkpoint.name, v.recipe.name, tag.name if tag else pullable[0].label)
        pull = pulls.manifest(ref, pullable[0], request)
    return render(request, "registry/variant.html", {
        "variant": v, "checkpoint": v.checkpoint, "drop": quality.drop(v, policy.accuracy_reference),
        "types": plan_of(v).type_breakdown(), "fit": fit, "fit_error": fit_error,
        "files": v.files.all(), "can_read_files": access.can_read_files(request.user, v),
        "releases": sorted(v.releases.all(), key=lambda r: -r.version), "tags": tags, "pull": pull})
