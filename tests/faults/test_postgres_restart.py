"""Fault: PostgreSQL restarts while a worker runs a job and while the API is serving.

Expected: both recover without manual steps. Every open connection dies with the restart; the
worker's heartbeat thread logs the failed beat, reconnects on the next one and keeps its lease,
so the job finishes on its first attempt with its log intact; the job's outcome is written on a
fresh connection. The registry (gunicorn) answers the first request after the restart.
"""
from __future__ import annotations

import json
import sys
import urllib.request

import pytest
from django.db import connection

from dsq.localservices import free_port, wait_for_port
from registry import dispatch
from registry.models import JobState, QuantizationJob, Variant
from tests.faults.processes import frozen, start_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def row(job) -> QuantizationJob:
    return QuantizationJob.objects.get(pk=job.pk)


def restart(postgres_server) -> None:
    postgres_server.restart()
    connection.close()  # this process's connection died with the server too


def test_a_running_job_survives_a_postgres_restart(processes, slow_job, postgres_server):
    worker = start_worker(processes, "w1")
    job = slow_job("Q4_K_M")
    dispatch.enqueue("quantize", job.pk)
    # progress > 0: a heartbeat has written, so the worker holds a connection the restart will cut.
    wait_for("the job to be under way", lambda: row(job).progress > 0, 600, worker)
    with frozen(worker.popen.pid):  # the restart lands mid-job, however fast the machine
        restart(postgres_server)

    # 300 s: on a loaded 2-core CI machine the rest of this 150M-weight job alone can take two minutes.
    done = wait_for("the job to finish", lambda: row(job).is_final and row(job), 600, worker)
    assert done.state == JobState.SUCCEEDED and done.attempts == 1 and done.worker == "w1", done.error
    assert "heartbeat not written, retrying" in worker.text(), "the restart should have cut a heartbeat"
    lines = [line for line in done.log_tail.splitlines() if line.startswith("tensor ")]
    assert len(lines) == len(set(lines)) and lines[-1].startswith(f"tensor {len(lines)}/{len(lines)} ")
    assert Variant.objects.get(pk=done.variant_id).status == Variant.Status.READY


def get_json(url: str) -> "tuple[int, dict]":
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.status, json.loads(response.read())


def test_the_api_answers_right_after_a_postgres_restart(processes, tiny_job, postgres_server):
    job = tiny_job("Q4_K_M")
    port = free_port()
    web = processes.start("web", [sys.executable, "-m", "gunicorn", "dsq.wsgi", "--bind", f"127.0.0.1:{port}",
                                  "--workers", "1", "--timeout", "60"])
    wait_for_port(port, 60, web.popen, "gunicorn")
    url = f"http://127.0.0.1:{port}/api/jobs/quantize/{job.pk}/"
    status, body = get_json(url)
    assert status == 200 and body["id"] == job.pk

    restart(postgres_server)
    status, body = get_json(url)  # the first request after the restart, no retry
    assert status == 200 and body["id"] == job.pk and body["state"] == JobState.QUEUED
