"""POST /api/imatrices/ (computing one, idempotent), GET with coverage, datasets, and quantizations by imatrix id."""
from __future__ import annotations

import pytest

from quant.imatrix import Coverage, TensorCoverage
from registry import calibration, imatrices
from registry.models import (AuditLog, CalibrationDataset, Checkpoint, ImatrixArtifact, ImatrixJob, JobState,
                             QuantizationJob, Recipe)
from tests import factories
from tests.security.test_bad_input import assert_json_4xx

pytestmark = pytest.mark.django_db
URL = "/api/imatrices/"

# Two of four experts never routed, as quant.imatrix.Coverage writes it (tests/quant/test_imatrix_coverage.py
# reads a real llama-imatrix file into the same class).
COVERAGE = Coverage(format="gguf", chunk_count=1, chunk_size=16, datasets=("pydoc-topics-calibration",),
                    tensors=(TensorCoverage("blk.1.ffn_up_exps.weight", n_mat=4, tokens=(20, 0, 12, 0), ncall=None),)
                    ).as_dict()


@pytest.fixture
def checkpoint(storage):
    return factories.deepseek_checkpoint()


def made(job: ImatrixJob, coverage: "dict | None" = None) -> ImatrixArtifact:
    """What the worker records when llama-imatrix finished (workers/imatrix.py)."""
    return imatrices.record(job, storage_path=f"imatrices/{job.checkpoint.name}/{job.pk}-abc.gguf", size=100,
                            sha256="ab" * 32, coverage=coverage or COVERAGE, reference=None)


def test_it_queues_a_job_on_the_default_dataset_after_commit(requester, checkpoint, storage,
                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = requester.post(URL, {"checkpoint": "deepseek-r1"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    job = ImatrixJob.objects.get(pk=body["job"]["id"])
    assert body["created"] is True and body["imatrix"] is None and len(callbacks) == 1
    assert (job.state, job.chunks, job.n_ctx, job.requested_by) == (JobState.QUEUED, 0, 512, requester.user)
    dataset = job.dataset
    assert dataset.name == calibration.DEFAULT_NAME and dataset.builtin
    stored = calibration.check_stored(dataset)  # the text is in storage under its hash
    assert stored.is_relative_to(storage) and dataset.size == stored.stat().st_size
    assert AuditLog.objects.filter(action="imatrix.request", object_id=str(job.pk)).exists()


def test_it_returns_the_live_job_then_the_imatrix_for_the_same_inputs(requester, teammate, checkpoint):
    inputs = {"checkpoint": "deepseek-r1", "chunks": 8, "n_ctx": 256}
    first = requester.post(URL, inputs, format="json").json()["job"]["id"]
    again = teammate.post(URL, inputs, format="json")
    assert again.status_code == 200 and again.json()["job"]["id"] == first
    artifact = made(ImatrixJob.objects.get(pk=first))
    ImatrixJob.objects.filter(pk=first).update(state=JobState.SUCCEEDED, artifact=artifact)
    done = teammate.post(URL, inputs, format="json")
    assert done.status_code == 200 and done.json()["job"] is None and done.json()["imatrix"]["id"] == artifact.pk
    other = requester.post(URL, {**inputs, "chunks": 9}, format="json")  # other settings: another imatrix
    assert other.status_code == 201
    assert ImatrixJob.objects.count() == 2


def test_a_new_checkpoint_revision_is_a_new_imatrix(requester, checkpoint):
    first = requester.post(URL, {"checkpoint": "deepseek-r1"}, format="json").json()["job"]["id"]
    made(ImatrixJob.objects.get(pk=first))
    Checkpoint.objects.filter(pk=checkpoint.pk).update(revision="r2")
    assert requester.post(URL, {"checkpoint": "deepseek-r1"}, format="json").status_code == 201


def test_it_shows_coverage_per_tensor_and_per_expert(anonymous, requester, checkpoint):
    job = ImatrixJob.objects.get(pk=requester.post(URL, {"checkpoint": "deepseek-r1"}, format="json").json()["job"]["id"])
    artifact = made(job)
    body = anonymous.get(f"{URL}{artifact.pk}/").json()
    assert body["checkpoint"] == "deepseek-r1" and body["dataset"]["name"] == calibration.DEFAULT_NAME
    assert body["experts_never_routed"] == 2
    assert body["coverage"]["experts"]["blk.1"]["never_routed"] == [1, 3]
    assert body["coverage"]["tensors"]["blk.1.ffn_up_exps.weight"]["tokens"] == [20, 0, 12, 0]
    assert "uniform" in body["no_data_policy"]
    assert anonymous.get(f"/api/jobs/imatrix/{job.pk}/").json()["state"] == "queued"
    page = anonymous.get(f"/jobs/imatrix/{job.pk}/")  # the job page, as for any kind
    assert page.status_code == 200 and b"queued" in page.content


def test_the_requester_can_cancel_a_queued_imatrix_job(requester, teammate, checkpoint):
    job = requester.post(URL, {"checkpoint": "deepseek-r1"}, format="json").json()["job"]["id"]
    assert teammate.post(f"/api/jobs/imatrix/{job}/cancel/").status_code == 403
    response = requester.post(f"/api/jobs/imatrix/{job}/cancel/")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"


@pytest.mark.parametrize("body", [
    {}, {"checkpoint": "nope"}, {"checkpoint": "deepseek-r1", "chunks": -1},
    {"checkpoint": "deepseek-r1", "chunks": "lots"}, {"checkpoint": "deepseek-r1", "n_ctx": 8},
    {"checkpoint": "deepseek-r1", "n_ctx": 10**30}, {"checkpoint": "deepseek-r1", "dataset": "../../etc/passwd"},
    {"checkpoint": "deepseek-r1", "chunks": True}, {"checkpoint": ["deepseek-r1"]},
])
def test_bad_requests_are_json_400s(requester, checkpoint, body):
    assert_json_4xx(requester.post(URL, body, format="json"), 400)
    assert not ImatrixJob.objects.exists()


def test_anonymous_cannot_request_one(anonymous, checkpoint):
    assert_json_4xx(anonymous.post(URL, {"checkpoint": "deepseek-r1"}, format="json"), 401)


# -- datasets -------------------------------------------------------------------------------------


def test_a_dataset_is_registered_from_a_text_file_once(requester, storage, tmp_path, settings):
    settings.DSQ_IMPORT_ROOTS = [tmp_path]
    text = tmp_path / "chat.txt"
    text.write_text("Bonjour. " * 100)
    body = {"name": "chat-fr", "path": str(text), "language": "fr", "domain": "chat", "source": "written here"}
    first = requester.post("/api/calibration-datasets/", body, format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["sha256"] == calibration.check_stored(CalibrationDataset.objects.get(name="chat-fr")).name[:64]
    again = requester.post("/api/calibration-datasets/", {**body, "name": "same-text"}, format="json")
    assert again.status_code == 200 and again.json()["name"] == "chat-fr"
    text.write_text("another text")
    assert_json_4xx(requester.post("/api/calibration-datasets/", body, format="json"), 400)  # name taken


@pytest.mark.parametrize("path", ["/etc/passwd", "relative.txt", "/nonexistent/x.txt", "bad\x00path"])
def test_datasets_outside_the_import_roots_or_missing_are_refused(requester, storage, path):
    assert_json_4xx(requester.post("/api/calibration-datasets/", {"name": "x", "path": path}, format="json"), 400)


def test_binary_or_empty_files_are_not_datasets(requester, storage, tmp_path, settings):
    settings.DSQ_IMPORT_ROOTS = [tmp_path]
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00" * 10)
    (tmp_path / "empty").write_text("  \n")
    for name in ("bin", "empty"):
        response = requester.post("/api/calibration-datasets/", {"name": name, "path": str(tmp_path / name)},
                                  format="json")
        assert_json_4xx(response, 400)


# -- quantizations by imatrix id ------------------------------------------------------------------


@pytest.fixture
def artifact(requester, checkpoint):
    factories.builtin_recipe("DQ3_K_M")
    job = requester.post(URL, {"checkpoint": "deepseek-r1"}, format="json").json()["job"]["id"]
    return made(ImatrixJob.objects.get(pk=job))


def test_a_quantization_takes_an_imatrix_by_id_and_stays_idempotent(requester, teammate, artifact):
    inputs = {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M", "imatrix": artifact.pk}
    response = requester.post("/api/quantizations/", inputs, format="json")
    assert response.status_code == 201, response.json()
    job = QuantizationJob.objects.get(pk=response.json()["job"]["id"])
    assert job.imatrix_artifact == artifact and job.imatrix_sha256 == artifact.sha256
    assert response.json()["job"]["imatrix"] == artifact.pk
    again = teammate.post("/api/quantizations/", {**inputs, "imatrix": str(artifact.pk)}, format="json")
    assert again.status_code == 200 and again.json()["job"]["id"] == job.pk
    plain = requester.post("/api/quantizations/", {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M"}, format="json")
    assert plain.status_code == 201 and plain.json()["job"]["id"] != job.pk  # without an imatrix: another variant


def test_the_variant_names_its_imatrix_and_dataset(anonymous, artifact):
    variant = factories.variant(artifact.checkpoint, Recipe.objects.get(name="DQ3_K_M"),
                                imatrix_sha256=artifact.sha256, imatrix=artifact)
    body = anonymous.get(f"/api/variants/{variant.pk}/").json()
    assert body["imatrix"]["id"] == artifact.pk and body["imatrix"]["dataset"]["name"] == calibration.DEFAULT_NAME
    assert body["imatrix"]["experts_never_routed"] == 2 and body["imatrix"]["no_data_policy"] == "uniform"
    response = anonymous.post("/api/quantizations/", {})  # (anonymous writes stay refused)
    assert response.status_code == 401


def test_refuse_turns_away_an_imatrix_with_never_routed_experts(requester, artifact):
    inputs = {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M", "imatrix": artifact.pk, "no_data_policy": "refuse"}
    response = requester.post("/api/quantizations/", inputs, format="json")
    assert_json_4xx(response, 400)
    assert "never" in response.json()["error"] or "no calibration token" in response.json()["error"]
    assert not QuantizationJob.objects.exists()


@pytest.mark.parametrize("imatrix", [999999, "99999999999999999999999", "0"])
def test_unknown_imatrix_ids_are_400s(requester, artifact, imatrix):
    inputs = {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M", "imatrix": imatrix}
    assert_json_4xx(requester.post("/api/quantizations/", inputs, format="json"), 400)


def test_an_imatrix_of_another_checkpoint_is_refused(requester, artifact):
    factories.deepseek_checkpoint("deepseek-v3", "DeepSeek-V3")
    inputs = {"checkpoint": "deepseek-v3", "recipe": "DQ3_K_M", "imatrix": artifact.pk}
    assert_json_4xx(requester.post("/api/quantizations/", inputs, format="json"), 400)


def test_the_drop_report_and_the_variant_page_name_the_imatrix_and_its_dataset(anonymous, artifact):
    from registry import quality

    variant = factories.variant(artifact.checkpoint, Recipe.objects.get(name="DQ3_K_M"),
                                imatrix_sha256=artifact.sha256, imatrix=artifact)
    assert quality.variant_label(variant) == f"DQ3_K_M+imatrix({calibration.DEFAULT_NAME}) #{variant.pk}"
    page = anonymous.get(f"/checkpoints/deepseek-r1/variants/{variant.pk}/").content.decode()
    assert calibration.DEFAULT_NAME in page and f"/api/imatrices/{artifact.pk}/" in page
    assert "2 experts saw no calibration token" in page
