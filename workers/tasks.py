"""Celery tasks: explicit names (dsq.celery), ids in, one call into the module of their job kind.

`worker_ready` starts advertising this host's capabilities (workers.hosts) for as long as the
worker runs; this module is what a worker imports on start (dsq.celery autodiscovers it).
"""
from __future__ import annotations

from celery.signals import worker_ready

from dsq.celery import BENCHMARK, IMATRIX, PUBLISH, QUANTIZE, QUANTIZE_SHARD, REAP_EXPIRED, app
from workers import benchmark as benchmarking
from workers import hosts, reaper
from workers import imatrix as imatrices
from workers import publish as publishing
from workers import quantize as quantizing
from workers.context import run_job


@app.task(name=QUANTIZE, acks_late=True, reject_on_worker_lost=True)
def quantize(job_id: int) -> str:
    return run_job("quantize", job_id, quantizing.run, quantizing.requirements)


@app.task(name=QUANTIZE_SHARD, acks_late=True, reject_on_worker_lost=True)
def quantize_shard(job_id: int) -> str:
    state = run_job("shard", job_id, quantizing.run_shard, quantizing.shard_requirements)
    quantizing.settle_shards(job_id)  # whatever happened: the split job may move on (registry.shards.settle)
    return state


@app.task(name=BENCHMARK, acks_late=True, reject_on_worker_lost=True)
def benchmark(job_id: int) -> str:
    return run_job("benchmark", job_id, benchmarking.run, benchmarking.requirements)


@app.task(name=IMATRIX, acks_late=True, reject_on_worker_lost=True)
def imatrix(job_id: int) -> str:
    return run_job("imatrix", job_id, imatrices.run, imatrices.requirements)


@app.task(name=REAP_EXPIRED)
def reap_expired() -> int:
    return reaper.reap_and_requeue()


@app.task(name=PUBLISH, acks_late=True, reject_on_worker_lost=True)
def publish(release_id: int) -> str:
    return publishing.publish_release(release_id).commit


@worker_ready.connect
def _advertise_host(sender=None, **_) -> None:
    """Keep this host's capabilities (GPU memory, free disk) visible in Redis while it runs."""
    try:
        queues = sorted(sender.app.amqp.queues.consume_from)
    except AttributeError:
        queues = []
    hosts.start_advertising(hosts.worker_name(), queues)
