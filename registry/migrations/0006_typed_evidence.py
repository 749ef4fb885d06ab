"""Rewrite Variant.quality, Variant.plan and BenchmarkJob.result into registry.evidence's version-1 shapes.

Before this, the benchmark worker stored a flat summary beside the raw suite results
(``{"ppl", "ppl_ratio", "kld_mean", …, "reference", "baseline", "scores", "suites": {name: raw}}``), the
quantize worker a plan without tensor sizes (``{"types": {name: type}, …}``) and a benchmark job
``{"result": raw}``. The conversions are plain functions of the stored dicts (kept here, frozen, as a
migration must be) so tests can run them on the old shapes. Figures the old rows never held stay null.
"""
import math
import re

from django.db import migrations

LABEL_ID = re.compile(r"#(\d+)\s*$")


def _num(x):
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _tier1_from_raw(raw, ref_unc=None):
    ppl = raw["perplexity"]
    return {"ppl": float(ppl["ppl"]), "ppl_uncertainty": _num(ppl.get("uncertainty")),
            "reference_ppl": float(raw["reference_ppl"]), "reference_ppl_uncertainty": ref_unc,
            "ppl_ratio": float(raw["ppl_ratio"]), "kld_mean": float(raw["kld_mean"]),
            "kld_mean_uncertainty": _num(raw.get("kld_mean_uncertainty")), "kld_p99": _num(raw.get("kld_p99")),
            "kld_max": _num(raw.get("kld_max")), "top1_percent": 100.0 * float(raw["top1_agreement"]),
            "rms_dp_percent": 100.0 * float(raw["rms_dp"]) if raw.get("rms_dp") is not None else None,
            "n_positions": int(raw.get("n_positions") or 0)}


def _reference_tier1(ppl, unc=None, n=0):
    return {"ppl": ppl, "ppl_uncertainty": unc, "reference_ppl": ppl, "reference_ppl_uncertainty": unc,
            "ppl_ratio": 1.0, "kld_mean": 0.0, "kld_mean_uncertainty": 0.0, "kld_p99": 0.0, "kld_max": 0.0,
            "top1_percent": 100.0, "rms_dp_percent": 0.0, "n_positions": n}


def _score(value):
    if isinstance(value, dict) and _num(value.get("mean")) is not None:
        return {"mean": float(value["mean"]), "std": _num(value.get("std")),
                "runs": [float(r) for r in value.get("runs") or []]}
    if _num(value) is not None and not isinstance(value, bool):
        return {"mean": float(value), "std": None, "runs": []}
    return None


def quality_v1(old):
    """A Variant.quality of before the typed shape, as version 1 (an already converted one unchanged)."""
    if not old or old.get("version") is not None:
        return old or {}
    suites = old.get("suites") if isinstance(old.get("suites"), dict) else {}
    label = str(old.get("reference") or "")
    match = LABEL_ID.search(label)
    baseline = bool(old.get("baseline"))
    tier1 = None
    raw = suites.get("quality")
    if baseline and _num(old.get("ppl")) is not None:
        tier1 = _reference_tier1(float(old["ppl"]), _num(old.get("ppl_uncertainty")))
    elif isinstance(raw, dict) and "perplexity" in raw and "reference_ppl" in raw:
        tier1 = _tier1_from_raw(raw)
    elif _num(old.get("ppl")) is not None and _num(old.get("kld_mean")) is not None:
        ppl, ratio = float(old["ppl"]), _num(old.get("ppl_ratio"))
        tier1 = {"ppl": ppl, "ppl_uncertainty": _num(old.get("ppl_uncertainty")),
                 "reference_ppl": ppl / ratio if ratio else ppl, "reference_ppl_uncertainty": None,
                 "ppl_ratio": ratio if ratio else 1.0, "kld_mean": float(old["kld_mean"]),
                 "kld_mean_uncertainty": None, "kld_p99": _num(old.get("kld_p99")),
                 "kld_max": _num(old.get("kld_max")), "top1_percent": _num(old.get("top1_percent")) or 0.0,
                 "rms_dp_percent": _num(old.get("rms_dp_percent")), "n_positions": 0}
    scores = {}
    for name, value in (old.get("scores") or {}).items():
        if (s := _score(value)) is not None:
            scores[name] = s
    return {"version": 1, "reference": label, "reference_variant": int(match.group(1)) if match else None,
            "baseline": baseline, "tier1": tier1, "scores": scores, "suites": list(suites)}


def plan_v1(old):
    """A Variant.plan of before the typed shape (types by name, no sizes), as version 1."""
    if not old or old.get("version") is not None:
        return old or {}
    if isinstance(old.get("tensors"), list):
        tensors = [{"name": t["name"], "type": t.get("type", ""), "shape": t.get("shape"),
                    "bytes": int(t["bytes"]) if t.get("bytes") is not None else None} for t in old["tensors"]]
    else:
        tensors = [{"name": n, "type": t, "shape": None, "bytes": None} for n, t in (old.get("types") or {}).items()]
    return {"version": 1, "recipe": old.get("recipe", ""), "recipe_sha256": old.get("recipe_sha256", ""),
            "arch": old.get("arch", ""), "n_params": int(old.get("n_params") or 0), "seconds": old.get("seconds"),
            "tensors": tensors}


def benchmark_result_v1(old, suite, reference=""):
    """A BenchmarkJob.result of before the typed shape ({"result": raw}), as version 1."""
    if not old or old.get("version") is not None:
        return old or {}
    raw = old.get("result") if isinstance(old.get("result"), dict) else {}
    tier1, scores = None, {}
    if "perplexity" in raw and "reference_ppl" in raw:
        tier1 = _tier1_from_raw(raw)
    for s in raw.get("scores") or []:
        if isinstance(s, dict) and "benchmark" in s and (score := _score(s)) is not None:
            scores[s["benchmark"]] = score
    return {"version": 1, "suite": suite, "reference": reference if tier1 else "", "tier1": tier1,
            "scores": scores, "detail": raw}


def forwards(apps, schema_editor):
    Variant = apps.get_model("registry", "Variant")
    BenchmarkJob = apps.get_model("registry", "BenchmarkJob")
    for v in Variant.objects.all().iterator():
        quality, plan = quality_v1(v.quality), plan_v1(v.plan)
        if quality != v.quality or plan != v.plan:
            Variant.objects.filter(pk=v.pk).update(quality=quality, plan=plan)
    for job in BenchmarkJob.objects.select_related("variant").iterator():
        reference = (job.variant.quality or {}).get("reference", "")
        result = benchmark_result_v1(job.result, job.suite, reference)
        if result != job.result:
            BenchmarkJob.objects.filter(pk=job.pk).update(result=result)


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0005_checkpoint_name"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
