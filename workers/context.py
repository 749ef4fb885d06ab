"""Running one job on this worker, whatever its kind: claim it, keep its lease alive, call its handler, record the end.

A handler is `handler(job, ctx) -> dict of job fields`; `ctx` (JobContext) is the job's
quant.progress.Reporter: what the handler's long work reports lands on the job row, and a
cancel request or a lost lease comes back as `cancelled()` (or `check()` raising Cancelled).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from quant.progress import Cancelled, Progress
from registry import dispatch, jobs, leases, shards
from registry.models import Job, JobState, ShardJob
from workers import hosts

log = logging.getLogger(__name__)

Handler = Callable[[Job, "JobContext"], "dict | None"]
Requirements = Callable[[Job], dict]


class PermanentError(Exception):
    """Raised inside a handler when the job's inputs are wrong: it fails at once, without retries."""


class JobContext:
    """What a handler sees: progress reporting and cooperative cancellation.

    A background thread extends the lease every DSQ_HEARTBEAT_SECONDS and writes the latest
    progress, so a single slow tensor never lets the lease expire while the worker is alive.
    A database error (PostgreSQL restarting) does not stop it: the beat is tried again on a new
    connection, and a lease that expired meanwhile is extended again unless the reaper took it.
    """

    def __init__(self, job: Job):
        self.job = job
        self._progress: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lost: "BaseException | None" = None
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.pk}", daemon=True)

    def __enter__(self) -> "JobContext":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    # -- quant.progress.Reporter -------------------------------------------------------------------

    def report(self, progress: Progress) -> None:
        self.progress(progress.fraction, step=progress.step, eta_seconds=progress.eta_s, log_line=progress.message)

    def cancelled(self) -> bool:
        """True once the job was cancelled or is no longer ours (the heartbeat found out)."""
        return self._lost is not None

    # -- the job row -------------------------------------------------------------------------------

    def progress(self, fraction: float, step: str = "", eta_seconds: "float | None" = None, log_line: str = "") -> None:
        with self._lock:
            self._progress.update(progress=fraction, step=step or self._progress.get("step", ""),
                                  eta_seconds=eta_seconds)
            if log_line:
                self._progress["log"] = self._progress.get("log", "") + log_line + "\n"
        self.check()

    def check(self) -> None:
        """Raise Cancelled if the job was cancelled or is no longer ours."""
        if self._lost is not None:
            raise Cancelled(str(self._lost))

    def log(self, line: str) -> None:
        log.info("job %s: %s", self.job.pk, line)
        with self._lock:
            self._progress["log"] = self._progress.get("log", "") + line + "\n"

    def flush(self) -> None:
        """Write pending progress now (also extends the lease).

        On a database error the pending progress is put back (newer updates win, log lines keep
        their order) and the error propagates."""
        with self._lock:
            pending, self._progress = self._progress, {}
        try:
            jobs.heartbeat(self.job, progress=pending.get("progress"), step=pending.get("step"),
                           eta_seconds=pending.get("eta_seconds"), log=pending.get("log"))
            if isinstance(self.job, ShardJob):
                shards.roll_up(self.job.parent_id)  # the split job shows its shards' progress as its own
        except jobs.LeaseLost as exc:
            self._lost = exc
        except DatabaseError:
            with self._lock:
                newer = self._progress
                self._progress = {**pending, **newer}
                if "log" in pending or "log" in newer:
                    self._progress["log"] = pending.get("log", "") + newer.get("log", "")
            raise

    def _beat(self) -> None:
        try:
            interval = max(0.2, min(settings.DSQ_HEARTBEAT_SECONDS, 2.0))
            last = 0.0
            while not self._stop.wait(interval):
                # Progress is written at most every `interval`; the lease at least every heartbeat period.
                if self._progress or time.monotonic() - last >= settings.DSQ_HEARTBEAT_SECONDS:
                    if self._beat_once():
                        last = time.monotonic()
                if self._lost is not None:
                    return
        finally:
            connection.close()

    def _beat_once(self) -> bool:
        """One heartbeat; False (try again next interval) when the database could not be reached."""
        try:
            self.flush()
        except DatabaseError as exc:
            log.warning("job %s: heartbeat not written, retrying: %s", self.job.pk, str(exc).strip())
            connection.close()  # this thread's connection may be dead: the next beat opens a new one
            return False
        return True


def no_requirements(job: Job) -> dict:
    return {}


def run_job(kind: str, job_id: int, handler: Handler, requirements: Requirements = no_requirements) -> str:
    """Claim and run a job (`kind` as in registry.jobs.JOB_MODELS); returns its final state or why it did not run
    ('not-claimed', 'unfit', 'lost')."""
    close_old_connections()
    model = jobs.JOB_MODELS[kind]
    reason = unfit_reason(kind, job_id, requirements)
    if reason is not None:
        return reason
    gpus = lease_gpus(kind, job_id)
    if gpus is None:
        return "unfit"
    try:
        return _claim_and_run(kind, job_id, handler)
    finally:
        if gpus:
            leases.release(kind, job_id)


def lease_gpus(kind: str, job_id: int) -> "list[int] | None":
    """Lease this worker's GPUs for a queued job: the GPUs ([] on a CPU worker), or None when another job
    holds one of them (a one-GPU job on a GPU a host worker needs, or the reverse). The row then says
    who holds them and the message goes back for later."""
    gpus = hosts.gpu_indices()
    model = jobs.JOB_MODELS[kind]
    if not gpus or not model.objects.filter(pk=job_id, state=JobState.QUEUED).exists():
        return []  # nothing to lease, or claim() will refuse it anyway (taken, final)
    busy = leases.acquire(hosts.host_name(), hosts.lease_ids(gpus), worker=hosts.worker_name(), job_kind=kind,
                          job_id=job_id, scope=hosts.scope())
    if busy is None:
        return gpus
    model.objects.filter(pk=job_id, state=JobState.QUEUED).update(step=f"waiting for GPUs: {busy}"[:200])
    log.info("%s job %s waits for GPUs: %s", kind, job_id, busy)
    dispatch.enqueue(kind, job_id, countdown=settings.DSQ_UNFIT_RETRY_SECONDS)
    return None


def _claim_and_run(kind: str, job_id: int, handler: Handler) -> str:
    model = jobs.JOB_MODELS[kind]
    job = jobs.claim(model, job_id, hosts.worker_name())
    if job is None:
        log.info("%s job %s not claimable here (taken, final or backing off)", kind, job_id)
        return "not-claimed"
    log.info("%s job %s claimed by %s (attempt %s)", kind, job_id, job.worker, job.attempts)
    try:
        with JobContext(job) as ctx:
            result = handler(job, ctx) or {}
            wait_for_database()
            ctx.flush()
            ctx.check()
        jobs.succeed(job, **result)
        return JobState.SUCCEEDED
    except jobs.Waiting:
        return JobState.WAITING  # split into shard jobs (registry.shards); it runs again when they are done
    except Cancelled:
        wait_for_database()
        jobs.cancelled(job)
        return JobState.CANCELLED
    except jobs.LeaseLost:
        return "lost"
    except Exception as exc:  # the job row records it; the worker goes on
        log.exception("%s job %s failed", kind, job_id)
        wait_for_database()
        state = jobs.fail(job, exc, retry=not isinstance(exc, PermanentError))
        if state == JobState.QUEUED:
            dispatch.enqueue(kind, job_id, countdown=jobs.backoff_seconds(job.attempts))
        return state
    finally:
        close_old_connections()


def unfit_reason(kind: str, job_id: int, requirements: Requirements) -> "str | None":
    """'unfit' when this host cannot hold the queued job: the row says why and the message goes back."""
    model = jobs.JOB_MODELS[kind]
    job = model.objects.filter(pk=job_id, state=JobState.QUEUED).first()
    if job is None:
        return None  # claim() decides
    name = hosts.worker_name()
    have = hosts.advertise(name)
    try:
        needs = requirements(job)
    except Exception as exc:  # the handler will meet (and record) the same problem
        log.warning("%s job %s: cannot estimate its needs: %s", kind, job_id, exc)
        return None
    why = hosts.shortfall(needs, have)
    if why is None:
        return None
    if needs.get("gpus") is not None and needs["gpus"] > have.get("gpu_count", 0):
        # Too big for this host: say what it needs and what the fleet has free right now.
        need = needs.get("need") or f"needs {needs['gpus']} GPUs"
        why = f"{need}, largest free host has {hosts.largest_free_host()}"
        step = f"waiting for a host: {why}"
    else:
        step = f"waiting for a host: {name} {why}"
    model.objects.filter(pk=job_id, state=JobState.QUEUED).update(step=step[:200])
    log.info("%s job %s does not fit here: %s", kind, job_id, why)
    dispatch.enqueue(kind, job_id, countdown=settings.DSQ_UNFIT_RETRY_SECONDS)
    return "unfit"


def wait_for_database(timeout: "float | None" = None) -> None:
    """Reconnect before writing a job's outcome, waiting up to DSQ_DB_WAIT_SECONDS for the database.

    A quantization can outlive its database connection (PostgreSQL restarted meanwhile): the
    health check (CONN_HEALTH_CHECKS) replaces a dead connection instead of failing the job on it,
    and a database that is still starting is waited for rather than losing hours of work.
    """
    timeout = settings.DSQ_DB_WAIT_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return
        except DatabaseError as exc:
            connection.close()
            if time.monotonic() >= deadline:
                raise
            log.warning("database unreachable, retrying: %s", str(exc).strip())
            time.sleep(1.0)
