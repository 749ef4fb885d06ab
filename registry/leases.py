"""GPU leases: a one-GPU job and a whole-host job never share a GPU.

A worker leases the GPUs a job will use before it claims the job (all of them or none: the rows are
inserted in one transaction under the unique (host, index) constraint), extends them with the job's
heartbeat, and gives them back when the job ends. A lease whose worker died expires after
DSQ_LEASE_SECONDS, like the job's own lease.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from registry.models import GpuLease


@dataclass(frozen=True)
class Busy:
    """The leases that stand in the way of a job."""

    holders: tuple[GpuLease, ...]

    def __str__(self) -> str:
        by_job: dict[tuple, list[int]] = {}
        for lease in self.holders:
            by_job.setdefault((lease.host, lease.scope, lease.job_kind, lease.job_id, lease.worker), []).append(lease.index)
        parts = [f"{host} GPU {','.join(map(str, sorted(ix)))} leased to {'one-GPU' if scope == 'gpu' else 'whole-host'} "
                 f"{kind} job {job_id} on {worker}" for (host, scope, kind, job_id, worker), ix in by_job.items()]
        return "; ".join(parts)


def _expiry(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=settings.DSQ_LEASE_SECONDS)


def acquire(host: str, indices: list[int], *, worker: str, job_kind: str, job_id: int, scope: str) -> "Busy | None":
    """Lease every GPU in `indices` of `host` for the job; None when leased, else who holds them (nothing taken)."""
    now = timezone.now()
    mine = dict(job_kind=job_kind, job_id=job_id)
    with transaction.atomic():
        GpuLease.objects.filter(host=host, index__in=indices, expires_at__lt=now).delete()
        held = list(GpuLease.objects.filter(host=host, index__in=indices).exclude(**mine))
        if held:
            return Busy(tuple(held))
        try:
            with transaction.atomic():
                GpuLease.objects.filter(host=host, index__in=indices, **mine).delete()
                GpuLease.objects.bulk_create([GpuLease(host=host, index=i, worker=worker, scope=scope,
                                                       expires_at=_expiry(now), **mine) for i in indices])
        except IntegrityError:  # another worker leased one of them between our read and our insert
            return Busy(tuple(GpuLease.objects.filter(host=host, index__in=indices).exclude(**mine)))
    return None


def renew(job_kind: str, job_id: int) -> int:
    """Extend the job's leases (called with its heartbeat); returns how many it holds."""
    return GpuLease.objects.filter(job_kind=job_kind, job_id=job_id).update(expires_at=_expiry(timezone.now()))


def release(job_kind: str, job_id: int) -> None:
    GpuLease.objects.filter(job_kind=job_kind, job_id=job_id).delete()


def leased_indices(host: str) -> set[int]:
    """The GPUs of `host` that a live lease holds."""
    return set(GpuLease.objects.filter(host=host, expires_at__gte=timezone.now()).values_list("index", flat=True))
