"""llama.cpp's own `llama-server` as the evaluation engine: the command a variant needs, started, checked, stopped.

The study ran its benchmarks on llama.cpp with every layer on the GPUs of one 8-GPU host. This
module turns what a job asks for (context per slot, parallel slots, GPUs, flash attention) into
llama-server's command line, starts it on loopback, waits for `/health` to answer 200 (503 while the
model loads), reads back what the server says it runs (`/props`: context per slot, slots), and stops it
when the block ends, whatever ended it: the suite finished, a cancel, an error.

No orphan server: it runs in a session of its own (the stop signals its whole process group, SIGKILL
after a grace period) and, on Linux, with a parent-death signal, so a worker killed with -9 takes its
server with it. quant/ sits below dsq/, so this does not use dsq.processes; the shape is the same.

Multi-GPU: `--split-mode layer` with an explicit even `--tensor-split` (1,1,…,1), the split `quant.fit`
assumes when it says a variant fits (llama.cpp's default splits by free memory, which differs from the
fit when the GPUs are not equally free).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from quant.eval.server import Endpoint, free_port
from quant.progress import Reporter, check_cancelled

SPLIT_MODES = ("none", "layer", "row")
FLASH_ATTN = ("on", "off", "auto")
ALL_LAYERS = 999  # llama.cpp clamps -ngl to the model's layer count (+ the output layer)


@dataclass(frozen=True)
class LlamaServerSettings:
    """How llama-server runs one variant; `argv()` is the command line, `as_dict()` what a job records.

    n_ctx is the context of one slot: the server is given n_ctx × parallel (`-c` is shared by the slots).
    tensor_split: one share per GPU (`-ts`), empty for a single device.
    """

    n_ctx: int = 4096
    parallel: int = 1
    n_gpu_layers: int = 0
    split_mode: str = "layer"
    tensor_split: tuple[float, ...] = ()
    flash_attn: str = "auto"
    threads: Optional[int] = None
    jinja: bool = True  # the GGUF's own chat template (what /v1/chat/completions applies)
    startup_timeout_s: float = 1800.0  # a 281 GiB DQ3_K_M takes minutes to read and place
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n_ctx < 1 or self.parallel < 1:
            raise ValueError(f"n_ctx and parallel must be at least 1, got {self.n_ctx} and {self.parallel}")
        if self.split_mode not in SPLIT_MODES:
            raise ValueError(f"split_mode must be one of {', '.join(SPLIT_MODES)}, got {self.split_mode!r}")
        if self.flash_attn not in FLASH_ATTN:
            raise ValueError(f"flash_attn must be one of {', '.join(FLASH_ATTN)}, got {self.flash_attn!r}")
        if any(s < 0 for s in self.tensor_split) or (self.tensor_split and not sum(self.tensor_split)):
            raise ValueError(f"tensor_split needs non-negative shares, not all zero: {self.tensor_split}")
        if self.n_gpu_layers < 0:
            raise ValueError(f"n_gpu_layers must be at least 0, got {self.n_gpu_layers}")

    def argv(self, binary: "str | Path", model: "str | Path", port: int, alias: str,
             host: str = "127.0.0.1") -> list[str]:
        args = [str(binary), "--model", str(model), "--alias", alias, "--host", host, "--port", str(port),
                "--ctx-size", str(self.n_ctx * self.parallel), "--parallel", str(self.parallel),
                "--n-gpu-layers", str(self.n_gpu_layers), "--flash-attn", self.flash_attn,
                # Exactly what was asked: no automatic shrinking of context or layers to free memory
                # (--fit), one KV cache per slot, thoughts left in the text (dsq strips and keeps them).
                "--fit", "off", "--no-kv-unified", "--reasoning-format", "none"]
        if len(self.tensor_split) > 1:
            args += ["--split-mode", self.split_mode,
                     "--tensor-split", ",".join(f"{s:g}" for s in self.tensor_split)]
        if self.threads:
            args += ["--threads", str(self.threads), "--threads-batch", str(self.threads)]
        args += ["--jinja"] if self.jinja else []
        return args + list(self.extra_args)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def settings_for(n_gpus: int, *, n_ctx: int = 4096, parallel: int = 1, **overrides) -> LlamaServerSettings:
    """What a variant needs on a host with `n_gpus` GPUs (0: CPU only).

    On GPUs: every layer offloaded, flash attention on (the KV cache and compute buffers quant.fit
    counts with it), and over several GPUs a layer split with even shares. `overrides` (a job's
    options) win over each of these.
    """
    base: dict = {"n_ctx": n_ctx, "parallel": parallel}
    if n_gpus >= 1:
        base.update(n_gpu_layers=ALL_LAYERS, flash_attn="on")
    if n_gpus > 1:
        base.update(split_mode="layer", tensor_split=tuple([1.0] * n_gpus))
    base.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(base.get("tensor_split"), (list, str)):
        ts = base["tensor_split"]
        base["tensor_split"] = tuple(float(x) for x in (ts.split(",") if isinstance(ts, str) else ts))
    return LlamaServerSettings(**base)


@dataclass
class RunningServer:
    """A started, healthy llama-server: where to reach it and what it said about itself."""

    endpoint: Endpoint
    pid: int
    argv: list[str]
    settings: LlamaServerSettings
    props: dict = field(default_factory=dict)

    def record(self) -> dict:
        """What a job keeps: the command, the settings asked for and what the server reported."""
        return {"engine": "llama-server", "argv": self.argv, "settings": self.settings.as_dict(),
                "props": server_facts(self.props)}


def server_facts(props: dict) -> dict:
    """The parts of /props that show the server runs as asked (context per slot, slots, build)."""
    gen = props.get("default_generation_settings") or {}
    return {"n_ctx": gen.get("n_ctx"), "total_slots": props.get("total_slots"),
            "model_path": props.get("model_path"), "build_info": props.get("build_info"),
            "chat_template": bool(props.get("chat_template"))}


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:  # 503 while loading: still an answer
        try:
            return exc.code, json.load(exc)
        except (ValueError, OSError):
            return exc.code, {}


def wait_healthy(base: str, timeout_s: float, process: subprocess.Popen, log_path: "Path | None",
                 reporter: "Reporter | None" = None) -> None:
    """Until GET /health answers 200; the server exiting, the deadline or a cancel ends the wait."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_cancelled(reporter, "evaluation cancelled while llama-server was starting")
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path and log_path.exists() else ""
            raise RuntimeError(f"llama-server exited with code {process.returncode} while starting:\n{tail}")
        try:
            status, _ = get_json(f"{base}/health", timeout=2)
            if status == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"llama-server at {base} not healthy within {timeout_s:.0f} s")
        time.sleep(0.25)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started us dies (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after `grace_s`; returns once it is reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def llama_server(binary: "str | Path", model: "str | Path", settings: LlamaServerSettings,
                 log_path: "str | Path | None" = None, reporter: "Reporter | None" = None,
                 on_start=None, env: "dict | None" = None) -> Iterator[RunningServer]:
    """Run llama-server for `model` on 127.0.0.1 for the duration of the block; stopped however it ends.

    on_start(pid, argv) is called right after the process starts (the worker logs it on the job);
    env (default: this process's) is where a worker narrows CUDA_VISIBLE_DEVICES to its own GPUs.
    """
    binary = Path(binary)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise FileNotFoundError(f"llama-server not found at {binary} (scripts/build-llama-tools.sh builds it; "
                                "DSQ_LLAMA_SERVER names it)")
    port = free_port()
    alias = Path(model).stem
    argv = settings.argv(binary, model, port, alias)
    log_path = Path(log_path) if log_path else None
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, preexec_fn=_die_with_parent, env=env)
    finally:
        if log_path:
            log.close()  # the child holds its own descriptor
    try:
        if on_start is not None:
            on_start(process.pid, argv)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, settings.startup_timeout_s, process, log_path, reporter)
        _, props = get_json(f"{base}/props")
        yield RunningServer(Endpoint(base_url=f"{base}/v1", model=alias), process.pid, argv, settings, props)
    finally:
        stop(process)
