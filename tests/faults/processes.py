"""Real processes for the fault tests: Celery workers (with beat) and a gunicorn registry (dsq.processes).

Every wait is bounded and says what it waited for, with the tail of the process's log.
Database polls survive the faults they watch: a poll that meets a restarting PostgreSQL
drops the dead connection and counts as "not yet".
"""
from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
from django.conf import settings as django_settings
from django.db import DatabaseError, connection

from dsq.processes import Process, ProcessGroup, celery_worker

# Short leases and a fast reaper so a lost lease or a lost message is noticed within seconds.
FAST_JOBS_ENV = {
    "DSQ_HEARTBEAT_SECONDS": "1",
    "DSQ_LEASE_SECONDS": "4",
    "DSQ_REAP_SECONDS": "1",
    "DSQ_REQUEUE_SECONDS": "3",
    "DSQ_DB_WAIT_SECONDS": "60",
    "DSQ_DEVICE": "cpu",
    "PYTHONUNBUFFERED": "1",
}


def database_url() -> str:
    """The pytest-django test database, as the worker and web processes must see it."""
    db = django_settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def poll_db(predicate):
    """Run a database predicate; a dropped connection (PostgreSQL restarting) counts as not yet."""
    try:
        return predicate()
    except DatabaseError:
        connection.close()
        return None


def wait_for(what: str, predicate, timeout: float, proc: "Process | None" = None):
    """Poll until predicate() is truthy; fail with `what` and the process log tail otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = poll_db(predicate)
        if value:
            return value
        if proc is not None and proc.popen.poll() is not None:
            pytest.fail(f"{proc.name} exited ({proc.popen.returncode}) while waiting for {what}:\n{proc.tail()}")
        time.sleep(0.2)
    tail = proc.tail() if proc is not None else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; {proc.name if proc else ''} log tail:\n{tail}")


@contextlib.contextmanager
def frozen(pid: int):
    """Stop a process group (SIGSTOP) for the duration of the block, then let it go on (SIGCONT).

    A fault test freezes the worker while it acts (cancels, restarts a server, inspects its files),
    so what it asserts cannot race a job that happens to be fast on an idle machine."""
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)


def freeze_mid_job(pid: int, done_tensors, total: int, step_s: float = 0.05, timeout: float = 120) -> int:
    """Advance a frozen worker in small slices until 0 < done_tensors() < total; it is left frozen.

    Returns the number of finished tensors at that point."""
    deadline = time.monotonic() + timeout
    os.killpg(pid, signal.SIGSTOP)
    while time.monotonic() < deadline:
        n = done_tensors()
        if 0 < n < total:
            return n
        if n >= total:
            raise AssertionError("the job finished every tensor before it could be stopped mid-way")
        os.killpg(pid, signal.SIGCONT)
        time.sleep(step_s)
        os.killpg(pid, signal.SIGSTOP)
    raise AssertionError(f"no tensor finished within {timeout:.0f}s")


def start_worker(group: ProcessGroup, name: str, *, beat: bool = True, env: "dict | None" = None) -> Process:
    """A `celery -A dsq worker` on the gpu and cpu queues, with the reaper's beat when `beat`, once it is ready.

    Two pool processes, so the reaper (cpu queue) runs while a quantization (gpu queue) does."""
    argv = celery_worker("gpu,cpu", f"{name}@%h", concurrency=2,
                         beat=group.logdir / f"{name}-beat-schedule" if beat else None)
    proc = group.start(name, argv, env={"DSQ_WORKER_NAME": name, **(env or {})})
    wait_for(f"worker {name} to be ready", lambda: "ready." in proc.text(), 300, proc)
    return proc
