"""Why a job waits is on the job: in the API and on its page (/jobs/<kind>/<id>/)."""
from __future__ import annotations

import pytest

from registry.models import BenchmarkJob
from tests import factories
from tests.registry.personas import anonymous  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

WHY = "waiting for a host: needs 8×80 GiB, largest free host has 4"


@pytest.fixture
def waiting_job():
    variant = factories.variant(factories.deepseek_checkpoint(), factories.builtin_recipe("Q8_0"))
    return BenchmarkJob.objects.create(variant=variant, suite="deepseek-paper", request_key="k", queue="host", step=WHY)


def test_it_shows_the_queue_and_why_a_host_job_waits(client, waiting_job):
    page = client.get(f"/jobs/benchmark/{waiting_job.pk}/").content.decode()
    assert '<td id="queue">host (needs a whole host\'s GPUs)</td>' in page
    assert f'<th>waiting because</th>\n<td id="step" class="why">{WHY}</td>' in page


def test_the_api_says_the_same(anonymous, waiting_job):  # noqa: F811
    body = anonymous.get(f"/api/jobs/benchmark/{waiting_job.pk}/").json()
    assert body["queue"] == "host" and body["step"] == WHY and body["state"] == "queued"


def test_a_finished_suite_shows_its_scores_and_the_server_it_ran_on(client, waiting_job):
    BenchmarkJob.objects.filter(pk=waiting_job.pk).update(state="succeeded", step="", result={
        "scores": [{"benchmark": "AIME 2024", "mean": 73.33, "std": 4.71, "runs": [70, 80, 70],
                    "settings": {"sampling": {"temperature": 0.6, "top_p": 0.95}, "max_tokens": 32768}}],
        "server": {"engine": "llama-server", "argv": ["<bin>/llama-server", "--tensor-split", "1,1,1,1,1,1,1,1"],
                   "props": {"n_ctx": 32768, "total_slots": 4}}})
    page = client.get(f"/jobs/benchmark/{waiting_job.pk}/").content.decode()
    assert "<td>AIME 2024</td>" in page and ">73.33<" in page and ">4.71<" in page and ">32768<" in page
    assert "--tensor-split 1,1,1,1,1,1,1,1" in page and "context per slot 32768, 4 slots" in page


def test_an_unknown_kind_or_id_is_a_404(client, waiting_job):
    assert client.get("/jobs/nothing/1/").status_code == 404
    assert client.get(f"/jobs/benchmark/{waiting_job.pk + 1000}/").status_code == 404


def test_a_queued_quantization_shows_its_time_plan(client):
    from quant import estimate as est
    from quant.configs import load_config
    from quant.planner import plan

    job = factories.quantization_job(factories.deepseek_checkpoint(), factories.builtin_recipe("DQ3_K_M"))
    page = client.get(f"/jobs/quantize/{job.pk}/").content.decode()
    r1 = load_config("DeepSeek-R1")
    gpu = est.estimate_plan(plan(r1, "DQ3_K_M"), est.source_bytes(r1, "FP8")[0], est.Host(device="cuda"))
    assert "<h2>Time plan</h2>" in page
    # one H200 (eager CUDA codecs): codec bound, about two hours; F32 has no GPU row and is named
    assert "<td>one GPU</td>" in page and f"<strong>{est.duration(gpu.stage('codec').seconds)}</strong>" in page
    assert "at least 2 h 06 min, bounded by codec; no measurement for F32 on cuda" in page
    assert "<td>CPU, 2 threads</td>" in page
    assert "reads 673.2 GB (FP8 with 128x128 float32 scales" in page
    assert "writes 299.2 GB of GGUF and as much of tensor cache: needs 598.6 GB free" in page


def test_a_quantization_without_an_estimate_says_why_and_still_renders(client):
    broken = factories.checkpoint("broken", config={"model_type": "mamba"})
    job = factories.quantization_job(broken)
    response = client.get(f"/jobs/quantize/{job.pk}/")
    assert response.status_code == 200
    assert "No estimate: ValueError: unsupported model: model_type=&#x27;mamba&#x27;" in response.content.decode()
    empty = factories.quantization_job(factories.checkpoint("empty"), job.recipe)
    assert "No estimate: the checkpoint has no config.json stored" in client.get(f"/jobs/quantize/{empty.pk}/").content.decode()


def test_only_a_queued_quantization_is_estimated(client):
    job = factories.quantization_job(factories.deepseek_checkpoint(), factories.builtin_recipe("Q4_K_M"),
                                     state="succeeded")
    assert "Time plan" not in client.get(f"/jobs/quantize/{job.pk}/").content.decode()
