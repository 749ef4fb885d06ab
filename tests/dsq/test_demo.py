"""`dsq demo`: works wherever --workdir points, and an error exit leaves no process behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dsq.localservices import free_port
from dsq.processes import ROOT


def processes_marked(marker: str) -> list[str]:
    """Command lines of live processes whose environment carries `marker` (everything the demo started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone, or not ours
            continue
    return found


def run_demo(workdir: Path, timeout: float, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    marker = f"dsq-demo-test-{uuid.uuid4().hex}"
    result = subprocess.run([sys.executable, "-m", "dsq.cli", "demo", "--workdir", str(workdir), "--no-wait",
                             "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "DSQ_DEMO_TEST_MARKER": marker, **env})
    return result, marker


def test_a_demo_that_fails_stops_every_process_it_started(tmp_path):
    """A refused second quantization request (a 429) ends the demo after its worker has started."""
    result, marker = run_demo(tmp_path / "somewhere", 600, DSQ_THROTTLE_QUANTIZE="1/minute")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "registered checkpoint tiny-deepseek-v3" in out  # a --workdir outside var/ is an import root
    assert "429" in out and "Traceback" not in out
    deadline = time.monotonic() + 10  # the demo has waited for its children; allow the kernel to reap them
    while processes_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_marked(marker) == []


@pytest.mark.slow
def test_the_whole_demo_runs_in_a_workdir_of_ones_choosing(tmp_path, llama_tools):
    result, marker = run_demo(tmp_path / "elsewhere", 1800, LLAMA_TOOLS_DIR=str(llama_tools.parents[1]))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "done in" in result.stdout
    # It ends with llama.cpp's own -hf pull from the Hub stand-in, loading the released file.
    assert "llama-server loaded dynamic/DQ3_K_M/tiny-deepseek-v3-DQ3_K_M.gguf (the released file" in result.stdout
    # An imatrix job ran (llama-imatrix) and its DQ3_K_M sits in the drop table beside the plain one.
    assert "routed expert(s) never reached" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| DQ3_K_M")]
    assert len(rows) == 2 and "+imatrix(pydoc-topics-calibration)" in rows[1], rows
    assert (tmp_path / "elsewhere" / "pulled").is_dir() and processes_marked(marker) == []


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_a_demo_stopped_by_a_signal_stops_every_process_it_started(tmp_path, sig):
    """A closed terminal (SIGHUP) once killed the demo alone: its worker, web and Redis lived on."""
    marker = f"dsq-demo-test-{uuid.uuid4().hex}"
    log = open(tmp_path / "demo.log", "w+")
    demo = subprocess.Popen([sys.executable, "-m", "dsq.cli", "demo", "--workdir", str(tmp_path / "demo"),
                             "--port", str(free_port())], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "DSQ_DEMO_TEST_MARKER": marker})
    try:
        deadline = time.monotonic() + 300
        while "worker and beat started" not in (tmp_path / "demo.log").read_text():
            assert demo.poll() is None and time.monotonic() < deadline, (tmp_path / "demo.log").read_text()[-3000:]
            time.sleep(0.2)
        assert len(processes_marked(marker)) >= 4  # the demo, Redis, gunicorn (and its workers), Celery
        demo.send_signal(sig)
        demo.wait(60)
    finally:
        if demo.poll() is None:
            demo.kill()
    deadline = time.monotonic() + 10
    while processes_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_marked(marker) == [], (tmp_path / "demo.log").read_text()[-3000:]
