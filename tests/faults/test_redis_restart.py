"""Fault: Redis (the broker) restarts or is down, with no persistence, so queued messages are lost.

Expected: no job is lost and none runs twice to completion. The job row is the truth and a
message only a trigger: a request made while Redis is down still answers 201 with a committed,
queued job; a message lost with Redis is sent again by the reaper (Celery beat) once it is
DSQ_REQUEUE_SECONDS overdue; a worker whose broker restarts mid-job reconnects and finishes the
job it holds, on its first attempt, and takes new work afterwards.
"""
from __future__ import annotations

import pytest

from registry import dispatch
from registry.models import JobState, QuantizationJob, Variant
from tests.faults.processes import frozen, start_worker, wait_for

# What the worker logs when it dies instead of reconnecting (see the xfail below).
KOMBU_CRASH = "Unrecoverable error: AttributeError(\"'NoneType' object has no attribute 'hostname'\")"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def row(job) -> QuantizationJob:
    return QuantizationJob.objects.get(pk=job.pk)


def finished(job):
    return lambda: row(job).is_final and row(job)


def test_jobs_whose_messages_were_lost_or_never_sent_still_run_once(
        processes, tiny_job, redis_server, celery_broker, django_user_model):
    from tests import factories
    from tests.registry.personas import client_for

    lost = tiny_job("Q4_K_M")
    factories.builtin_recipe("Q8_0")
    assert dispatch.enqueue("quantize", lost.pk) and celery_broker.llen("gpu") == 1
    redis_server.restart()  # no persistence: the queued message is gone
    assert celery_broker.llen("gpu") == 0

    redis_server.process.terminate()  # the broker is down while a user asks for a quantization
    redis_server.process.wait(10)
    client = client_for(django_user_model.objects.create_user("rita"))
    response = client.post("/api/quantizations/", {"checkpoint": "tiny-v3", "recipe": "Q8_0"}, format="json")
    assert response.status_code == 201, response.content
    unsent = QuantizationJob.objects.get(pk=response.json()["job"]["id"])
    assert unsent.state == JobState.QUEUED and unsent.enqueued_at is None
    redis_server.restart()

    worker = start_worker(processes, "w1")
    for job in (lost, unsent):
        done = wait_for(f"job {job.pk} to be sent again and finish", finished(job), 600, worker)
        assert done.state == JobState.SUCCEEDED and done.attempts == 1, done.error + done.log_tail
    assert Variant.objects.filter(status=Variant.Status.READY).count() == 2
    assert worker.text().count("claimed by w1") == 2


def test_a_worker_finishes_its_job_once_when_redis_restarts_under_it(processes, slow_job, redis_server):
    worker = start_worker(processes, "w1", beat=False)
    job = slow_job("Q4_K_M")
    dispatch.enqueue("quantize", job.pk)
    wait_for("the job to be under way", lambda: row(job).progress > 0, 600, worker)
    with frozen(worker.popen.pid):  # the restart lands mid-job, however fast the machine
        redis_server.restart()

    done = wait_for("the job to finish", finished(job), 600, worker)
    assert done.state == JobState.SUCCEEDED and done.attempts == 1 and done.worker == "w1", done.error
    assert worker.text().count(f"quantize job {job.pk} claimed") == 1

    wait_for("the worker to reconnect or exit", lambda: worker.popen.poll() is not None or (
        "Connected to redis" in worker.text().split("Connection to broker lost")[-1]), 60)
    if worker.popen.poll() is not None and KOMBU_CRASH in worker.text():
        pytest.xfail("celery 5.7.0 regression: a worker holding an unacked (acks_late) message exits on "
                     "broker connection loss instead of reconnecting (Consumer.on_connection_error_after_connected "
                     "closes the default channel after collect(): AttributeError in the Redis transport). "
                     "The job finished once; docker-compose's restart policy brings the worker back.")
    after = slow_job("Q8_0")  # the worker reconnected: it takes new work from the restarted broker
    assert dispatch.enqueue("quantize", after.pk)
    done = wait_for("a job sent after the restart to finish", finished(after), 600, worker)
    assert done.state == JobState.SUCCEEDED and done.attempts == 1, done.error
    assert row(job).attempts == 1 and Variant.objects.count() == 2
