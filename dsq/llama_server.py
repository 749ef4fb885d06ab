"""llama.cpp's own `llama-server -hf REPO:QUANT`, run against a Hub endpoint: what a user runs to pull
and serve a published quant. The demo ends with it, and the tests prove with it that every quant of
a repo loads its own file.

The binary is built from the vendored llama.cpp by scripts/build-llama-tools.sh (`make llama-tools`);
`find_tool` only looks for it, it never starts that build (tens of minutes on two cores).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from dsq.localservices import free_port
from quant.eval import llama_server as server


def tools_dir() -> Path:
    """Where scripts/build-llama-tools.sh puts the binaries for the installed llama-cpp-python."""
    root = os.environ.get("LLAMA_TOOLS_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsq" / "llama-tools"
    version = os.environ.get("LLAMA_CPP_VERSION") or importlib.metadata.version("llama-cpp-python")
    return Path(root) / f"build-{version}-noamx" / "bin"


def find_tool(name: str = "llama-server") -> "Path | None":
    path = tools_dir() / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


@dataclass(frozen=True)
class Served:
    url: str
    model_path: Path  # the file llama-server loaded (in LLAMA_CACHE), as its /props reports it
    props: dict


@contextlib.contextmanager
def serve_from_hub(binary: Path, ref: str, endpoint: str, cache: Path, log: Path,
                   timeout: float = 300, extra: "list[str] | None" = None) -> Iterator[Served]:
    """Run `llama-server -hf REF` with MODEL_ENDPOINT=endpoint and LLAMA_CACHE=cache until it serves;
    yield what it loaded; stop it. The token-bearing HF_TOKEN is not passed on. Started, waited for and
    stopped as an evaluation's server is (quant.eval.llama_server)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT", "MODEL_ENDPOINT")}
    env.update(MODEL_ENDPOINT=endpoint, LLAMA_CACHE=str(cache))
    command = [str(binary), "-hf", ref, "--host", "127.0.0.1", "--port", str(port), "-c", "256",
               "-t", "2", "-np", "1", *(extra or [])]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_healthy(url, timeout, proc, log)
        _, props = server.get_json(f"{url}/props")
        yield Served(url, Path(props["model_path"]), props)
    finally:
        server.stop(proc)


def complete(url: str, prompt: str, n_predict: int = 8) -> str:
    """A short greedy completion from a running llama-server."""
    body = json.dumps({"prompt": prompt, "n_predict": n_predict, "temperature": 0}).encode()
    request = urllib.request.Request(f"{url}/completion", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.load(resp)["content"]
