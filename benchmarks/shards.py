"""One split quantization on 1, 2, 4 … real workers: how the wall time falls with the workers.

    python -m benchmarks.shards [--workers 1,2,4] [--full] [--recipe Q4_K_M] [--shard-mib 24] [--workdir DIR]

The checkpoint is quant.bench_pipeline's: DeepSeek-V3's real tensor shapes with few layers and
experts (the MoE block alone; ``--full``: a dense block too). Real PostgreSQL, Redis and
`celery -A dsq worker` processes (one pool process and one torch thread each, as a worker per
GPU would be) on this machine; the variant is split into GGUF files of about --shard-mib MiB,
one shard job per file (registry.shards).

For each worker count the same workers run two jobs back to back: the first on cold workers
(each pays once for loading the compiled kernels), the second, of another checkpoint name with
the same weights, on warm ones (what a long-lived worker sees). It prints each job's wall time
(request to variant registered), the ratio to one worker's, the CPU time all worker processes
spent meanwhile (read from /proc: one worker already keeps more than one core busy, its reader and
writer threads beside the codec), and how the shards were shared;
every run's tensors must equal the one-worker run's, byte for byte (exit status 1 otherwise).

A split can only be as even as its tensors: a file holds whole tensors, and one expert tensor of
V3 is 117M weights; the report prints the largest file's share, which bounds the speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from dsq import localservices
from dsq.processes import ROOT, ProcessGroup, celery_worker


def tensors_of(files: "list[Path]") -> dict[str, bytes]:
    import gguf

    out = {}
    for f in files:
        for t in gguf.GGUFReader(f).tensors:
            out[t.name] = bytes(t.data.tobytes())
    return out


def cpu_seconds(sessions: "set[int]") -> float:
    """CPU time (user + system) of every live process in these sessions: a worker and its pool."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) in sessions:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def run_job(name: str, model: Path, recipe: str, procs: ProcessGroup, storage: Path) -> dict:
    """Request one quantization and wait for it; its wall time, shards and files."""
    from registry.models import Checkpoint, JobState, QuantizationJob, Recipe
    from registry.quantizations import request_quantization
    from quant.builtin_recipes import RECIPES

    # stored as is: the registry's config check refuses this spec's routing (8 experts per token from
    # 2 groups of 2), which the quantizer does not care about
    ckpt = Checkpoint.objects.create(name=name, family="DeepSeek-V3", architecture="deepseek2", local_path=str(model),
                                     config=json.loads((model / "config.json").read_text()))
    rcp = Recipe.register(next(r for r in RECIPES if r["name"] == recipe), builtin=True)[0]
    sessions = {p.popen.pid for p in procs.procs}
    cpu = cpu_seconds(sessions)
    t = time.monotonic()
    job = request_quantization(ckpt, rcp, user=None).job
    while True:
        row = QuantizationJob.objects.get(pk=job.pk)
        if row.is_final:
            break
        procs.check_alive()
        time.sleep(0.5)
    wall = time.monotonic() - t
    cpu = cpu_seconds(sessions) - cpu
    if row.state != JobState.SUCCEEDED:
        raise RuntimeError(f"job {row.pk} {row.state}: {row.error}\n{row.log_tail[-2000:]}")
    variant = row.variant
    shards = [{"file": s.file_name, "worker": s.worker, "attempts": s.attempts, "bytes": s.planned_bytes,
               "seconds": (s.finished_at - s.started_at).total_seconds()} for s in row.shards.order_by("index")]
    files = [storage / variant.storage_path / f.name for f in variant.files.order_by("name")]
    return {"wall_s": wall, "cpu_s": cpu, "shards": shards, "files": files}


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4", help="worker counts to run, comma separated")
    ap.add_argument("--full", action="store_true", help="the two-block checkpoint (a dense block too)")
    ap.add_argument("--recipe", default="Q4_K_M")
    ap.add_argument("--shard-mib", type=int, default=24, help="split files above this size (DSQ_SHARD_BYTES)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench-shards")
    args = ap.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]

    from quant.bench_pipeline import checkpoint

    args.workdir.mkdir(parents=True, exist_ok=True)
    model = checkpoint(args.workdir, small=not args.full)
    with localservices.postgres_server() as pg, localservices.redis_server() as redis:
        env = {**os.environ, "DATABASE_URL": pg.url(), "CELERY_BROKER_URL": redis.url,
               "DJANGO_SETTINGS_MODULE": "dsq.settings", "DSQ_SHARD_BYTES": str(args.shard_mib << 20),
               "DSQ_DEVICE": "cpu", "DSQ_HEARTBEAT_SECONDS": "2", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        os.environ.update(env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        reference = None
        rows = []
        for n in counts:
            storage = args.workdir / f"storage-{n}"
            run_env = {**env, "DSQ_STORAGE_ROOT": str(storage)}
            from django.conf import settings

            settings.DSQ_STORAGE_ROOT = str(storage)
            (args.workdir / f"logs-{n}").mkdir(parents=True, exist_ok=True)
            with ProcessGroup(run_env, args.workdir / f"logs-{n}") as procs:
                for i in range(n):
                    procs.start(f"w{i}", celery_worker("gpu", f"w{i}@%h"), env={"DSQ_WORKER_NAME": f"w{n}-{i}"})
                deadline = time.monotonic() + 300
                while not all("ready." in p.text() for p in procs.procs):
                    procs.check_alive()
                    if time.monotonic() > deadline:
                        raise RuntimeError("workers did not start")
                    time.sleep(0.5)
                for phase in ("cold", "warm"):
                    res = run_job(f"bench-{n}w-{phase}", model, args.recipe, procs, storage)
                    got = tensors_of(res["files"])
                    if reference is None:
                        reference = got
                    same = got == reference
                    rows.append({"workers": n, "phase": phase, "wall_s": res["wall_s"], "cpu_s": res["cpu_s"],
                                 "identical": same, "shards": res["shards"]})
                    print(f"{n} worker(s), {phase}: {res['wall_s']:.1f} s, {len(res['shards'])} shards, "
                          f"tensors {'identical' if same else 'DIFFER'}", file=sys.stderr, flush=True)
        report(rows)
        return 0 if all(r["identical"] for r in rows) else 1


def report(rows: list[dict]) -> None:
    base = {r["phase"]: r["wall_s"] for r in rows if r["workers"] == rows[0]["workers"]}
    shards = rows[0]["shards"]
    total = sum(s["bytes"] for s in shards)
    print(f"{len(shards)} shard files, largest {max(s['bytes'] for s in shards) / total:.0%} of the bytes; "
          f"{os.cpu_count()} cores")
    print("| workers | jobs on | wall (s) | vs 1 worker | workers' CPU (s) | cores busy | shards per worker | tensors |")
    print("|---:|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        per = {}
        for s in r["shards"]:
            per[s["worker"]] = per.get(s["worker"], 0) + 1
        print(f"| {r['workers']} | {r['phase']} workers | {r['wall_s']:.1f} | {base[r['phase']] / r['wall_s']:.2f}× | "
              f"{r['cpu_s']:.1f} | {r['cpu_s'] / r['wall_s']:.2f} | {', '.join(str(v) for _, v in sorted(per.items()))} | {'identical' if r['identical'] else 'DIFFER'} |")


if __name__ == "__main__":
    sys.exit(main())
