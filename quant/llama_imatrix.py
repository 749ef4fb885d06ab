"""Computing an importance matrix with llama.cpp's `llama-imatrix` (scripts/build-llama-tools.sh builds it).

The file it writes is llama.cpp's GGUF imatrix format (quant.imatrix reads it and its coverage). With
--no-ppl the tool prints one timing line after the first pass ("%.2f seconds per pass - ETA …") and
nothing per chunk, so progress after that line is the elapsed share of the announced passes; it is
1.0 only once the file is written. Cancelling stops the process group (SIGTERM, then SIGKILL).
"""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from quant.eval.llama_server import _die_with_parent, stop
from quant.progress import Cancelled, Reporter, report

STEP = "imatrix"
_CHUNKS = re.compile(r"computing over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)")
_PASS = re.compile(r"([0-9.]+) seconds per pass")


@dataclass(frozen=True)
class ImatrixSettings:
    n_ctx: int = 512  # llama-imatrix -c (its default)
    chunks: int = 0  # --chunks; 0: every whole chunk of the text
    threads: "int | None" = None  # -t; None: llama.cpp's default
    n_gpu_layers: int = 0  # -ngl

    def argv(self, binary: "str | Path", model: "str | Path", text: "str | Path", out: "str | Path") -> list[str]:
        argv = [str(binary), "-m", str(model), "-f", str(text), "-o", str(out), "-c", str(self.n_ctx),
                "--no-ppl", "-ngl", str(self.n_gpu_layers)]
        if self.chunks > 0:
            argv += ["--chunks", str(self.chunks)]
        if self.threads:
            argv += ["-t", str(self.threads)]
        return argv


class ImatrixToolError(RuntimeError):
    """llama-imatrix failed; the message carries the end of its log."""


def run_llama_imatrix(binary: "str | Path", model: "str | Path", text: "str | Path", out: "str | Path",
                      settings: ImatrixSettings, *, log_path: "str | Path", reporter: "Reporter | None" = None,
                      env: "dict | None" = None, poll_s: float = 0.5) -> list[str]:
    """Run llama-imatrix to completion (or until the reporter cancels); returns the argv it ran."""
    binary, out, log_path = Path(binary), Path(out), Path(log_path)
    if not binary.is_file():
        raise FileNotFoundError(f"llama-imatrix not found at {binary} (scripts/build-llama-tools.sh builds it; "
                                "DSQ_LLAMA_IMATRIX names it)")
    argv = settings.argv(binary, model, text, out)
    out.unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, preexec_fn=_die_with_parent, env=env)
    try:
        _follow(process, log_path, reporter, poll_s)
    except BaseException:
        stop(process, grace_s=5.0)
        raise
    if process.returncode != 0 or not out.is_file():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise ImatrixToolError(f"llama-imatrix exited with {process.returncode}: {tail}")
    report(reporter, STEP, 1.0, f"llama-imatrix wrote {out.name}")
    return argv


def _follow(process: subprocess.Popen, log_path: Path, reporter: "Reporter | None", poll_s: float) -> None:
    """Wait for the process, reporting progress from its log and stopping it when cancelled."""
    passes = seconds_per_pass = None
    started = time.monotonic()
    while process.poll() is None:
        if reporter is not None and reporter.cancelled():
            raise Cancelled("imatrix cancelled")
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        if passes is None and (m := _CHUNKS.search(text)):
            passes = max(1, -(-int(m.group(1)) // int(m.group(4))))
            report(reporter, STEP, 0.0, f"llama-imatrix: {m.group(0)}", count=passes)
            started = time.monotonic()
        if passes is not None and seconds_per_pass is None and (m := _PASS.search(text)):
            seconds_per_pass = float(m.group(1))
        if passes is not None and seconds_per_pass:
            total = passes * seconds_per_pass
            elapsed = time.monotonic() - started
            report(reporter, STEP, min(0.99, elapsed / total), eta_s=max(0.0, total - elapsed), count=passes)
        time.sleep(poll_s)
