"""Host-level scheduling on fake multi-GPU hosts (DSQ_FAKE_GPUS advertises capacities without CUDA).

In-process: a host worker too small for a variant leaves it queued with what it needs and what the fleet
has free; a one-GPU worker does not take work while a host job holds its GPU. With a real
`celery -A dsq worker` process: a host worker waits while one of its GPUs is leased to a one-GPU job,
then runs the suite on llama-server split over all its GPUs, and gives the GPUs back.
"""
from __future__ import annotations

import os
import shutil

import pytest

from dsq.celery import app
from dsq.processes import ProcessGroup, celery_worker
from registry import dispatch, leases
from registry.benchmarks import request_benchmarks
from registry.bootstrap import bootstrap
from registry.models import BenchmarkJob, Checkpoint, GpuLease, JobState, Recipe, Variant
from tests import factories
from tests.faults.processes import database_url, wait_for
from tests.quant.eval.conftest import smollm2  # noqa: F401 (fixture; llama_tools is in tests/conftest.py)
from workers import hosts, tasks

pytestmark = pytest.mark.django_db(transaction=True)

# SmolLM2-135M's config.json (the fields quant.fit reads), so the fit can size the real GGUF.
SMOLLM2_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
                  "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                  "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
                  "rms_norm_eps": 1e-5, "rope_theta": 100000, "tie_word_embeddings": True}


def row(job) -> BenchmarkJob:
    return BenchmarkJob.objects.get(pk=job.pk)


@pytest.fixture
def host_worker_settings(settings, broker, storage, monkeypatch):
    settings.DSQ_WORKER_SCOPE = "host"
    settings.DSQ_HOST_NAME = "fake-host-a"
    monkeypatch.setenv("DSQ_WORKER_NAME", "host-a")
    return settings


def test_a_host_too_small_for_the_variant_leaves_it_queued_with_the_fleets_answer(host_worker_settings, broker):
    host_worker_settings.DSQ_FAKE_GPUS = "2x80GB"
    variant = factories.variant(factories.deepseek_checkpoint(), factories.builtin_recipe("DQ3_K_M"))
    (job,) = request_benchmarks(variant, ["deepseek-paper"])
    assert job.queue == "host" and broker.llen("host") == 1

    assert tasks.benchmark(job.pk) == "unfit"
    needed = row(job)
    assert needed.state == JobState.QUEUED and needed.attempts == 0
    assert needed.step.startswith("waiting for a host: needs ") and needed.step.endswith(
        "×80 GiB, largest free host has 2")
    assert broker.llen("host") == 2  # sent again for a bigger host
    assert not GpuLease.objects.exists()


def test_a_one_gpu_worker_waits_while_a_host_job_holds_its_gpu(settings, broker, storage, monkeypatch):
    settings.DSQ_WORKER_SCOPE, settings.DSQ_DEVICE, settings.DSQ_FAKE_GPUS = "gpu", "cuda:1", "8x80GB"
    settings.DSQ_HOST_NAME = "fake-host-a"
    monkeypatch.setenv("DSQ_WORKER_NAME", "gpu-1")
    assert leases.acquire("fake-host-a", list(range(8)), worker="host-a", job_kind="benchmark", job_id=99,
                          scope="host") is None
    job = factories.quantization_job()

    assert tasks.quantize(job.pk) == "unfit"
    waiting = type(job).objects.get(pk=job.pk)
    assert waiting.state == JobState.QUEUED and waiting.attempts == 0
    assert waiting.step == "waiting for GPUs: fake-host-a GPU 1 leased to whole-host benchmark job 99 on host-a"
    assert GpuLease.objects.filter(job_id=job.pk).count() == 0


@pytest.fixture
def smol_variant(storage, smollm2):  # noqa: F811
    (storage / "variants" / "smol").mkdir(parents=True)
    shutil.copy(smollm2, storage / "variants" / "smol" / smollm2.name)
    bootstrap()
    ckpt = Checkpoint.objects.create(name="smollm2-135m", family="SmolLM2", architecture="llama",
                                     config=SMOLLM2_CONFIG)
    variant = Variant.objects.create(checkpoint=ckpt, recipe=Recipe.objects.get(name="Q4_1"),
                                     status=Variant.Status.READY, storage_path="variants/smol",
                                     total_bytes=smollm2.stat().st_size)
    variant.files.create(name=smollm2.name, size=smollm2.stat().st_size, sha256="0" * 64)
    return variant


@pytest.fixture
def host_worker(settings, broker, redis_server, storage, tmp_path):
    """host_worker(**env): a real `celery -A dsq worker -Q host` owning two fake 2 GiB GPUs of fake-host-b."""
    settings.DSQ_GPU_BYTES = 32 << 20  # one-GPU workers of 32 MiB: SmolLM2 (92 MiB of weights) needs a host;
    # each fake GPU of the host has 2 GiB (quant.fit keeps 1 GiB of each for the CUDA context)
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": redis_server.url,
           "DSQ_STORAGE_ROOT": str(storage), "DSQ_HEARTBEAT_SECONDS": "1", "DSQ_LEASE_SECONDS": "30",
           "DSQ_UNFIT_RETRY_SECONDS": "1", "DSQ_DEVICE": "cpu", "DSQ_WORKER_SCOPE": "host",
           "DSQ_FAKE_GPUS": "2x2GB", "DSQ_HOST_NAME": "fake-host-b", "DSQ_WORKER_NAME": "host-b",
           "PYTHONUNBUFFERED": "1"}
    with ProcessGroup(env, tmp_path) as group:
        def start(**extra):
            worker = group.start("host-b", celery_worker("host", "host-b@%h"), env=extra)
            wait_for("the host worker to be ready", lambda: "ready." in worker.text(), 300, worker)
            return worker

        yield start
        app.control.purge()


@pytest.mark.slow
def test_a_real_host_worker_waits_while_a_gpu_is_leased_and_says_what_a_bigger_job_needs(
        host_worker, smol_variant):
    # GPU 1 of the host runs a one-GPU job (as a one-GPU worker on that machine leases it)
    assert leases.acquire("fake-host-b", [1], worker="gpu-b1", job_kind="quantize", job_id=7, scope="gpu") is None
    (small,) = request_benchmarks(smol_variant, ["smoke"], options={"limit": 2, "n_ctx": 512})
    r1 = Checkpoint.objects.filter(name="deepseek-r1").first() or factories.deepseek_checkpoint()  # bootstrap's
    big = factories.variant(r1, factories.builtin_recipe("DQ3_K_M"))
    (large,) = request_benchmarks(big, ["deepseek-paper"])
    assert small.queue == large.queue == "host"

    worker = host_worker()
    waiting = wait_for("the small job to wait for GPU 1",
                       lambda: row(small).step.startswith("waiting for GPUs") and row(small), 60, worker)
    assert waiting.step == "waiting for GPUs: fake-host-b GPU 1 leased to one-GPU quantize job 7 on gpu-b1"
    too_big = wait_for("the large job to be refused", lambda: row(large).step and row(large), 60, worker)
    assert too_big.step == "waiting for a host: does not fit 64×2 GiB, largest free host has 1"
    assert row(small).state == row(large).state == JobState.QUEUED and row(small).attempts == 0
    assert list(GpuLease.objects.values_list("job_id", flat=True)) == [7]  # nothing taken while waiting


@pytest.mark.slow
def test_a_host_worker_waits_for_its_leased_gpu_then_splits_the_variant_over_all_its_gpus(
        host_worker, smol_variant, llama_tools):  # noqa: F811
    assert leases.acquire("fake-host-b", [1], worker="gpu-b1", job_kind="quantize", job_id=7, scope="gpu") is None
    (job,) = request_benchmarks(smol_variant, ["smoke"], options={"limit": 2, "n_ctx": 512, "threads": 2})
    assert job.queue == "host"

    worker = host_worker(DSQ_LLAMA_SERVER=str(llama_tools / "llama-server"))
    wait_for("the job to wait for GPU 1", lambda: row(job).step.startswith("waiting for GPUs"), 60, worker)
    assert row(job).state == JobState.QUEUED
    leases.release("quantize", 7)  # the one-GPU job ends
    done = wait_for("the benchmark to finish", lambda: row(job).is_final and row(job), 600, worker)
    assert done.state == JobState.SUCCEEDED, done.error + done.log_tail

    argv = done.result["server"]["argv"]
    assert argv[argv.index("--tensor-split") + 1] == "1,1" and argv[argv.index("--split-mode") + 1] == "layer"
    assert argv[argv.index("--n-gpu-layers") + 1] == "999" and argv[argv.index("--flash-attn") + 1] == "on"
    assert "on GPUs [0, 1]" in done.log_tail and done.worker == "host-b"
    assert not GpuLease.objects.exists()  # given back
