"""The worker healthcheck reads the record a worker advertises (the shape workers/hosts.py writes)."""
from __future__ import annotations

import json
import socket
import time

import pytest

from dsq import healthcheck
from tests.faults.conftest import processes  # noqa: F401 (fixture)



def advertise(client, worker: str, age: float) -> None:
    record = {"device": "cpu", "gpu_free_bytes": None, "gpu_total_bytes": None, "disk_free_bytes": 1 << 30,
              "storage_root": "/data/storage", "updated_at": time.time() - age, "worker": worker, "queues": ["cpu"]}
    client.set(f"dsq:host:{worker}", json.dumps(record), ex=90)


def test_it_is_healthy_with_a_fresh_heartbeat_of_this_host(broker, monkeypatch):
    monkeypatch.delenv("DSQ_WORKER_NAME", raising=False)
    advertise(broker, f"{socket.gethostname()}:4242", age=1)
    assert healthcheck.check_worker() == 0


def test_it_is_unhealthy_without_a_record(broker, monkeypatch):
    monkeypatch.delenv("DSQ_WORKER_NAME", raising=False)
    advertise(broker, "another-host:1", age=1)
    assert healthcheck.check_worker() == 1


def test_it_is_unhealthy_when_the_heartbeat_is_stale(broker, settings):
    settings.DSQ_HEARTBEAT_SECONDS = 5
    advertise(broker, "gpu@node1", age=60)
    assert healthcheck.check_worker("gpu@node1") == 1
    advertise(broker, "gpu@node1", age=2)
    assert healthcheck.check_worker("gpu@node1") == 0


def test_it_is_unhealthy_when_redis_is_unreachable(settings):
    from dsq.localservices import free_port

    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    assert healthcheck.check_worker("gpu@node1") == 1


@pytest.mark.django_db(transaction=True)
def test_the_web_check_passes_on_a_ready_server_and_fails_on_a_refusal(live_server, broker, settings, tmp_path,
                                                                        monkeypatch):
    settings.DSQ_STORAGE_ROOT = tmp_path
    monkeypatch.setenv("DSQ_ALLOWED_HOSTS", "localhost,127.0.0.1")
    assert healthcheck.check_web(live_server.url + "/readyz") == 0
    settings.DSQ_STORAGE_ROOT = tmp_path / "missing"
    assert healthcheck.check_web(live_server.url + "/readyz") == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_is_healthy_while_it_runs_and_unhealthy_once_stopped(processes, settings, redis_server):
    from tests.faults.processes import start_worker, wait_for

    settings.CELERY_BROKER_URL = redis_server.url
    settings.DSQ_HEARTBEAT_SECONDS = 1  # as the worker runs (FAST_JOBS_ENV): stale after 10 s
    worker = start_worker(processes, "w1", beat=False)
    wait_for("w1 to advertise itself", lambda: healthcheck.check_worker("w1") == 0, 30, worker)
    worker.stop()
    wait_for("w1's heartbeat to go stale", lambda: healthcheck.check_worker("w1") == 1, 30)
