"""A job that needs more than a host has is not claimed there, and its row says why."""
from __future__ import annotations

import json

import pytest
import redis

from registry.models import JobState, QuantizationJob
from tests import factories
from workers import hosts, quantize, tasks

pytestmark = pytest.mark.django_db(transaction=True)  # the task closes connections like a worker



def test_a_job_too_big_for_this_host_stays_queued_with_the_reason(broker, monkeypatch, settings, tmp_path):
    settings.DSQ_STORAGE_ROOT = tmp_path
    monkeypatch.setenv("DSQ_WORKER_NAME", "small-host")
    monkeypatch.setattr(hosts, "capabilities", lambda: {"device": "cuda:1", "gpu_free_bytes": 8 << 30,
                                                         "gpu_total_bytes": 8 << 30, "disk_free_bytes": 1 << 30})
    monkeypatch.setattr(quantize, "requirements", lambda job: {"disk_bytes": 700 << 30, "gpu_bytes": 0})
    job = factories.quantization_job()

    assert tasks.quantize(job.pk) == "unfit"
    row = QuantizationJob.objects.get(pk=job.pk)
    assert row.state == JobState.QUEUED and row.attempts == 0 and row.worker == ""
    assert row.step == "waiting for a host: small-host needs 700.0 GiB disk, 1.0 GiB free"
    assert broker.llen("gpu") == 1  # sent again for another host
    advertised = json.loads(broker.get("dsq:host:small-host"))
    assert advertised["disk_free_bytes"] == 1 << 30 and advertised["device"] == "cuda:1"
    assert [h["worker"] for h in hosts.live_hosts()] == ["small-host"]


def test_shortfall_names_each_missing_resource():
    have = {"gpu_free_bytes": 2 << 30, "disk_free_bytes": 10 << 30}
    assert hosts.shortfall({"disk_bytes": 1 << 30, "gpu_bytes": 1 << 30}, have) is None
    assert hosts.shortfall({"disk_bytes": 1 << 30, "gpu_bytes": 4 << 30}, have) == \
        "needs 4.0 GiB GPU memory, 2.0 GiB free"
    assert hosts.shortfall({"gpu_bytes": 4 << 30}, {"gpu_free_bytes": None, "disk_free_bytes": 0}) is None  # CPU host
