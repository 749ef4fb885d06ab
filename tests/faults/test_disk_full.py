"""Fault: the disk fills up while a worker writes a quantized model.

A tmpfs is the storage root with room enough in bytes for the host check to accept the job but
only a handful of inodes, so the device runs out of space part-way through the job's writes,
at the same point every run (no race with a filler process). Expected: the job fails with an error that says "No space left on device" and names the
job's directory; nothing partial stays under storage (no temporary or half-written GGUF, no
cached tensor, no work directory) and no Variant is registered.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from registry import dispatch
from registry.models import JobState, QuantizationJob, Variant
from tests.faults.processes import start_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
INODES = 24  # the work dirs plus a few cached tensors; the tiny model has ~70 tensors


@pytest.fixture
def small_disk(storage, tiny_checkpoint):
    """Mount a tmpfs over the storage root: bytes enough for the host check, inodes for ~a third of the tensors."""
    from quant import convert

    plan = convert.plan_conversion(tiny_checkpoint, "Q4_K_M", name="tiny-v3-Q4_K_M")
    size = 2 * plan.total_bytes + (64 << 20) + (8 << 20)  # what workers.quantize.requirements asks, and a bit
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={INODES}", "tmpfs", str(storage)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {result.stderr.strip()}")
    try:
        yield storage
    finally:
        subprocess.run(["umount", "-l", str(storage)], check=True)


def test_a_full_disk_fails_the_job_cleanly(processes, tiny_job, small_disk):
    worker = start_worker(processes, "w1", beat=False)
    job = tiny_job("Q4_K_M", max_attempts=1)
    dispatch.enqueue("quantize", job.pk)
    done = wait_for("the job to end", lambda: (row := QuantizationJob.objects.get(pk=job.pk)).is_final and row,
                    120, worker)
    assert done.state == JobState.FAILED, f"finished as {done.state}: the disk never filled"
    assert "No space left on device" in done.error and str(small_disk / "work" / str(job.pk)) in done.error, done.error
    left = sorted(str(p.relative_to(small_disk)) for p in small_disk.rglob("*") if p.is_file())
    assert left == [], f"partial files left behind: {left}"
    assert not (small_disk / "work" / str(job.pk)).exists() and not Variant.objects.exists()
