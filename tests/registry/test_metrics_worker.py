"""/metrics after a real quantization through a real Celery worker on the throwaway Redis and PostgreSQL."""
from __future__ import annotations

import pytest
from django.test import Client

from registry import dispatch
from registry.models import Checkpoint, JobState, QuantizationJob
from tests.faults.conftest import processes, tiny_job  # noqa: F401 (fixtures)
from tests.faults.processes import start_worker, wait_for
from tests.registry.test_metrics import value
from tests.workers.conftest import tiny_checkpoint  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def scrape() -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    text = Client().get("/metrics").content.decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_after_a_job_through_a_real_worker(processes, tiny_job, settings, redis_server):  # noqa: F811
    settings.CELERY_BROKER_URL = redis_server.url  # what /metrics reads Redis through
    job = tiny_job("Q4_K_M")
    Checkpoint.objects.filter(pk=job.checkpoint_id).update(parameter_count=1_000_000)
    before = scrape()
    assert value(before, "dsq_jobs", kind="quantize", state="queued") == 1
    assert ("dsq_job_duration_seconds_count", (("kind", "quantize"), ("state", "succeeded"))) not in before

    worker = start_worker(processes, "w1")
    dispatch.enqueue("quantize", job.pk)
    done = wait_for("the job to finish", lambda: (j := QuantizationJob.objects.get(pk=job.pk)).is_final and j,
                    180, worker)
    assert done.state == JobState.SUCCEEDED, done.error
    seconds = (done.finished_at - done.started_at).total_seconds()
    after = scrape()

    assert value(after, "dsq_jobs", kind="quantize", state="succeeded") == 1
    assert value(after, "dsq_jobs", kind="quantize", state="queued") == 0
    assert value(after, "dsq_job_duration_seconds_count", kind="quantize", state="succeeded") == 1
    assert value(after, "dsq_job_duration_seconds_sum", kind="quantize", state="succeeded") == pytest.approx(seconds)
    assert value(after, "dsq_quantize_weights_per_second", type="Q4_K_M", queue=done.queue) == \
        pytest.approx(1_000_000 / seconds)
    assert value(after, "dsq_queue_depth", queue="gpu") == 0
    assert 0 <= value(after, "dsq_worker_heartbeat_age_seconds", worker="w1", device="cpu") < 10
    assert value(after, "dsq_broker_up") == 1
