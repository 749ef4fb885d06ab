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
import subprocess
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


def host_name() -> str:
    """The machine's name in GPU leases: DSQ_HOST_NAME, else the hostname."""
    return settings.DSQ_HOST_NAME or socket.gethostname()


def scope() -> str:
    """gpu: this worker owns one GPU (DSQ_DEVICE); host: every GPU of its machine (DSQ_WORKER_SCOPE)."""
    return settings.DSQ_WORKER_SCOPE


def fake_gpus() -> "tuple[int, int] | None":
    """(count, bytes each) from DSQ_FAKE_GPUS ("8x80GB"), or None: GPUs advertised without CUDA."""
    if not settings.DSQ_FAKE_GPUS:
        return None
    from quant.fit import parse_hardware

    hardware = parse_hardware(f"custom:{settings.DSQ_FAKE_GPUS}")
    return hardware.n_gpu, hardware.gpu_bytes


def gpu_indices() -> list[int]:
    """The CUDA devices (torch indices) this worker's jobs run on.

    A host worker: every device of the machine. A one-GPU worker: N for cuda:N, 0 for cuda, none on cpu."""
    fake = fake_gpus()
    if scope() == "host":
        if fake:
            return list(range(fake[0]))
        return [g["index"] for g in nvidia_smi()]
    dev = device()
    if not dev.startswith("cuda"):
        return []
    return [int(dev.split(":", 1)[1]) if ":" in dev else 0]


def lease_ids(indices: list[int]) -> list[int]:
    """The machine's numbers for this worker's GPUs, which every worker of the machine leases by: torch
    indices mapped through CUDA_VISIBLE_DEVICES (a one-GPU worker started with 3 leases GPU 3, as a host
    worker seeing all eight does). Entries that are not numbers (GPU UUIDs) leave the index as it is."""
    mapped = cuda_visible_devices(indices).split(",") if indices else []
    return [int(m) if m.isdigit() else i for m, i in zip(mapped, indices)]


def nvidia_smi() -> list[dict]:
    """{index, total_bytes, free_bytes} of every GPU of the machine, from nvidia-smi.

    A host worker asks nvidia-smi rather than torch: torch would open a CUDA context (hundreds of MiB) on
    every GPU in the worker process, memory that llama-server then lacks."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total,memory.free",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.split(",") for line in out.strip().splitlines() if line.strip()]
    return [{"index": int(i), "total_bytes": int(t) << 20, "free_bytes": int(f) << 20} for i, t, f in rows]


def gpu_inventory() -> list[dict]:
    """{index, total_bytes, free_bytes} of each GPU this worker owns."""
    indices = gpu_indices()
    fake = fake_gpus()
    if fake:
        return [{"index": i, "total_bytes": fake[1], "free_bytes": fake[1]} for i in indices]
    if not indices:
        return []
    if scope() == "host":
        return nvidia_smi()
    import torch

    out = []
    for i in indices:
        free, total = torch.cuda.mem_get_info(torch.device("cuda", i))
        out.append({"index": i, "total_bytes": total, "free_bytes": free})
    return out


def cuda_visible_devices(indices: list[int]) -> str:
    """CUDA_VISIBLE_DEVICES for a child that must see exactly `indices` of this process's devices.

    The child reads the variable against the physical devices, so indices are mapped through this
    process's own CUDA_VISIBLE_DEVICES when it has one (a worker started with 3,5 owns physical 5 as cuda:1)."""
    mine = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return ",".join(mine[i] if i < len(mine) else str(i) for i in indices)


def capabilities() -> dict:
    """What this worker advertises: its device, GPUs (all of a host worker's), free disk, machine and scope."""
    root = Path(settings.DSQ_STORAGE_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    dev = device()
    gpus = gpu_inventory()
    gpu_free = gpu_total = None
    if scope() == "host":
        dev = f"cuda×{len(gpus)}"
        if gpus:  # the memory check of one-GPU jobs does not apply: quant.fit over all GPUs does (requirements)
            gpu_total = sum(g["total_bytes"] for g in gpus)
            gpu_free = sum(g["free_bytes"] for g in gpus)
    elif gpus:
        gpu_free, gpu_total = gpus[0]["free_bytes"], gpus[0]["total_bytes"]
    return {"device": dev, "gpu_free_bytes": gpu_free, "gpu_total_bytes": gpu_total,
            "disk_free_bytes": shutil.disk_usage(root).free, "storage_root": str(root), "updated_at": time.time(),
            "host": host_name(), "scope": scope(), "gpus": gpus, "gpu_count": len(gpus)}


def shortfall(needs: dict, have: dict) -> "str | None":
    """Why a job needing `needs` cannot run on a host with `have`; None when it fits."""
    reasons = []
    disk = needs.get("disk_bytes") or 0
    if disk > have["disk_free_bytes"]:
        reasons.append(f"needs {disk / 2**30:.1f} GiB disk, {have['disk_free_bytes'] / 2**30:.1f} GiB free")
    gpus = needs.get("gpus")
    if gpus is not None and gpus > have.get("gpu_count", 0):
        reasons.append(f"{needs.get('need') or f'needs {gpus} GPUs'}, this host has {have.get('gpu_count', 0)}")
    gpu = needs.get("gpu_bytes") or 0
    if gpu and have.get("scope") != "host" and have["gpu_free_bytes"] is not None and gpu > have["gpu_free_bytes"]:
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


def largest_free_host() -> int:
    """The most GPUs free (not leased) on one live host worker's machine; 0 when no host worker is up."""
    from registry import leases

    best = 0
    for record in live_hosts():
        if record.get("scope") == "host":
            free = int(record.get("gpu_count") or 0) - len(leases.leased_indices(record.get("host", "")))
            best = max(best, free)
    return best


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
