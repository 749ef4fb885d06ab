"""Load test of the registry: pull resolution, job submission and artifact downloads under gunicorn.

Starts a throwaway PostgreSQL and Redis (dsq.localservices), fills a realistic registry
(10 checkpoints, 50 variants with files, approved releases with v1/v2/latest tags), starts
gunicorn on a free loopback port, then drives it from an asyncio client at increasing
concurrency. Every level is bounded in time and in request count. Not part of `make test`:
figures depend on the machine; nothing here asserts a latency.

    .venv/bin/python scripts/load_test.py [--seconds 5] [--workers 4] [--levels 1,4,16,64]

Prints p50/p99 latency, throughput and errors per level, and the download throughput of a
256 MiB file through /api/files/ against a raw read of the same file (page cache warm for both).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dsq import localservices  # noqa: E402

BIG_FILE_BYTES = 256 * 2**20
N_CHECKPOINTS, N_RECIPES, N_NEW_RECIPES = 10, 5, 400


@dataclass
class Level:
    scenario: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self) -> str:
        n = len(self.latencies)
        lat = sorted(self.latencies)
        p50 = 1000 * statistics.median(lat) if lat else float("nan")
        p99 = 1000 * lat[min(n - 1, int(0.99 * n))] if lat else float("nan")
        errors = sum(self.errors.values())
        detail = ", ".join(f"{k}×{v}" for k, v in sorted(self.errors.items())) or "-"
        return (f"| {self.scenario} | {self.concurrency} | {n + errors} | {n / self.seconds:.0f} | {p50:.1f} | "
                f"{p99:.1f} | {errors} ({detail}) |")


def populate(storage: Path) -> dict:
    """Rows and files of a realistic registry; returns pull refs, a token, and the big file."""
    import django

    django.setup()
    from django.contrib.auth.models import Group, Permission, User
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from registry.models import APPROVERS_GROUP, ArtifactFile, Checkpoint, Recipe, Release, Variant

    call_command("migrate", verbosity=0)
    requester = User.objects.create_user("load-requester")
    approver = User.objects.create_user("load-approver")
    group, _ = Group.objects.get_or_create(name=APPROVERS_GROUP)
    group.permissions.add(Permission.objects.get(codename="approve_release"))
    approver.groups.add(group)

    def recipe(name: str) -> Recipe:
        definition = {"name": name, "default": "Q4_K", "rules": []}
        sha = hashlib.sha256(name.encode()).hexdigest()
        return Recipe.objects.create(name=name, version=1, sha256=sha, definition=definition)

    recipes = [recipe(n) for n in ("Q8_0", "Q6_K", "Q4_K_M", "DQ3_K_M", "DQ2_K")[:N_RECIPES]]
    new_recipes = [recipe(f"LOAD_{i}") for i in range(N_NEW_RECIPES)]  # inputs no one has asked for yet
    refs, big = [], None
    for c in range(N_CHECKPOINTS):
        ckpt = Checkpoint.objects.create(name=f"deepseek-load-{c}", family="DeepSeek-V3", architecture="deepseek2",
                                         config={}, parameter_count=671_000_000_000)
        for rcp in recipes:
            path = f"variants/{ckpt.name}/{rcp.name}"
            variant = Variant.objects.create(checkpoint=ckpt, recipe=rcp, status=Variant.Status.READY,
                                             storage_path=path, bits_per_weight=4.5, total_bytes=0)
            (storage / path).mkdir(parents=True)
            shards = 3
            for s in range(1, shards + 1):
                name = f"{ckpt.name}-{rcp.name}-{s:05d}-of-{shards:05d}.gguf"
                data = secrets.token_bytes(4096)
                if big is None:  # one variant's first shard is the big download
                    name, data = f"{ckpt.name}-{rcp.name}-big.gguf", b""
                    with open(storage / path / name, "wb") as f:
                        for _ in range(BIG_FILE_BYTES // 2**20):
                            f.write(os.urandom(2**20))
                    big = {"variant": variant.pk, "name": name, "path": storage / path / name}
                    ArtifactFile.objects.create(variant=variant, name=name, size=BIG_FILE_BYTES, sha256="0" * 64)
                    continue
                (storage / path / name).write_bytes(data)
                ArtifactFile.objects.create(variant=variant, name=name, size=len(data),
                                            sha256=hashlib.sha256(data).hexdigest())
            for _ in range(2):  # v1 and v2, both approved: tags v1, v2 and latest
                Release.request(variant, requester).approve(approver)
            refs += [f"{ckpt.name}:{rcp.name}@{tag}" for tag in ("v1", "v2", "latest")]
    token = Token.objects.create(user=requester).key
    return {"refs": refs, "token": token, "big": big, "checkpoints": [f"deepseek-load-{c}" for c in range(10)],
            "new_recipes": [r.name for r in new_recipes]}


async def drive(base: str, level: Level, make_request, seconds: float, max_requests: int) -> None:
    """`concurrency` tasks issue requests back to back until the time or the count runs out."""
    import aiohttp

    deadline = time.monotonic() + seconds
    budget = [max_requests]
    connector = aiohttp.TCPConnector(limit=level.concurrency, force_close=True)
    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def one_client():
            while time.monotonic() < deadline and budget[0] > 0:
                budget[0] -= 1
                method, path, kwargs, ok = make_request()
                t0 = time.perf_counter()
                try:
                    async with session.request(method, path, **kwargs) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    level.errors[type(exc).__name__] = level.errors.get(type(exc).__name__, 0) + 1
                    continue
                if status in ok:
                    level.latencies.append(time.perf_counter() - t0)
                else:
                    level.errors[str(status)] = level.errors.get(str(status), 0) + 1

        t0 = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(level.concurrency)))
        level.seconds = time.monotonic() - t0


def pull_requests(data: dict):
    rng = random.Random(1)

    def make():
        return "GET", f"/api/pull/{rng.choice(data['refs'])}", {}, (200,)
    return make


def quantization_requests(data: dict):
    """Half re-requests of inputs already queued (idempotent: 200, nothing enqueued), half new (201 + enqueue)."""
    rng = random.Random(2)
    fresh = [(c, r) for r in data["new_recipes"] for c in data["checkpoints"]]
    rng.shuffle(fresh)
    asked: list[tuple[str, str]] = []
    headers = {"Authorization": f"Token {data['token']}"}

    def make():
        if asked and (rng.random() < 0.5 or not fresh):
            checkpoint, recipe = rng.choice(asked)
        else:
            checkpoint, recipe = fresh.pop()
            asked.append((checkpoint, recipe))
        body = {"checkpoint": checkpoint, "recipe": recipe}
        return "POST", "/api/quantizations/", {"json": body, "headers": headers}, (200, 201)
    return make


async def download(base: str, variant: int, name: str) -> float:
    import aiohttp

    async with aiohttp.ClientSession(base) as session:
        t0 = time.perf_counter()
        total = 0
        async with session.get(f"/api/files/{variant}/{name}") as response:
            assert response.status == 200, response.status
            async for chunk in response.content.iter_chunked(1 << 20):
                total += len(chunk)
        elapsed = time.perf_counter() - t0
    assert total == BIG_FILE_BYTES, total
    return total / elapsed


def curl_download(base: str, variant: int, name: str) -> "float | None":
    """The same download with curl to /dev/null: takes the Python client's own cost out of the figure."""
    import shutil

    if not shutil.which("curl"):
        return None
    out = subprocess.run(["curl", "-sf", "-o", "/dev/null", "-w", "%{speed_download}",
                          f"{base}/api/files/{variant}/{name}"], capture_output=True, text=True, timeout=120)
    return float(out.stdout) if out.returncode == 0 else None


def raw_read(path: Path) -> float:
    t0 = time.perf_counter()
    total = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
    return total / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per concurrency level")
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="gunicorn sync workers")
    parser.add_argument("--downloads", type=int, default=3)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    with tempfile.TemporaryDirectory(prefix="dsq-load-") as tmp, localservices.postgres_server() as pg, \
            localservices.redis_server() as redis:
        storage = Path(tmp) / "storage"
        storage.mkdir()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dsq.settings", "DATABASE_URL": pg.url("postgres"),
               "CELERY_BROKER_URL": redis.url, "DSQ_STORAGE_ROOT": str(storage), "DSQ_PUBLISH_ON_APPROVAL": "0",
               "DSQ_THROTTLE_ANON": "off", "DSQ_THROTTLE_USER": "off", "DSQ_THROTTLE_QUANTIZE": "off",
               "DSQ_SECRET_KEY": secrets.token_urlsafe(32), "DSQ_LOG_LEVEL": "WARNING"}
        os.environ.update(env)
        t0 = time.monotonic()
        data = populate(storage)
        print(f"populated {len(data['refs'])} pull refs in {time.monotonic() - t0:.1f}s", flush=True)
        with localservices.registry_server(env, workers=args.workers) as base:
            warm = Level("warm-up", args.workers)  # each worker loads Django on its first request: not measured
            asyncio.run(drive(base, warm, pull_requests(data), 2.0, 20 * args.workers))
            results = []
            for scenario, factory in (("pull", pull_requests), ("quantize", quantization_requests)):
                for concurrency in levels:
                    level = Level(scenario, concurrency)
                    asyncio.run(drive(base, level, factory(data), args.seconds, args.max_requests))
                    results.append(level)
                    print(level.row(), flush=True)
            big = data["big"]
            raw_read(big["path"])  # warm the page cache
            asyncio.run(download(base, big["variant"], big["name"]))
            served = [asyncio.run(download(base, big["variant"], big["name"])) for _ in range(args.downloads)]
            raw = [raw_read(big["path"]) for _ in range(args.downloads)]
            curled = [c for c in (curl_download(base, big["variant"], big["name"]) for _ in range(args.downloads)) if c]
            import redis as redis_client

            client = redis_client.Redis.from_url(redis.url)
            queued = {k.decode(): client.llen(k) for k in client.keys() if client.type(k) == b"list"}

    print()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, gunicorn sync workers: {args.workers}, "
          f"PostgreSQL {pg.port and 'throwaway'}, {args.seconds:.0f}s per level (max {args.max_requests} requests)")
    print("| scenario | concurrency | requests | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for level in results:
        print(level.row())
    mib = 2**20
    s, r = statistics.median(served), statistics.median(raw)
    print()
    print(f"Celery messages waiting on Redis, by queue: {queued}")
    print(f"download of {BIG_FILE_BYTES // mib} MiB: /api/files/ {s / mib:.0f} MiB/s, raw read {r / mib:.0f} MiB/s, "
          f"ratio {s / r:.2f} (median of {args.downloads}, page cache warm; aiohttp client)")
    if curled:
        c = statistics.median(curled)
        print(f"download with curl to /dev/null: {c / mib:.0f} MiB/s, ratio to raw read {c / r:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
