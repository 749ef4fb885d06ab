"""`dsq demo`: the whole main job on one machine, on the embedded default (SQLite).

It starts Redis, the registry (gunicorn), a Celery worker (with beat) and a local
Hub-compatible server; copies the trained tiny DeepSeek-V3 MoE (quant/data/tiny-moe, made by
`python -m quant.train_tiny`, so its PPL, KLD and top-1 mean something); and then, through
the REST API only, as two users would: registers the checkpoint, requests Q4_K_M and DQ3_K_M
with the quality benchmark, watches the worker quantize and evaluate them, has it compute an
importance matrix (llama-imatrix, when built) and quantize DQ3_K_M with it too, proposes a release
(rita), approves it (alice, a second user), waits for it to be published to the Hub, moves
the `stable` channel to it, pulls it back by tag, verifies it and runs it with llama.cpp, then
has llama.cpp's own `llama-server -hf REPO:DQ3_K_M` pull it from the Hub stand-in and serve it (when
`make llama-tools` has built llama-server), and prints the drop table. Services stay up for
exploring until Ctrl-C.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dsq import localservices
from dsq.processes import ROOT, ProcessGroup, celery_worker, python

REQUESTER, APPROVER = "rita", "alice"
QUANTS = ("Q4_K_M", "DQ3_K_M")
CHECKPOINT = "tiny-deepseek-v3"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


class Api:
    """A small JSON client for the registry API, as one user."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base.rstrip("/"), token

    def call(self, method: str, path: str, body: "dict | None" = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Token {self.token}", "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path} → {exc.code}: {exc.read().decode()[:500]}") from None

    def get(self, path: str) -> dict:
        return self.call("GET", path)

    def post(self, path: str, body: dict) -> dict:
        return self.call("POST", path, body)


def environment(workdir: Path, redis_url: str, hub_url: str, hub_token: str) -> dict:
    """Everything the web server, the worker and this process share, from the environment."""
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'dsq.sqlite3'}",
        "CELERY_BROKER_URL": redis_url,
        "DSQ_STORAGE_ROOT": str(workdir / "storage"),
        # The demo registers its checkpoint from workdir/models: an import root wherever --workdir is.
        "DSQ_IMPORT_ROOTS": str(workdir / "models"),
        "HF_ENDPOINT": hub_url,
        "HF_TOKEN": hub_token,
        "HF_HUB_DISABLE_XET": "1",
        "DSQ_HUB_NAMESPACE": "dsq-demo",
        "DSQ_WORKER_NAME": "demo-worker",
        "DSQ_DEVICE": os.environ.get("DSQ_DEVICE", "cpu"),
        "DSQ_HEARTBEAT_SECONDS": "2",
        "DSQ_EVAL_N_CTX": "128",
        "DSQ_EVAL_MAX_WINDOWS": "8",
        "DSQ_LLAMA_IMATRIX": os.environ.get("DSQ_LLAMA_IMATRIX") or str(_tool("llama-imatrix") or ""),
        "DSQ_SECRET_KEY": os.environ.get("DSQ_SECRET_KEY") or secrets.token_urlsafe(32),
        "DJANGO_SETTINGS_MODULE": "dsq.settings",
        "PYTHONUNBUFFERED": "1",
    }


def setup_database(env: dict) -> dict[str, str]:
    """Migrate, bootstrap the catalogue, and create the two demo users; returns their API tokens."""
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("bootstrap", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    from registry.bootstrap import APPROVERS_GROUP

    tokens = {}
    for name, approver in ((REQUESTER, False), (APPROVER, True)):
        user, created = User.objects.get_or_create(username=name, defaults={"is_staff": approver})
        if created:
            user.set_password(name)
            user.save()
        if approver:
            user.groups.add(Group.objects.get(name=APPROVERS_GROUP))
        tokens[name] = Token.objects.get_or_create(user=user)[0].key
    return tokens


def wait_for_jobs(api: Api, kind: str, ids: list[int], procs: ProcessGroup, timeout: float = 900) -> list[dict]:
    """Poll job rows until every one is final, printing progress as it changes."""
    deadline, last = time.monotonic() + timeout, {}
    while True:
        procs.check_alive()
        rows = [api.get(f"/api/jobs/{kind}/{i}/") for i in ids]
        for row in rows:
            # One line per state, step kind or quarter of progress: enough to watch, not a flood.
            key = (row["state"], row["step"].split(" ")[0], int(4 * row["progress"]))
            if last.get(row["id"]) != key:
                say(f"{kind} job {row['id']}: {row['state']} {100 * row['progress']:5.1f}% {row['step']}")
                last[row["id"]] = key
        if all(r["state"] in ("succeeded", "failed", "cancelled") for r in rows):
            failed = [r for r in rows if r["state"] != "succeeded"]
            if failed:
                raise RuntimeError(f"{kind} job {failed[0]['id']} {failed[0]['state']}: {failed[0]['error']}")
            return rows
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind} jobs {ids} did not finish within {timeout:.0f}s")
        time.sleep(1)


def wait_until(what: str, predicate, procs: ProcessGroup, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive()
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise RuntimeError(f"timed out waiting for {what}")


def main_job(base: str, tokens: dict, workdir: Path, procs: ProcessGroup, hub_url: str) -> dict:
    """The whole flow through the API; returns what the summary prints."""
    from quant.tiny import TRAINED_DIR

    rita, alice = Api(base, tokens[REQUESTER]), Api(base, tokens[APPROVER])
    t0 = time.monotonic()
    model_dir = workdir / "models" / CHECKPOINT
    say(f"copying the trained tiny DeepSeek-V3 MoE (python -m quant.train_tiny) to {model_dir}")
    shutil.copytree(TRAINED_DIR, model_dir)
    ckpt = rita.post("/api/checkpoints/", {"name": CHECKPOINT, "family": "DeepSeek-V3",
                                           "local_path": str(model_dir), "revision": "demo"})
    say(f"registered checkpoint {ckpt['name']} ({ckpt['architecture']}, {ckpt['parameter_count']:,} weights)")

    jobs = []
    for quant in QUANTS:
        answer = rita.post("/api/quantizations/", {"checkpoint": CHECKPOINT, "recipe": quant,
                                                   "benchmark_suites": ["quality"]})
        jobs.append(answer["job"]["id"])
        say(f"requested {quant}: job {answer['job']['id']}")
    again = rita.post("/api/quantizations/", {"checkpoint": CHECKPOINT, "recipe": QUANTS[0]})
    say(f"asking again for {QUANTS[0]} returns job {again['job']['id']} (idempotent, nothing queued)")
    wait_for_jobs(rita, "quantize", jobs, procs)
    with_imatrix(rita, procs)
    t_quant = time.monotonic() - t0

    variants = {v["recipe"].split(" ")[0]: v for v in rita.get(f"/api/variants/?checkpoint={CHECKPOINT}")["results"]
                if not v.get("imatrix")}
    bench_ids = [j["id"] for j in rita.get("/api/jobs/benchmark/?limit=100")["results"]]
    wait_for_jobs(rita, "benchmark", bench_ids, procs)
    t_bench = time.monotonic() - t0 - t_quant

    dq3 = variants["DQ3_K_M"]
    release = rita.post("/api/releases/", {"variant": dq3["id"], "notes": "dynamic 3-bit for the demo"})
    say(f"{REQUESTER} proposed release {release['label']} of DQ3_K_M")
    try:
        rita.post(f"/api/releases/{release['id']}/approve/", {"reason": "my own"})
    except RuntimeError as exc:
        say(f"{REQUESTER} cannot approve it herself: {str(exc).split('→')[1].strip()[:70]}…")
    evidence = alice.get(f"/api/releases/{release['id']}/evidence/")
    say(f"{APPROVER} reads the evidence: {evidence_line(evidence['drop'])}")
    verdict = evidence["verdict"]
    say(f"release policy ({verdict['policy']}): {'passes' if verdict['passed'] else 'FAILS'} — "
        + "; ".join(c["message"] for c in verdict["checks"]))
    alice.post(f"/api/releases/{release['id']}/approve/", {"reason": "KLD and size look right"})
    say(f"{APPROVER} approved it; publishing to the Hub")
    published = wait_until("the release to be published",
                           lambda: (r := rita.get(f"/api/releases/{release['id']}/"))["state"] == "published" and r,
                           procs)
    say(f"published to {published['hub_repo']} at commit {published['hub_commit'][:12]} (tag {published['hub_tag']})")
    alice.post("/api/tags/", {"checkpoint": CHECKPOINT, "quant": "DQ3_K_M", "name": "stable",
                              "release": release["id"]})
    say(f"{APPROVER} moved the stable channel to {release['label']}")

    from dsq.pull import pull

    ref = f"{CHECKPOINT}:DQ3_K_M@stable"
    pulled = pull(ref, workdir / "pulled", base, tokens[REQUESTER], show_progress=False)
    say(f"pulled {ref}: {', '.join(p.name for p in pulled.files)} (sha256 verified)")
    again = pull(ref, workdir / "pulled", base, tokens[REQUESTER], show_progress=False)
    say(f"pulled again: {len(again.skipped)} file(s) already in place, nothing downloaded")
    text = run_with_llama_cpp(pulled.files[0])
    say(f"llama.cpp loads the pulled file and generates: {text!r}")
    serve_from_the_hub(published["hub_repo"], "DQ3_K_M", hub_url, pulled.files, workdir)
    report = rita.get(f"/api/checkpoints/{CHECKPOINT}/comparison/")
    return {"report": report, "seconds": {"quantize": t_quant, "benchmark": t_bench,
                                          "total": time.monotonic() - t0}}


def _tool(name: str) -> "Path | None":
    from dsq.llama_server import find_tool

    return find_tool(name)


# The demo's imatrix: 16 chunks of 128 tokens of the shipped calibration text (seconds on a CPU).
IMATRIX_SETTINGS = {"chunks": 16, "n_ctx": 128}


def with_imatrix(rita: Api, procs: ProcessGroup) -> None:
    """An importance matrix for the checkpoint (an imatrix job: llama-imatrix on the reference GGUF),
    its per-expert coverage, then DQ3_K_M again with it, benchmarked like the others."""
    if _tool("llama-imatrix") is None:
        say("imatrix: skipped, llama-imatrix is not built (`make llama-tools` builds llama.cpp's tools once)")
        return
    request = {"checkpoint": CHECKPOINT, **IMATRIX_SETTINGS}
    answer = rita.post("/api/imatrices/", request)
    if answer["job"] is not None:
        say(f"requested an importance matrix: imatrix job {answer['job']['id']}")
        wait_for_jobs(rita, "imatrix", [answer["job"]["id"]], procs)
        answer = rita.post("/api/imatrices/", request)  # the same inputs: the imatrix now
    imatrix = answer["imatrix"]
    say(f"imatrix {imatrix['id']} from {imatrix['dataset']['name']}: {imatrix['chunk_count']} chunks, "
        f"{imatrix['experts_never_routed']} routed expert(s) never reached")
    job = rita.post("/api/quantizations/", {"checkpoint": CHECKPOINT, "recipe": "DQ3_K_M", "imatrix": imatrix["id"],
                                            "benchmark_suites": ["quality"]})["job"]
    say(f"requested DQ3_K_M with imatrix {imatrix['id']}: job {job['id']}")
    wait_for_jobs(rita, "quantize", [job["id"]], procs)


def evidence_line(drop: dict) -> str:
    """The variant against its reference, as the review page shows it (registry.figures)."""
    from registry.figures import plus_minus, sig

    t = drop["tier1"]
    if t is None:
        return "no quality results"
    return (f"vs {drop['reference']}: PPL {plus_minus(t['ppl'], t['ppl_uncertainty'])} against "
            f"{plus_minus(t['reference_ppl'], t['reference_ppl_uncertainty'])} (ratio {t['ppl_ratio']:.4f}), "
            f"KLD mean {sig(t['kld_mean'])} / p99 {sig(t['kld_p99'])}, top-1 {t['top1_percent']:.2f} %")


def run_with_llama_cpp(path: Path) -> str:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=128, verbose=False, seed=0)
    out = llm("The quick brown fox", max_tokens=8, temperature=0.0)
    return out["choices"][0]["text"]


def serve_from_the_hub(repo: str, quant: str, hub_url: str, released: list[Path], workdir: Path) -> None:
    """What a user of the Hub runs: `llama-server -hf REPO:QUANT`, pointed at the stand-in; checks it
    loaded the released file (the one just pulled and verified by sha256)."""
    from dsq.llama_server import complete, find_tool, serve_from_hub, tools_dir

    binary = find_tool("llama-server")
    ref = f"{repo}:{quant}"
    if binary is None:
        say(f"llama-server -hf {ref}: skipped, llama-server is not built in {tools_dir()} "
            "(`make llama-tools` builds llama.cpp's tools from the vendored source once; tens of minutes on 2 cores)")
        return
    say(f"llama-server -hf {ref} (MODEL_ENDPOINT={hub_url}): pulling from the Hub stand-in")
    with serve_from_hub(binary, ref, hub_url, workdir / "llama-cache", workdir / "logs" / "llama-server.log") as served:
        loaded = served.model_path
        if loaded.read_bytes() != released[0].read_bytes():
            raise RuntimeError(f"llama-server -hf {ref} loaded {loaded}, which is not the released {released[0].name}")
        text = complete(served.url, "The quick brown fox")
        snapshot = loaded.as_posix().split("/snapshots/", 1)[-1].split("/", 1)[-1]
        say(f"llama-server loaded {snapshot} (the released file, byte for byte) and generates: {text!r}")


def drop_table(report: dict) -> str:
    lines = ["| variant | size (MiB) | bpw | PPL | KLD | top-1 % |", "|---|---|---|---|---|---|"]
    for row in report.get("rows", []):
        size = (row.get("size_bytes") or 0) / 2**20

        def fmt(key, digits):
            value = row.get(key)
            return "—" if value is None else f"{value:.{digits}f}"

        lines.append(f"| {row['variant']} | {size:.1f} | {fmt('bits_per_weight', 2)} | {fmt('ppl', 2)} | "
                     f"{fmt('kld_mean', 4)} | {fmt('top1_percent', 1)} |")
    return "\n".join(lines)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(port: int = 8000, workdir: "Path | None" = None, wait: bool = True) -> int:
    # Ctrl-C, a plain `kill`, a closed terminal and an error stop everything the demo started: the
    # children run in their own sessions (so a terminal's Ctrl-C or hang-up reaches only us) and
    # ProcessGroup stops them on the way out.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    workdir = (workdir or ROOT / "var" / "demo").resolve()
    if workdir.exists():
        shutil.rmtree(workdir)  # each demo starts from nothing, as a new user would
    (workdir / "logs").mkdir(parents=True)
    hub_token = "hf_demo_" + secrets.token_hex(8)
    from dsq.localhub import HubServer  # the offline Hub stand-in the tests use too

    with localservices.redis_server() as redis, HubServer(token=hub_token) as hub:
        env = environment(workdir, redis.url, hub.url, hub_token)
        say(f"Redis on {redis.url}, Hub stand-in on {hub.url}, data in {workdir}")
        tokens = setup_database(env)
        base = f"http://127.0.0.1:{port}"
        with ProcessGroup(env, workdir / "logs") as procs:
            procs.start("web", python("-m", "gunicorn", "dsq.wsgi", "--bind", f"127.0.0.1:{port}",
                                      "--workers", "2", "--timeout", "120"), port=port)
            procs.start("worker", celery_worker("gpu,cpu,publish", "demo-worker@%h",
                                                      beat=workdir / "celerybeat-schedule"))
            say(f"registry on {base}, worker and beat started (logs in {workdir / 'logs'})")
            outcome = main_job(base, tokens, workdir, procs, hub.url)
            print()
            print(drop_table(outcome["report"]))
            print()
            s = outcome["seconds"]
            say(f"done in {s['total']:.0f}s (quantize {s['quantize']:.0f}s, benchmark {s['benchmark']:.0f}s)")
            print(f"""
  dashboard   {base}/
  API docs    {base}/api/docs/
  admin       {base}/admin/   (approver: {APPROVER}/{APPROVER}, requester: {REQUESTER}/{REQUESTER})
  pull        {Path(sys.executable).parent / 'dsq'} pull {CHECKPOINT}:DQ3_K_M@stable --to DIR --registry {base}
  Hub         {hub.url}/api/models/dsq-demo/{CHECKPOINT}-GGUF
  logs        {workdir / 'logs'}
""", flush=True)
            if wait:
                say("services keep running; Ctrl-C stops everything")
                while True:
                    procs.check_alive()
                    time.sleep(1)
    return 0
