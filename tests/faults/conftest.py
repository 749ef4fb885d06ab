"""Fault-test fixtures: real worker and web processes on the throwaway Redis and PostgreSQL.

The other faults of the issue are proved where their code is tested:
- a worker killed (kill -9) mid-quantization: tests/workers/test_worker.py
  (test_a_killed_worker_loses_its_lease_and_another_resumes_byte_identically);
- the Hub failing mid-publish: tests/workers/test_publish.py
  (test_transient_errors_mid_publish_are_retried, test_a_failed_publish_leaves_nothing_half_published);
- two identical requests at once: tests/registry/api/test_quantizations.py
  (test_concurrent_identical_requests_make_one_job_and_one_message).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.processes import FAST_JOBS_ENV, Processes, database_url
from tests.workers.conftest import slow_checkpoint, tiny_checkpoint  # noqa: F401 (fixtures)


@pytest.fixture
def storage(settings, tmp_path) -> Path:
    settings.DSQ_STORAGE_ROOT = tmp_path / "storage"
    settings.DSQ_STORAGE_ROOT.mkdir()
    return settings.DSQ_STORAGE_ROOT


@pytest.fixture
def processes(celery_broker, redis_server, storage, tmp_path):
    """Start workers (and a web server) against the test database, Redis and storage; stopped at the end."""
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, **FAST_JOBS_ENV, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": redis_server.url,
           "DSQ_STORAGE_ROOT": str(storage)}
    procs = Processes(env, logs)
    try:
        yield procs
    finally:
        procs.stop_all()


def job_maker(name: str, path: Path):
    """Make queued jobs for the checkpoint at `path` (not yet sent to the broker)."""
    from tests import factories

    def make(recipe: str = "Q4_K_M", max_attempts: int = 3):
        from registry.models import Checkpoint

        ckpt = Checkpoint.objects.filter(name=name).first() or factories.checkpoint(name, local_path=str(path))
        return factories.quantization_job(ckpt, factories.recipe(recipe), max_attempts=max_attempts)

    return make


@pytest.fixture
def tiny_job(tiny_checkpoint):  # noqa: F811 (the imported fixture)
    return job_maker("tiny-v3", tiny_checkpoint)


@pytest.fixture
def slow_job(slow_checkpoint):  # noqa: F811 (the imported fixture)
    """Jobs that take seconds: for tests that act on a job mid-way."""
    return job_maker("slow-v3", slow_checkpoint)
