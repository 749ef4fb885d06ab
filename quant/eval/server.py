"""Start llama-cpp-python's OpenAI-compatible server for a GGUF, or use an external one.

The benchmark runner talks HTTP only, so the same code drives a local
`python -m llama_cpp.server` (needs the `llama-cpp-python[server]` extras) or a
llama.cpp `llama-server` someone else runs on a GPU box.
"""
from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from quant.progress import Reporter, check_cancelled


@dataclass(frozen=True)
class ServerSettings:
    n_ctx: int = 4096
    threads: Optional[int] = None
    n_gpu_layers: int = 0
    startup_timeout_s: float = 120.0


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server: base_url ends in /v1; model is the name it answers to."""

    base_url: str
    model: str

    @property
    def completions_url(self) -> str:
        return f"{self.base_url}/completions"

    @property
    def chat_completions_url(self) -> str:
        return f"{self.base_url}/chat/completions"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(base_url: str, timeout_s: float, process: Optional[subprocess.Popen] = None,
                     reporter: "Reporter | None" = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        check_cancelled(reporter, "evaluation cancelled during server start")
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the model server exited with code {process.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                json.load(response)
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {base_url} within {timeout_s:.0f} s")
            time.sleep(0.5)


@contextlib.contextmanager
def local_server(model_path: "str | Path", settings: ServerSettings = ServerSettings(),
                 log_path: "Optional[str | Path]" = None,
                 reporter: "Reporter | None" = None) -> Iterator[Endpoint]:
    """Run `python -m llama_cpp.server` on 127.0.0.1 for the duration of the block."""
    port = free_port()
    alias = Path(model_path).stem
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
               "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", str(settings.n_ctx), "--n_gpu_layers", str(settings.n_gpu_layers)]
    if settings.threads:
        command += ["--n_threads", str(settings.threads), "--n_threads_batch", str(settings.threads)]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        endpoint = Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model=alias)
        wait_until_ready(endpoint.base_url, settings.startup_timeout_s, process, reporter)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            log.close()


def external_server(base_url: str, model: str = "default") -> Endpoint:
    """An already running llama-server; base_url like http://gpu-box:8080/v1."""
    return Endpoint(base_url=base_url.rstrip("/"), model=model)
