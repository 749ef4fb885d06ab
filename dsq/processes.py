"""Start and stop local service processes (web, worker) for `dsq demo` and the tests that need real ones.

Each process runs in its own session (so a terminal's Ctrl-C reaches only us, and a signal
reaches a Celery worker's pool children too) with a log file of its own; a ProcessGroup stops
them all together (Ctrl-C, an error, or the end of a `with`).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dsq.localservices import wait_for_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return self.text()[-chars:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group and wait for the process to end."""
        os.killpg(self.popen.pid, sig)
        self.popen.wait(30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to its process group, then SIGKILL to whatever of the group is left after `timeout` s.

        The group is swept even when its leader has already ended: a Celery pool or beat child whose
        parent has gone must not outlive it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


class ProcessGroup:
    """Child processes that all stop together."""

    def __init__(self, env: dict, logdir: Path):
        self.env = env
        self.logdir = logdir
        self.procs: list[Process] = []

    def start(self, name: str, args: list[str], *, env: "dict | None" = None, port: "int | None" = None,
              timeout: float = 60) -> Process:
        """Start `args` with the group's environment (updated by `env`); with `port`, wait until it listens."""
        log = self.logdir / f"{name}.log"
        popen = subprocess.Popen(args, cwd=ROOT, env={**self.env, **(env or {})}, stdout=open(log, "ab"),
                                 stderr=subprocess.STDOUT, start_new_session=True)
        proc = Process(name, popen, log)
        self.procs.append(proc)
        if port is not None:
            try:
                wait_for_port(port, timeout, popen, name)
            except Exception as exc:
                raise RuntimeError(f"{exc}; see {log}") from None
        return proc

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with code {proc.popen.returncode}; see {proc.log}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def celery_worker(queues: str, name: str, concurrency: int = 1, beat: "Path | None" = None) -> list[str]:
    """`celery -A dsq worker` on `queues`; with `beat` (a schedule file path) it also runs the periodic reaper."""
    args = python("-m", "celery", "-A", "dsq", "worker", "-Q", queues, "-c", str(concurrency),
                  "--prefetch-multiplier", "1", "-n", name, "--without-gossip", "--without-mingle",
                  "-l", "INFO")
    if beat is not None:
        args += ["-B", "--schedule", str(beat)]
    return args
