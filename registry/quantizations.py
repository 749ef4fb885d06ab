"""Requesting a quantization: the same inputs never queue a second job or rebuild a variant."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from registry import dispatch
from registry.benchmarks import check_suites, request_benchmarks
from registry.models import LIVE_STATES, AuditLog, Checkpoint, ImatrixArtifact, QuantizationJob, Recipe, Variant



def request_key(checkpoint: Checkpoint, recipe: Recipe, imatrix_sha256: str) -> str:
    """What makes a variant: the checkpoint revision, the recipe hash, the importance matrix hash.

    Benchmark suites are not part of it: they do not change the files, only what is measured.
    """
    text = f"{checkpoint.pk}:{checkpoint.revision}:{recipe.sha256}:{imatrix_sha256}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Outcome:
    job: Optional[QuantizationJob]
    variant: Optional[Variant]
    created: bool


def request_quantization(checkpoint: Checkpoint, recipe: Recipe, *, user, imatrix: str = "",
                         imatrix_sha256: str = "", benchmark_suites: "list[str] | None" = None,
                         imatrix_artifact: "ImatrixArtifact | None" = None,
                         no_data_policy: str = "uniform") -> Outcome:
    """Return the ready variant or the live job for these inputs, or queue a new job (after commit).

    A registered imatrix (imatrix_artifact) stands for its file and hash: the same imatrix asked by id or
    by path is the same input. no_data_policy "refuse" turns one with never-routed experts away."""
    check_suites(list(benchmark_suites or []))
    if imatrix_artifact is not None:
        from registry.imatrices import check_policy

        if imatrix_artifact.checkpoint_id != checkpoint.pk:
            raise ValidationError(f"imatrix {imatrix_artifact.pk} was computed for checkpoint "
                                  f"{imatrix_artifact.checkpoint.name}, not {checkpoint.name}")
        check_policy(imatrix_artifact, no_data_policy)
        imatrix, imatrix_sha256 = imatrix_artifact.storage_path, imatrix_artifact.sha256
    variant = Variant.objects.filter(checkpoint=checkpoint, recipe=recipe, imatrix_sha256=imatrix_sha256,
                                     status=Variant.Status.READY).first()
    if variant is not None:
        if benchmark_suites:
            request_benchmarks(variant, list(benchmark_suites), user)
        return Outcome(None, variant, False)
    key = request_key(checkpoint, recipe, imatrix_sha256)
    live = QuantizationJob.objects.filter(request_key=key, state__in=LIVE_STATES).first()
    if live is not None:
        return Outcome(live, live.variant, False)
    try:
        with transaction.atomic():
            job = QuantizationJob.objects.create(
                checkpoint=checkpoint, recipe=recipe, request_key=key, imatrix=imatrix,
                imatrix_sha256=imatrix_sha256, imatrix_artifact=imatrix_artifact,
                benchmark_suites=list(benchmark_suites or []), requested_by=user)
            AuditLog.record(user, "quantization.request", job, checkpoint=checkpoint.name, recipe=str(recipe))
    except IntegrityError:
        # Another request with the same inputs committed between our check and our insert:
        # the partial unique index kept one live job, and that one is the answer.
        winner = QuantizationJob.objects.filter(request_key=key, state__in=LIVE_STATES).first()
        if winner is None:
            raise
        return Outcome(winner, winner.variant, False)
    dispatch.enqueue_on_commit("quantize", job.pk)
    return Outcome(job, None, True)
