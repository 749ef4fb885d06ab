"""GPU leases: a whole-host job and one-GPU jobs never hold the same GPU (registry.leases)."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from registry import leases
from registry.models import GpuLease

pytestmark = pytest.mark.django_db(transaction=True)

ALL = list(range(8))


def test_a_host_job_waits_while_one_gpu_is_leased_to_a_one_gpu_job_and_takes_all_once_it_is_free():
    assert leases.acquire("h1", [3], worker="w3", job_kind="quantize", job_id=1, scope="gpu") is None
    busy = leases.acquire("h1", ALL, worker="host-w", job_kind="benchmark", job_id=2, scope="host")
    assert str(busy) == "h1 GPU 3 leased to one-GPU quantize job 1 on w3"
    assert list(GpuLease.objects.values_list("index", flat=True)) == [3]  # all or nothing

    leases.release("quantize", 1)
    assert leases.acquire("h1", ALL, worker="host-w", job_kind="benchmark", job_id=2, scope="host") is None
    assert leases.leased_indices("h1") == set(ALL)


def test_one_gpu_jobs_wait_while_a_host_job_holds_the_host_and_other_hosts_are_unaffected():
    assert leases.acquire("h1", ALL, worker="host-w", job_kind="benchmark", job_id=2, scope="host") is None
    busy = leases.acquire("h1", [5], worker="w5", job_kind="quantize", job_id=9, scope="gpu")
    assert str(busy) == "h1 GPU 5 leased to whole-host benchmark job 2 on host-w"
    assert leases.acquire("h2", [5], worker="w5b", job_kind="quantize", job_id=9, scope="gpu") is None


def test_a_dead_workers_lease_expires_and_a_heartbeat_keeps_a_live_one():
    assert leases.acquire("h1", [0, 1], worker="dead", job_kind="benchmark", job_id=1, scope="host") is None
    GpuLease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert leases.leased_indices("h1") == set()
    assert leases.acquire("h1", [1], worker="w1", job_kind="quantize", job_id=5, scope="gpu") is None
    before = GpuLease.objects.get(job_id=5).expires_at
    assert leases.renew("quantize", 5) == 1 and GpuLease.objects.get(job_id=5).expires_at >= before


def test_asking_again_for_the_same_job_keeps_its_lease():
    assert leases.acquire("h1", [2], worker="w2", job_kind="benchmark", job_id=4, scope="gpu") is None
    assert leases.acquire("h1", [2], worker="w2", job_kind="benchmark", job_id=4, scope="gpu") is None
    assert GpuLease.objects.count() == 1
