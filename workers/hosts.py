"""What a worker host can hold, advertised in Redis, and whether a job fits on it.

Each worker writes `dsq:host:<worker name>` (JSON: device, GPU memory, free disk under the
storage root, queues) with a TTL, refreshed every heartbeat period while it lives and before
every claim. Before claiming a job the worker (workers.context) compares the job's needs with this host's; a
job that does not fit is left queued, its row's `step` says why, and its message is sent
again later for another host to take.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

from django.conf import settings

from dsq.celery import HOST_KEY_PREFIX

KEY_PREFIX = HOST_KEY_PREFIX


def worker_name() -> str:
    """This worker's name on job rows and host records: DSQ_WORKER_NAME, else host:pid."""
    return os.environ.get("DSQ_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def device() -> str:
    """The torch device of this worker: DSQ_DEVICE (e.g. cuda:1), default cpu."""
    return settings.DSQ_DEVICE


def capabilities() -> dict:
    root = Path(settings.DSQ_STORAGE_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    dev = device()
    gpu_free = gpu_total = None
    if dev.startswith("cuda"):
        import torch

        gpu_free, gpu_total = torch.cuda.mem_get_info(torch.device(dev))
    return {"device": dev, "gpu_free_bytes": gpu_free, "gpu_total_bytes": gpu_total,
            "disk_free_bytes": shutil.disk_usage(root).free, "storage_root": str(root), "updated_at": time.time()}


def shortfall(needs: dict, have: dict) -> "str | None":
    """Why a job needing `needs` cannot run on a host with `have`; None when it fits."""
    reasons = []
    disk = needs.get("disk_bytes") or 0
    if disk > have["disk_free_bytes"]:
        reasons.append(f"needs {disk / 2**30:.1f} GiB disk, {have['disk_free_bytes'] / 2**30:.1f} GiB free")
    gpu = needs.get("gpu_bytes") or 0
    if gpu and have["gpu_free_bytes"] is not None and gpu > have["gpu_free_bytes"]:
        reasons.append(f"needs {gpu / 2**30:.1f} GiB GPU memory, {have['gpu_free_bytes'] / 2**30:.1f} GiB free")
    return "; ".join(reasons) or None


def _redis():
    """The broker's Redis: host records live beside the queues they describe."""
    import redis

    from dsq.celery import app

    return redis.Redis.from_url(app.conf.broker_url)


def advertise(worker: str, caps: "dict | None" = None, queues: "list[str] | None" = None) -> dict:
    caps = dict(caps or capabilities(), worker=worker, queues=queues or [])
    ttl = max(10, 3 * settings.DSQ_HEARTBEAT_SECONDS)
    _redis().set(KEY_PREFIX + worker, json.dumps(caps), ex=ttl)
    return caps


def live_hosts() -> list[dict]:
    """Every host that advertised itself within the last few heartbeats (for the dashboard)."""
    r = _redis()
    return [json.loads(v) for v in (r.get(k) for k in r.scan_iter(KEY_PREFIX + "*")) if v]


def start_advertising(worker: str, queues: list[str]) -> threading.Thread:
    """Refresh this host's key every heartbeat period from a daemon thread (worker main process)."""
    def loop() -> None:
        while True:
            try:
                advertise(worker, queues=queues)
            except Exception:  # Redis away for a moment: try again next period
                pass
            time.sleep(settings.DSQ_HEARTBEAT_SECONDS)

    thread = threading.Thread(target=loop, name="dsq-host-advertiser", daemon=True)
    thread.start()
    return thread
