"""Requesting an importance matrix: the same inputs never queue a second job or compute it twice.

The inputs are the checkpoint at its revision, the calibration dataset (its text's hash) and the
settings (chunks, n_ctx); the job computes it with llama-imatrix on the checkpoint's reference GGUF
(workers/imatrix.py) and `record` stores the ImatrixArtifact with its coverage.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from registry import dispatch
from registry.calibration import default_dataset
from registry.models import AuditLog, CalibrationDataset, Checkpoint, ImatrixArtifact, ImatrixJob, JobState, Variant

LIVE = (JobState.QUEUED, JobState.RUNNING)
DEFAULT_N_CTX = 512  # llama-imatrix's default
N_CTX_RANGE = (16, 1 << 17)  # llama-imatrix skips matmuls of fewer than 16 tokens
MAX_CHUNKS = 100_000
#: What llama-quantize does with an expert no calibration token reached (quantize.cpp, load_imatrix):
#: weights of 1 for its columns, i.e. the same as quantizing that expert without an imatrix.
NO_DATA_POLICY = "uniform"
NO_DATA_POLICIES = ("uniform", "refuse")


def check_settings(chunks: int, n_ctx: int) -> None:
    """ValidationError naming the setting and its range."""
    if isinstance(chunks, bool) or not isinstance(chunks, int) or not 0 <= chunks <= MAX_CHUNKS:
        raise ValidationError(f"chunks must be an integer from 0 (all of the text) to {MAX_CHUNKS}")
    low, high = N_CTX_RANGE
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or not low <= n_ctx <= high:
        raise ValidationError(f"n_ctx must be an integer from {low} to {high}")


def request_key(checkpoint: Checkpoint, dataset: CalibrationDataset, chunks: int, n_ctx: int) -> str:
    text = f"imatrix:{checkpoint.pk}:{checkpoint.revision}:{dataset.sha256}:{chunks}:{n_ctx}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Outcome:
    job: Optional[ImatrixJob]
    imatrix: Optional[ImatrixArtifact]
    created: bool


def request_imatrix(checkpoint: Checkpoint, dataset: "CalibrationDataset | None" = None, *, user,
                    chunks: int = 0, n_ctx: int = DEFAULT_N_CTX) -> Outcome:
    """Return the imatrix or the live job for these inputs, or queue a new job (after commit)."""
    check_settings(chunks, n_ctx)
    dataset = dataset or default_dataset()
    ready = ImatrixArtifact.objects.filter(checkpoint=checkpoint, checkpoint_revision=checkpoint.revision,
                                           dataset=dataset, chunks=chunks, n_ctx=n_ctx).first()
    if ready is not None:
        return Outcome(None, ready, False)
    key = request_key(checkpoint, dataset, chunks, n_ctx)
    live = ImatrixJob.objects.filter(request_key=key, state__in=LIVE).first()
    if live is not None:
        return Outcome(live, None, False)
    try:
        with transaction.atomic():
            job = ImatrixJob.objects.create(checkpoint=checkpoint, dataset=dataset, chunks=chunks, n_ctx=n_ctx,
                                            request_key=key, requested_by=user)
            AuditLog.record(user, "imatrix.request", job, checkpoint=checkpoint.name, dataset=dataset.name,
                            chunks=chunks, n_ctx=n_ctx)
    except IntegrityError:  # the same request committed between our check and our insert
        winner = ImatrixJob.objects.filter(request_key=key, state__in=LIVE).first()
        if winner is None:
            raise
        return Outcome(winner, None, False)
    dispatch.enqueue_on_commit("imatrix", job.pk)
    return Outcome(job, None, True)


def record(job: ImatrixJob, *, storage_path: str, size: int, sha256: str, coverage: dict,
           reference: "Variant | None") -> ImatrixArtifact:
    """Store the finished imatrix of a job (called by the worker once the file is in place).

    The inputs are unique: an artifact already there (a retry after the worker died past this point)
    is the answer."""
    fields = dict(checkpoint=job.checkpoint, checkpoint_revision=job.checkpoint.revision, dataset=job.dataset,
                  chunks=job.chunks, n_ctx=job.n_ctx)
    with transaction.atomic():
        artifact, created = ImatrixArtifact.objects.get_or_create(**fields, defaults=dict(
            storage_path=storage_path, size=size, sha256=sha256, coverage=coverage, reference=reference,
            chunk_count=int(coverage.get("chunk_count") or 0)))
        if created:
            AuditLog.record(job.requested_by, "imatrix.create", artifact, job=job.pk, sha256=sha256,
                            experts_never_routed=artifact.experts_never_routed)
    return artifact


def check_policy(artifact: ImatrixArtifact, policy: str) -> None:
    """ValidationError when the policy refuses an imatrix with experts no calibration token reached."""
    if policy not in NO_DATA_POLICIES:
        raise ValidationError(f"unknown no-data policy {str(policy)[:50]!r}; policies: {', '.join(NO_DATA_POLICIES)}")
    if policy == "refuse" and artifact.experts_never_routed:
        blocks = {b: e["never_routed"] for b, e in (artifact.coverage.get("experts") or {}).items()
                  if e.get("never_routed")}
        shown = "; ".join(f"{b}: {v}" for b, v in list(blocks.items())[:4])
        raise ValidationError(f"imatrix {artifact.pk} has {artifact.experts_never_routed} experts no calibration "
                              f"token reached ({shown}): use a larger dataset, or no_data_policy=uniform")
