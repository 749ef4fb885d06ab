"""Celery tasks: explicit names, ids in, one call into workers.runner."""
from __future__ import annotations

from workers.celery_app import app
from workers import publish as publishing
from workers import runner


@app.task(name="dsq.quantize", acks_late=True, reject_on_worker_lost=True)
def quantize(job_id: int) -> str:
    return runner.run_job("quantize", job_id)


@app.task(name="dsq.benchmark", acks_late=True, reject_on_worker_lost=True)
def benchmark(job_id: int) -> str:
    return runner.run_job("benchmark", job_id)


@app.task(name="dsq.reap_expired")
def reap_expired() -> int:
    return runner.reap_and_requeue()


@app.task(name="dsq.publish", acks_late=True, reject_on_worker_lost=True)
def publish(release_id: int) -> str:
    return publishing.publish_release(release_id).commit
