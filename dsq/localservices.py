"""Throwaway Redis and PostgreSQL servers on loopback, for tests and `dsq demo`.

Each server gets a free port and its own directory, and stops when its context ends.
A missing binary or a server that does not come up raises ServiceError with what to do.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: "subprocess.Popen | None" = None, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode} before accepting connections")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise ServiceError(f"{what} did not accept connections on 127.0.0.1:{port} within {timeout:.0f}s")


def _binary(name: str, hint: str, extra_dirs: "list[str] | None" = None) -> str:
    found = shutil.which(name)
    for d in extra_dirs or []:
        candidate = os.path.join(d, name)
        if not found and os.access(candidate, os.X_OK):
            found = candidate
    if not found:
        raise ServiceError(f"{name} not found: {hint}")
    return found


@dataclass
class Redis:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self) -> None:
        """Stop and start on the same port (fault tests)."""
        args = self.process.args
        self.process.terminate()
        self.process.wait(10)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 20, self.process, "redis-server")


@contextlib.contextmanager
def redis_server(port: "int | None" = None) -> Iterator[Redis]:
    exe = _binary("redis-server", "install it with `apt-get install -y redis-server` (make deps does)")
    port = port or free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = Redis(port, proc)
    try:
        wait_for_port(port, 20, proc, "redis-server")
        yield server
    finally:
        server.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(10)


@dataclass
class Postgres:
    port: int
    datadir: Path
    pg_ctl: list[str]
    user: str = "postgres"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def ctl(self, *args: str) -> None:
        subprocess.run([*self.pg_ctl, "-D", str(self.datadir), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def restart(self) -> None:
        self.ctl("-m", "fast", "-w", "restart")


def _pg_bindir() -> list[str]:
    return sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)


@contextlib.contextmanager
def postgres_server(port: "int | None" = None) -> Iterator[Postgres]:
    """initdb a fresh cluster in a temporary directory (as the postgres user when run as root)."""
    hint = "install PostgreSQL 15 (apt-get install -y postgresql)"
    initdb = _binary("initdb", hint, _pg_bindir())
    pg_ctl = _binary("pg_ctl", hint, _pg_bindir())
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
    port = port or free_port()
    root = Path(tempfile.mkdtemp(prefix="dsq-pg-"))
    datadir = root / "data"
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    try:
        result = subprocess.run([*as_user, initdb, "-D", str(datadir), "-A", "trust", "-U", "postgres",
                                 "-E", "UTF8", "--no-sync"], capture_output=True, text=True)
        if result.returncode:
            raise ServiceError(f"initdb failed: {result.stderr.strip()[-2000:]}")
        server = Postgres(port, datadir, [*as_user, pg_ctl])
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        try:
            subprocess.run([*as_user, pg_ctl, "-D", str(datadir), "-l", str(root / "log"), "-o", options, "-w",
                            "start"], check=True, capture_output=True, text=True, timeout=60)
        except subprocess.CalledProcessError as exc:
            log = (root / "log").read_text() if (root / "log").exists() else exc.stderr
            raise ServiceError(f"PostgreSQL did not start: {log.strip()[-2000:]}") from None
        try:
            yield server
        finally:
            subprocess.run([*as_user, pg_ctl, "-D", str(datadir), "-m", "immediate", "-w", "stop"],
                           capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def registry_server(env: dict[str, str], workers: int = 2, port: "int | None" = None,
                    log_level: str = "warning") -> Iterator[str]:
    """gunicorn serving the registry (dsq.wsgi) on loopback with `env`; yields its base URL.

    The caller points `env` at a database that is migrated and filled (DATABASE_URL) and at its
    storage; the server stops when the context ends.
    """
    import sys

    port = port or free_port()
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "dsq.wsgi", "--bind", f"127.0.0.1:{port}",
                             "--workers", str(workers), "--timeout", "120", "--log-level", log_level],
                            cwd=root, env=env)
    try:
        wait_for_port(port, 60, proc, "gunicorn")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
