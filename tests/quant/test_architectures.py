"""The newer DeepSeek family's tensor lists (deepseek32, deepseek4, Kimi-K2 as deepseek2) and their plans."""
from __future__ import annotations

import pytest

from quant import architectures
from quant.configs import load_config
from quant.planner import plan
from quant.recipes import builtin_names

V32 = load_config("DeepSeek-V3.2")
FLASH = load_config("DeepSeek-V4-Flash")
KIMI = load_config("Kimi-K2-Instruct")


def _types(config: dict, recipe: str) -> dict[str, str]:
    return {t.name: t.type for t in plan(config, recipe).tensors}


@pytest.mark.parametrize("config", [V32, FLASH], ids=["V3.2", "V4-Flash"])
def test_every_builtin_mix_has_a_size(config):
    sizes = {r: plan(config, r).total_bytes for r in builtin_names()}
    assert all(size > 0 for size in sizes.values())
    assert sizes["BF16"] > sizes["Q8_0"] > sizes["Q4_K_M"] > sizes["DQ3_K_M"] > sizes["Q2_K"]


def test_deepseek32_keeps_the_mtp_block_and_adds_the_indexer():
    specs = dict(architectures.tensor_specs(V32))
    assert architectures.gguf_arch(V32) == "deepseek32" and architectures.n_layer(V32) == 62
    assert specs["blk.0.indexer.attn_q_b.weight"] == (64 * 128, 1536)
    assert specs["blk.0.indexer.attn_k.weight"] == (128, 7168)
    assert specs["blk.0.indexer.proj.weight"] == (64, 7168)
    assert specs["blk.61.nextn.eh_proj.weight"] == (7168, 2 * 7168)
    assert specs["blk.61.ffn_down_exps.weight"] == (256, 7168, 2048)
    assert "blk.62.attn_norm.weight" not in specs


def test_deepseek4_tensor_shapes_follow_the_compress_ratios():
    specs = dict(architectures.tensor_specs(FLASH))
    assert architectures.gguf_arch(FLASH) == "deepseek4" and architectures.n_layer(FLASH) == 43
    assert specs["blk.0.attn_output_a.weight"] == (8 * 1024, 64 * 512 // 8)
    assert specs["blk.0.hc_attn_fn.weight"] == (24, 4 * 4096) and specs["output_hc_fn.weight"] == (4, 4 * 4096)
    assert "blk.0.attn_compressor_kv.weight" not in specs  # ratio 0: sliding window only
    assert specs["blk.2.attn_compressor_kv.weight"] == (1024, 4096)  # ratio 4: overlapping, twice as wide
    assert specs["blk.2.indexer_compressor_ape.weight"] == (4, 256)
    assert specs["blk.3.attn_compressor_ape.weight"] == (128, 512) and "blk.3.indexer.proj.weight" not in specs
    assert specs["blk.2.ffn_gate_tid2eid.weight"] == (129280, 6) and "blk.2.exp_probs_b.bias" not in specs
    assert specs["blk.3.exp_probs_b.bias"] == (256,) and "blk.42.ffn_gate_tid2eid.weight" not in specs
    assert "blk.43.attn_norm.weight" not in specs  # the MTP layer is dropped


@pytest.mark.parametrize("recipe", ["Q8_0", "Q4_K_M", "DQ3_K_M", "Q2_K", "MXFP4_MOE"])
def test_what_llama_cpp_never_quantizes_keeps_its_type(recipe):
    v4 = _types(FLASH, recipe)
    assert v4["blk.0.ffn_gate_inp.weight"] == "BF16" and v4["blk.0.ffn_gate_tid2eid.weight"] == "I32"
    for name in ["blk.0.attn_sinks.weight", "blk.0.hc_attn_base.weight", "blk.0.hc_ffn_scale.weight",
                 "output_hc_scale.weight", "blk.2.indexer_compressor_norm.weight", "blk.5.exp_probs_b.bias",
                 "blk.0.attn_kv_a_norm.weight"]:
        assert v4[name] == "F32", name
    v32 = _types(V32, recipe)
    for name in ["blk.0.indexer.k_norm.weight", "blk.0.indexer.k_norm.bias", "blk.61.nextn.enorm.weight",
                 "blk.5.ffn_gate_inp.weight"]:
        assert v32[name] == "F32", name


def test_the_2d_hyper_connection_and_indexer_weights_are_quantized_as_llama_cpp_does():
    # llama-quant.cpp excludes hc_* and indexer tensors for glm5-next only, not for deepseek32/deepseek4
    assert _types(FLASH, "Q4_K_M")["blk.0.hc_attn_fn.weight"] == "Q4_K"
    assert _types(V32, "Q4_K_M")["blk.0.indexer.proj.weight"] == "Q4_K"


def test_mxfp4_moe_puts_3d_tensors_in_mxfp4_and_the_rest_in_q8_0():
    v4 = _types(FLASH, "MXFP4_MOE")
    assert v4["blk.7.ffn_down_exps.weight"] == "MXFP4" and v4["blk.7.ffn_down_shexp.weight"] == "Q8_0"
    assert v4["output.weight"] == "Q8_0" and v4["token_embd.weight"] == "Q8_0"
    p = plan(FLASH, "MXFP4_MOE")
    exps = next(t for t in p.tensors if t.name == "blk.7.ffn_up_exps.weight")
    assert exps.nbytes == 256 * 2048 * 4096 // 32 * 17  # 32 weights -> one e8m0 byte + 16 bytes of codes
    v32 = _types(V32, "MXFP4_MOE")
    assert v32["blk.0.attn_k_b.weight"] == "MXFP4" and v32["blk.0.attn_q_a.weight"] == "Q8_0"


def test_dq3_k_m_on_v4_flash_splits_the_43_moe_blocks_2_9_32():
    down = [t for t in plan(FLASH, "DQ3_K_M").tensors if t.name.endswith("ffn_down_exps.weight")]
    assert [sum(t.type == q for t in down) for q in ("Q6_K", "Q4_K", "Q3_K")] == [2, 9, 32]


def test_kimi_k2_is_deepseek2_with_384_experts():
    facts = architectures.model_facts(KIMI)
    assert architectures.gguf_arch(KIMI) == "deepseek2" and facts.n_expert == 384 and facts.n_head == 64
    specs = dict(architectures.tensor_specs(KIMI))
    assert specs["blk.1.ffn_gate_exps.weight"] == (384, 2048, 7168) and "blk.0.ffn_gate_exps.weight" not in specs
    assert sum(name.endswith("ffn_down_exps.weight") for name in specs) == 60
    assert specs["token_embd.weight"] == (163840, 7168)
    assert 1.02e12 < plan(KIMI, "BF16").n_params < 1.04e12

