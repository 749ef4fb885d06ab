"""`dsq quantize` killed with SIGKILL mid-run resumes from what it finished, byte for byte, and
stale partial output is removed (same output name, another plan) or reported (anything else).

Real processes: the command a user runs, killed the way the OOM killer or `kill -9` does."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quant.partial import JOURNAL, PREFIX
from quant.tiny import TinySpec, make_tiny

REPO = Path(__file__).resolve().parents[2]
SPEC = TinySpec(num_hidden_layers=4, n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1,
                hidden_size=256, vocab_size=512, n_merges=50, num_nextn_predict_layers=0)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("model") / "m", SPEC)


def _dsq(*args: str) -> list[str]:
    return [sys.executable, "-m", "dsq.cli", "quantize", *map(str, args)]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_dsq(*args), capture_output=True, text=True, env=_env(), cwd=REPO, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _kill_after(args: list[str], out: Path, tensors: int) -> Path:
    """Start dsq quantize, SIGKILL it once its journal holds `tensors` finished tensors; the partial dir."""
    proc = subprocess.Popen(_dsq(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=REPO)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            journals = list(out.glob(f"{PREFIX}*/{JOURNAL}"))
            if journals and journals[0].read_text().count("\n") >= 1 + tensors:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed mid-way"
    (partial,) = out.glob(PREFIX + "*")
    return partial


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(PREFIX))


def test_a_killed_run_resumes_byte_identically_and_leaves_nothing(model, tmp_path):
    whole = tmp_path / "whole"
    _run(model, "--recipe", "Q4_K_M", "--out", whole, "--name", "m")

    out = tmp_path / "out"
    partial = _kill_after([model, "--recipe", "Q4_K_M", "--out", out, "--name", "m"], out, tensors=3)
    assert not list(out.glob("*.gguf"))  # nothing under the final name
    finished = partial.joinpath(JOURNAL).read_text().count("\n") - 1

    again = _run(model, "--recipe", "Q4_K_M", "--out", out, "--name", "m")
    resumed = int(again.stderr.split("resumed: ")[1].split(" of ")[0])
    total = int(again.stderr.split("resumed: ")[1].split(" of ")[1].split()[0])
    assert 3 <= resumed == finished < total
    assert (out / "m.gguf").read_bytes() == (whole / "m.gguf").read_bytes()
    assert _leftovers(out) == []


def test_a_partial_of_another_plan_is_removed_and_other_stale_output_reported(model, tmp_path):
    out = tmp_path / "out"
    stale_same_name = _kill_after([model, "--recipe", "Q8_0", "--out", out, "--name", "m"], out, tensors=2)
    old_style = out / f"{PREFIX}k3j4h5"  # what an older dsq left (mkdtemp, no journal)
    old_style.mkdir()
    (old_style / "model.gguf").write_bytes(b"\0" * 4096)

    fresh = tmp_path / "fresh"
    _run(model, "--recipe", "Q4_K_M", "--out", fresh, "--name", "m")
    proc = _run(model, "--recipe", "Q4_K_M", "--out", out, "--name", "m")
    assert "resumed" not in proc.stderr  # another recipe's tensors are never kept
    assert f"{stale_same_name.name}" in proc.stderr and "removed" in proc.stderr
    assert f"{old_style.name} (0.0 MiB) of a killed run: left in place" in proc.stderr
    assert not stale_same_name.exists() and old_style.exists()
    assert (out / "m.gguf").read_bytes() == (fresh / "m.gguf").read_bytes()


def test_fresh_starts_from_zero(model, tmp_path):
    out = tmp_path / "out"
    _kill_after([model, "--recipe", "Q4_K_M", "--out", out, "--name", "m"], out, tensors=2)
    proc = _run(model, "--recipe", "Q4_K_M", "--out", out, "--name", "m", "--fresh")
    assert "resumed" not in proc.stderr and _leftovers(out) == []
