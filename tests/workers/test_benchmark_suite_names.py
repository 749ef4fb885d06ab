"""A benchmark job whose suite is not a known name fails at once: no file is read, no retry is queued."""
from __future__ import annotations

import pytest

from registry.models import BenchmarkJob, JobState
from tests import factories
from workers import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("suite", ["/etc/passwd", "/no/such/file.yaml", "../suites/smoke"])
def test_an_unknown_suite_fails_permanently_without_reading_a_file(storage, celery_broker, suite):
    # A row that slipped past the request-time check (written before it existed, or by hand).
    job = BenchmarkJob.objects.create(variant=factories.variant(), suite=suite, request_key=suite)

    assert tasks.benchmark(job.pk) == JobState.FAILED
    job.refresh_from_db()
    assert job.attempts == 1 and job.not_before is None
    assert "PermanentError" in job.error and "known suites: deepseek-paper, smoke" in job.error
    assert "root:" not in job.error + job.log_tail and "YAML" not in job.error + job.log_tail
    assert celery_broker.llen("gpu") == 0 and celery_broker.llen("cpu") == 0  # nothing re-sent
