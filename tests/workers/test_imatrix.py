"""A real `celery -A dsq worker` computes an importance matrix of a tiny DeepSeek-V3 with llama-imatrix.

The worker builds the checkpoint's F16 reference, runs llama-imatrix over a registered dataset and
records the artifact with its coverage; the file holds the same sums and counts as llama-imatrix run by
hand on the same reference, text and settings, bit for bit (only imatrix.datasets, the text's path, differs).
A quantization asked with that imatrix's id is made from it; a job cancelled while the tool runs stops it.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from dsq.celery import app
from dsq.processes import ProcessGroup, celery_worker
from quant.eval.text import calibration_text
from quant.imatrix import coverage
from quant.llama_imatrix import ImatrixSettings, run_llama_imatrix
from registry import calibration
from registry import jobs
from registry.imatrices import request_imatrix
from registry.models import ImatrixArtifact, ImatrixJob, JobState, QuantizationJob, Variant
from registry.quantizations import request_quantization
from tests import factories
from tests.faults.processes import database_url, frozen, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def worker_env(redis_server, storage, llama_tools) -> dict:
    return {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": redis_server.url,
            "DSQ_STORAGE_ROOT": str(storage), "DSQ_HEARTBEAT_SECONDS": "1", "DSQ_DEVICE": "cpu",
            "DSQ_LLAMA_IMATRIX": str(llama_tools / "llama-imatrix"), "PYTHONUNBUFFERED": "1"}


def test_a_worker_computes_an_imatrix_equal_to_llama_imatrixs(redis_server, celery_broker, storage, tmp_path,
                                                               llama_tools, django_user_model, tiny_checkpoint):
    env = worker_env(redis_server, storage, llama_tools)
    checkpoint = factories.checkpoint("tiny-v3", local_path=str(tiny_checkpoint))
    factories.builtin_recipe("F16")
    dataset, _ = calibration.register("pydoc-tail-4k", calibration_text()[:4000], source="test")
    user = django_user_model.objects.create_user("rita")
    with ProcessGroup(env, tmp_path) as group:
        proc = group.start("w1", celery_worker("gpu", "w1@%h"), env={"DSQ_WORKER_NAME": "w1"})
        wait_for("worker w1 to be ready", lambda: "ready." in proc.text(), 300, proc)
        outcome = request_imatrix(checkpoint, dataset, user=user, chunks=1, n_ctx=16)  # enqueued on commit
        job = outcome.job

        def finished():
            row = ImatrixJob.objects.get(pk=job.pk)
            return row.is_final and row

        done = wait_for("the imatrix job to finish", finished, 600, proc)
        assert done.state == JobState.SUCCEEDED, done.error + done.log_tail
        # Quantize with it, by id: the variant is made from the stored file and names it.
        quantized = request_quantization(checkpoint, factories.builtin_recipe("Q4_K_M"), user=user,
                                          imatrix_artifact=ImatrixArtifact.objects.get(pk=done.artifact_id))

        def quantize_finished():
            row = QuantizationJob.objects.get(pk=quantized.job.pk)
            return row.is_final and row

        q = wait_for("the quantization to finish", quantize_finished, 600, proc)
        app.control.purge()
    assert q.state == JobState.SUCCEEDED, q.error + q.log_tail
    variant = Variant.objects.get(pk=q.variant_id)
    assert variant.imatrix_id == done.artifact_id and variant.imatrix_sha256 == variant.imatrix.sha256
    from gguf import GGUFReader

    meta = GGUFReader(storage / variant.storage_path / variant.files.get().name).fields
    assert "quantize.imatrix.file" in meta  # what llama-quantize records about its --imatrix
    assert done.state == JobState.SUCCEEDED, done.error + done.log_tail
    artifact = ImatrixArtifact.objects.get(pk=done.artifact_id)
    assert (artifact.dataset, artifact.chunks, artifact.n_ctx, artifact.chunk_count) == (dataset, 1, 16, 1)
    reference = Variant.objects.get(pk=artifact.reference_id)
    assert reference.recipe.name == "F16"
    made = storage / artifact.storage_path
    assert made.is_file() and not (storage / "work" / f"imatrix-{job.pk}").exists()
    assert artifact.coverage["experts"] and artifact.coverage["datasets"] == [dataset.name]
    assert done.progress == 1.0
    # The same tool by hand on the same reference GGUF, text and settings.
    by_hand = tmp_path / "by-hand.gguf"
    run_llama_imatrix(llama_tools / "llama-imatrix", storage / reference.storage_path / reference.files.get().name,
                      calibration.check_stored(dataset), by_hand, ImatrixSettings(n_ctx=16, chunks=1),
                      log_path=tmp_path / "by-hand.log")
    expected = coverage(by_hand).as_dict()
    assert {k: v for k, v in artifact.coverage.items() if k != "datasets"} == {
        k: v for k, v in expected.items() if k != "datasets"}
    ours = {t.name: np.array(t.data) for t in GGUFReader(made).tensors}
    theirs = {t.name: np.array(t.data) for t in GGUFReader(by_hand).tensors}
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)  # bit for bit


def test_a_job_cancelled_while_llama_imatrix_runs_stops_it_and_keeps_nothing(redis_server, celery_broker, storage,
                                                                             tmp_path, llama_tools, django_user_model,
                                                                             tiny_checkpoint):
    checkpoint = factories.checkpoint("tiny-v3", local_path=str(tiny_checkpoint))
    factories.builtin_recipe("F16")
    dataset, _ = calibration.register("pydoc-tail-x40", calibration_text() * 40, source="test")  # a long run
    user = django_user_model.objects.create_user("rita")
    with ProcessGroup(worker_env(redis_server, storage, llama_tools), tmp_path) as group:
        proc = group.start("w1", celery_worker("gpu", "w1@%h"), env={"DSQ_WORKER_NAME": "w1"})
        wait_for("worker w1 to be ready", lambda: "ready." in proc.text(), 300, proc)
        job = request_imatrix(checkpoint, dataset, user=user, n_ctx=64).job
        work = storage / "work" / f"imatrix-{job.pk}"
        wait_for("llama-imatrix to start", lambda: bool(tool_pids(work)), 600, proc)
        with frozen(proc.popen.pid):  # the worker, not the tool (its own session)
            assert jobs.request_cancel(ImatrixJob.objects.get(pk=job.pk))

        def stopped():
            row = ImatrixJob.objects.get(pk=job.pk)
            return row.is_final and row

        done = wait_for("the job to stop", stopped, 600, proc)
        app.control.purge()
    assert done.state == JobState.CANCELLED and done.artifact_id is None
    assert not ImatrixArtifact.objects.exists() and not work.exists()
    assert not tool_pids(work) and not (storage / "imatrices").exists()


def tool_pids(work) -> list[int]:
    """llama-imatrix processes writing into `work` (read from /proc; nothing is signalled here)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"llama-imatrix") and str(work).encode() in b" ".join(argv):
                found.append(int(entry))
    return found
