"""Bounded memory: converting a model larger than the bound stays under 2.5 x largest tensor (f32) + 1 GiB."""
from __future__ import annotations

import pytest

from quant.bench_memory import GiB, measure
from quant.tiny import TinySpec, make_tiny


@pytest.mark.slow
def test_peak_rss_stays_under_the_bound_for_a_model_larger_than_it(tmp_path):
    spec = TinySpec(vocab_size=8192, hidden_size=1024, intermediate_size=4096, moe_intermediate_size=512,
                    num_hidden_layers=12, num_attention_heads=8, q_lora_rank=512, kv_lora_rank=256,
                    n_routed_experts=16, max_shard_bytes=256 << 20)
    src = make_tiny(tmp_path / "model", spec)
    r = measure(src, tmp_path / "out", "F16")
    assert r["model_f32_bytes"] > r["bound"]  # loading it whole would fail the check
    assert r["peak_rss"] <= r["bound"], r


def test_peak_rss_grows_with_the_largest_tensor_not_with_the_model(tmp_path):
    """A small model: memory above the imports stays a few slabs, far below the model's float32 size."""
    spec = TinySpec(vocab_size=4096, hidden_size=512, intermediate_size=1024, moe_intermediate_size=256,
                    num_hidden_layers=6, num_attention_heads=4, n_routed_experts=16, max_shard_bytes=64 << 20)
    src = make_tiny(tmp_path / "model", spec)
    r = measure(src, tmp_path / "out", "F16")
    grown = r["peak_rss"] - r["baseline_rss"]
    assert grown < 2.5 * r["largest_tensor_f32"] + 0.25 * GiB, r
    assert r["model_f32_bytes"] > 2 * grown, r
