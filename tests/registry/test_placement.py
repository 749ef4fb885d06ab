"""Which benchmark jobs need a whole host: quant.fit for the variant on one GPU, then on N (registry.placement)."""
from __future__ import annotations

import pytest

from quant import fit as quant_fit
from registry import placement
from registry.benchmarks import request_benchmarks
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

GPU_80 = 80 << 30


@pytest.fixture
def r1_dq3():
    r1 = factories.deepseek_checkpoint()
    return factories.variant(r1, factories.builtin_recipe("DQ3_K_M"))


def fits(variant, n: int, context: int = 4096) -> bool:
    tensors = quant_fit.tensor_bytes(variant.checkpoint.config, variant.recipe.parsed())
    return quant_fit.fit(variant.checkpoint.config, tensors, quant_fit.Hardware("x", n, GPU_80), context,
                         flash_attn=True).fits


def test_the_671b_dq3_needs_the_first_gpu_count_quant_fit_accepts(r1_dq3):
    need = placement.gpus_needed(r1_dq3, GPU_80, 4096)
    assert need.gpus > 1 and fits(r1_dq3, need.gpus) and not fits(r1_dq3, need.gpus - 1)
    assert need.describe() == f"needs {need.gpus}×80 GiB"
    # a longer context needs more of the same GPUs, never fewer
    assert placement.gpus_needed(r1_dq3, GPU_80, 131072).gpus >= need.gpus
    assert placement.gpus_needed(r1_dq3, 1 << 30, 4096).describe() == "does not fit 64×1 GiB"


def test_a_task_suite_of_a_variant_too_big_for_one_gpu_goes_to_the_host_queue(r1_dq3, broker):
    (job,) = request_benchmarks(r1_dq3, ["deepseek-paper"], options={"n_ctx": 32768})
    assert job.queue == "host" and job.options == {"n_ctx": 32768}
    assert broker.llen("host") == 1 and broker.llen("gpu") == 0


def test_one_gpu_variants_and_the_quality_tier_stay_on_one_gpu_workers(r1_dq3, broker):
    distill = factories.deepseek_checkpoint("r1-qwen-1.5b", "DeepSeek-R1-Distill-Qwen-1.5B")
    small = factories.variant(distill, factories.builtin_recipe("Q4_K_M"))
    (suite_job,) = request_benchmarks(small, ["smoke"])
    (quality_job,) = request_benchmarks(r1_dq3, ["quality"])  # KLD reads logits in-process, one device
    assert suite_job.queue == "gpu" and quality_job.queue == "gpu"
    assert broker.llen("gpu") == 2 and broker.llen("host") == 0


def test_the_context_is_the_suites_budget_per_slot_times_the_slots():
    assert placement.context_of(None, "deepseek-paper") == 36864 and placement.context_of(None, "smoke") == 4096
    assert placement.context_of({"n_ctx": 8192, "parallel": 4}, "deepseek-paper") == 32768


def test_a_variant_without_a_sizable_config_is_taken_to_fit_one_gpu():
    v = factories.variant(factories.checkpoint(config={}))
    assert placement.gpus_needed(v, GPU_80, 4096).gpus == 1 and placement.queue_for(v) == "gpu"
