"""Worker test fixtures: the Hub look-alike, a released variant with files on disk."""
from __future__ import annotations

import hashlib
import os

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # before huggingface_hub reads its constants

import pytest

from dsq.localhub import HubServer

HUB_TOKEN = "hf_test_SECRET_token_0123456789"


@pytest.fixture
def start_worker(redis_server, celery_broker, storage, tmp_path):
    """start_worker(name, env=None): a real `celery -A dsq worker` on the gpu queue, once it is ready."""
    from dsq.celery import app
    from dsq.processes import ProcessGroup, celery_worker
    from tests.faults.processes import database_url, wait_for

    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": redis_server.url,
           "DSQ_STORAGE_ROOT": str(storage), "DSQ_HEARTBEAT_SECONDS": "1", "DSQ_LEASE_SECONDS": "4",
           "DSQ_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    with ProcessGroup(env, tmp_path) as group:
        def start(name: str, env: "dict | None" = None):
            proc = group.start(name, celery_worker("gpu", f"{name}@%h"), env={"DSQ_WORKER_NAME": name, **(env or {})})
            wait_for(f"worker {name} to be ready", lambda: "ready." in proc.text(), 300, proc)
            return proc

        yield start
        app.control.purge()


@pytest.fixture
def hub(settings, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    with HubServer(token=HUB_TOKEN) as server:
        settings.HF_ENDPOINT = server.url
        settings.HF_TOKEN = HUB_TOKEN
        settings.DSQ_HUB_NAMESPACE = "dsq-test"
        settings.DSQ_PUBLISH_BACKOFF_SECONDS = 0.01
        yield server


@pytest.fixture
def make_release(tmp_path, django_user_model):
    """An approved release of a variant whose GGUF shards exist under tmp_path."""
    from registry.models import ArtifactFile, Release, Variant
    from tests import factories

    user = django_user_model.objects.create_user("approver")
    counter = iter(range(1000))

    def make(quant: str = "DQ3_K_M", version: int = 1, checkpoint=None, shards: int = 2,
             state: str = Release.State.APPROVED) -> Release:
        ckpt = checkpoint or factories.checkpoint("deepseek-r1", hf_repo="deepseek-ai/DeepSeek-R1")
        rcp = factories.recipe(quant, version=next(counter) + 1)
        root = tmp_path / f"{quant}-{rcp.pk}"
        root.mkdir()
        variant = Variant.objects.create(checkpoint=ckpt, recipe=rcp, status=Variant.Status.READY,
                                         storage_path=str(root), bits_per_weight=3.52)
        reference = (Variant.objects.filter(checkpoint=ckpt, recipe__name="F16").first()
                     or factories.variant(ckpt, factories.recipe("F16", version=next(counter) + 1), bits_per_weight=16.0))
        factories.measured(variant, reference, ppl=6.31, reference_ppl=6.02)  # as the benchmark worker writes it
        total = 0
        for i in range(1, shards + 1):
            name = f"{ckpt.name}-{quant}-{i:05d}-of-{shards:05d}.gguf"
            data = b"GGUF" + hashlib.sha256(f"{quant}{version}{i}".encode()).digest() * (200 + i)
            (root / name).write_bytes(data)
            ArtifactFile.objects.create(variant=variant, name=name, size=len(data),
                                        sha256=hashlib.sha256(data).hexdigest())
            total += len(data)
        Variant.objects.filter(pk=variant.pk).update(total_bytes=total)
        return Release.objects.create(variant=variant, version=version, state=state, requested_by=user,
                                      decided_by=user)

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random DeepSeek-V3 checkpoint (2 blocks, 4 experts, no MTP layer), built once."""
    from quant.tiny import TinySpec, make_tiny

    spec = TinySpec(num_hidden_layers=2, n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1,
                    vocab_size=512, n_merges=50, num_nextn_predict_layers=0)
    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", spec)


@pytest.fixture(scope="session")
def slow_checkpoint(tmp_path_factory):
    """A tiny-architecture checkpoint big enough (about 60M weights, 106 tensors) that quantizing it
    takes seconds, so a test has room to act on a job mid-way (the tests freeze the worker while they
    act: its size only has to outlast one poll, and each extra weight costs every such test CPU)."""
    from quant.tiny import TinySpec, make_tiny

    spec = TinySpec(num_hidden_layers=6, n_routed_experts=12, num_experts_per_tok=2, n_group=4, topk_group=2,
                    hidden_size=512, moe_intermediate_size=512, intermediate_size=1024, vocab_size=512,
                    n_merges=50, num_nextn_predict_layers=0)
    return make_tiny(tmp_path_factory.mktemp("slow") / "model", spec)
