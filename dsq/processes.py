"""Start and stop the local service processes (web, worker, Hub stand-in) for `dsq demo`."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from dsq.localservices import wait_for_port

ROOT = Path(__file__).resolve().parent.parent


class ProcessGroup:
    """Child processes that all stop together (Ctrl-C, an error, or the end of a `with`)."""

    def __init__(self, env: dict, logdir: Path):
        self.env = env
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], port: "int | None" = None, timeout: float = 60) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "ab")
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((name, proc))
        if port is not None:
            try:
                wait_for_port(port, timeout, proc, name)
            except Exception as exc:
                raise RuntimeError(f"{exc}; see {self.logdir / (name + '.log')}") from None
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; see {self.logdir / (name + '.log')}")

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
            # Whatever is left in the group (a pool or beat child whose parent has gone) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def celery_worker(queues: str, name: str, concurrency: int = 1, beat: "Path | None" = None) -> list[str]:
    """A worker on `queues`; with `beat` (a schedule file path) it also runs the periodic reaper."""
    args = python("-m", "celery", "-A", "workers", "worker", "-Q", queues, "-c", str(concurrency),
                  "--prefetch-multiplier", "1", "-n", name, "--without-gossip", "--without-mingle",
                  "-l", "INFO")
    if beat is not None:
        args += ["-B", "--schedule", str(beat)]
    return args
