"""A real `celery -A dsq worker` computes an importance matrix of the trained tiny MoE with llama-imatrix.

The worker builds the checkpoint's F16 reference, runs llama-imatrix over a registered dataset and
records the artifact with its coverage; the file holds the same sums and counts as llama-imatrix run by
hand on the same reference, text and settings, bit for bit (only imatrix.datasets, the text's path, differs).
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
from quant.tiny import TRAINED_DIR
from registry import calibration
from registry.imatrices import request_imatrix
from registry.models import ImatrixArtifact, ImatrixJob, JobState, Variant
from tests import factories
from tests.faults.processes import database_url, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_worker_computes_an_imatrix_equal_to_llama_imatrixs(redis_server, celery_broker, storage, tmp_path,
                                                               llama_tools, django_user_model):
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": redis_server.url,
           "DSQ_STORAGE_ROOT": str(storage), "DSQ_HEARTBEAT_SECONDS": "1", "DSQ_DEVICE": "cpu",
           "DSQ_LLAMA_IMATRIX": str(llama_tools / "llama-imatrix"), "PYTHONUNBUFFERED": "1"}
    checkpoint = factories.checkpoint("tiny-moe", local_path=str(TRAINED_DIR))
    factories.builtin_recipe("F16")
    dataset, _ = calibration.register("pydoc-tail-4k", calibration_text()[:4000], source="test")
    user = django_user_model.objects.create_user("rita")
    with ProcessGroup(env, tmp_path) as group:
        proc = group.start("w1", celery_worker("gpu", "w1@%h"), env={"DSQ_WORKER_NAME": "w1"})
        wait_for("worker w1 to be ready", lambda: "ready." in proc.text(), 90, proc)
        outcome = request_imatrix(checkpoint, dataset, user=user, chunks=1, n_ctx=16)  # enqueued on commit
        job = outcome.job

        def finished():
            row = ImatrixJob.objects.get(pk=job.pk)
            return row.is_final and row

        done = wait_for("the imatrix job to finish", finished, 300, proc)
        app.control.purge()
    assert done.state == JobState.SUCCEEDED, done.error + done.log_tail
    artifact = ImatrixArtifact.objects.get(pk=done.artifact_id)
    assert (artifact.dataset, artifact.chunks, artifact.n_ctx, artifact.chunk_count) == (dataset, 1, 16, 1)
    reference = Variant.objects.get(pk=artifact.reference_id)
    assert reference.recipe.name == "F16"
    made = storage / artifact.storage_path
    assert made.is_file() and not (storage / "work" / f"imatrix-{job.pk}").exists()
    assert artifact.coverage["experts_never_routed"] > 0 and artifact.coverage["datasets"] == [dataset.name]
    assert done.progress == 1.0
    # The same tool by hand on the same reference GGUF, text and settings.
    by_hand = tmp_path / "by-hand.gguf"
    run_llama_imatrix(llama_tools / "llama-imatrix", storage / reference.storage_path / reference.files.get().name,
                      calibration.check_stored(dataset), by_hand, ImatrixSettings(n_ctx=16, chunks=1),
                      log_path=tmp_path / "by-hand.log")
    expected = coverage(by_hand).as_dict()
    assert {k: v for k, v in artifact.coverage.items() if k != "datasets"} == {
        k: v for k, v in expected.items() if k != "datasets"}
    from gguf import GGUFReader

    ours = {t.name: np.array(t.data) for t in GGUFReader(made).tensors}
    theirs = {t.name: np.array(t.data) for t in GGUFReader(by_hand).tensors}
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)  # bit for bit
