"""The worker fleet as the registry sees it: host records in Redis, queue lengths, waiting and stuck jobs.

Workers advertise `dsq:host:<worker name>` (JSON: device, GPU memory, free disk, queues, updated_at)
in the broker's Redis with a TTL of a few heartbeats (written by the workers, read here). The registry
never imports `workers`: the key prefix and queue names below are the registry's copy of that contract.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Optional

from django.conf import settings
from django.utils import timezone

from dsq.celery import HOST_KEY_PREFIX, QUEUES
from registry.jobs import JOB_MODELS
from registry.models import Job, JobState

# kombu's Redis transport keeps one list per queue and priority step: `name`, `name\x06\x163`, …
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def redis_client():
    """The broker's Redis, with short timeouts: a page or a scrape must not hang on it."""
    import redis

    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2)


def stale_after_seconds() -> float:
    """A host record older than this is stale (the same span as the key's TTL)."""
    return max(10, 3 * settings.DSQ_HEARTBEAT_SECONDS)


@dataclass
class Host:
    worker: str
    device: str
    queues: list[str]
    age_seconds: float
    gpu_free_bytes: Optional[int]
    gpu_total_bytes: Optional[int]
    disk_free_bytes: Optional[int]
    jobs: list[Job] = field(default_factory=list)

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def gpu_used_bytes(self) -> Optional[int]:
        if self.gpu_total_bytes is None or self.gpu_free_bytes is None:
            return None
        return self.gpu_total_bytes - self.gpu_free_bytes


def hosts(client=None, now: "float | None" = None) -> list[Host]:
    """Every advertised host, sorted by worker name."""
    client = client or redis_client()
    now = now or time.time()
    out = []
    for key in client.scan_iter(HOST_KEY_PREFIX + "*"):
        raw = client.get(key)
        if not raw:
            continue  # expired between SCAN and GET
        record = json.loads(raw)
        worker = record.get("worker") or key.decode()[len(HOST_KEY_PREFIX):]
        out.append(Host(worker, record.get("device", "cpu"), list(record.get("queues") or []),
                        max(0.0, now - float(record.get("updated_at", now))), record.get("gpu_free_bytes"),
                        record.get("gpu_total_bytes"), record.get("disk_free_bytes")))
    return sorted(out, key=lambda h: h.worker)


def queue_depths(client=None) -> dict[str, int]:
    """Messages waiting in each Celery queue (all priority steps together)."""
    client = client or redis_client()
    return {q: sum(client.llen(q + suffix) for suffix in PRIORITY_SUFFIXES) for q in QUEUES}


def running_jobs() -> list[Job]:
    jobs: list[Job] = []
    for model in JOB_MODELS.values():
        jobs += list(model.objects.filter(state=JobState.RUNNING))
    return jobs


def oldest_waiting() -> Optional[Job]:
    """The queued job created first; its `step` says why it waits when no host can take it."""
    candidates = [m.objects.filter(state=JobState.QUEUED).order_by("created_at").first() for m in JOB_MODELS.values()]
    candidates = [j for j in candidates if j is not None]
    return min(candidates, key=lambda j: j.created_at) if candidates else None


def is_stuck(job: Job, now: "dt.datetime | None" = None) -> bool:
    """Running, yet no heartbeat (which carries progress) for DSQ_STUCK_MINUTES."""
    if job.state != JobState.RUNNING:
        return False
    last = job.heartbeat_at or job.started_at
    now = now or timezone.now()
    return last is None or now - last > dt.timedelta(minutes=settings.DSQ_STUCK_MINUTES)


@dataclass
class Fleet:
    """Everything the fleet page shows, read once per request."""

    gpu_hosts: list[Host]
    cpu_hosts: list[Host]
    queue_depths: dict[str, int]
    broker_error: str
    oldest_waiting: Optional[Job]
    running: list[Job]
    stuck: list[Job]
    unplaced: list[Job]  # running on a worker that no longer advertises itself


def snapshot() -> Fleet:
    running = running_jobs()
    try:
        client = redis_client()
        all_hosts, depths, broker_error = hosts(client), queue_depths(client), ""
    except Exception as exc:  # the page still shows what the database knows
        all_hosts, depths, broker_error = [], {}, type(exc).__name__
    by_worker = {h.worker: h for h in all_hosts}
    for job in running:
        if job.worker in by_worker:
            by_worker[job.worker].jobs.append(job)
    now = timezone.now()
    return Fleet([h for h in all_hosts if h.is_gpu], [h for h in all_hosts if not h.is_gpu], depths, broker_error,
                 oldest_waiting(), running, [j for j in running if is_stuck(j, now)],
                 [j for j in running if j.worker not in by_worker])
