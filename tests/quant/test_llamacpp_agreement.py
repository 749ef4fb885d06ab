"""Our plan's types equal the ones llama.cpp's llama_model_quantize chooses, on tiny models.

A tiny F32 GGUF of each served architecture is written from the planner's own
tensor list, quantized by llama.cpp (llama-cpp-python) with every mix, and
the resulting tensor types read back. The shapes exercise the row-length
fallback (deepseek2's attn_k_b rows of 128), stacked experts, tied
embeddings (qwen2), the 80-layer GQA llama bump and the rules llama.cpp keys on
exactly 8 experts.
"""
from __future__ import annotations

import ctypes

import gguf
import numpy as np
import pytest

from quant import architectures
from quant.planner import plan

llama_cpp = pytest.importorskip("llama_cpp")

# llama.h: enum llama_ftype
FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12,
          "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18}

TINY = {
    "deepseek2": {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 256,
        "intermediate_size": 512, "num_hidden_layers": 10, "first_k_dense_replace": 2, "num_attention_heads": 2,
        "num_key_value_heads": 2, "vocab_size": 512, "q_lora_rank": 256, "kv_lora_rank": 256,
        "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "n_routed_experts": 4,
        "n_shared_experts": 1, "moe_intermediate_size": 256, "num_experts_per_tok": 2, "topk_method": "noaux_tc",
        "moe_layer_freq": 1, "tie_word_embeddings": False,
    },
    # llama.cpp's `n_expert == 8` rules (attn_output Q5_K in five mixes) hold for deepseek2 too
    "deepseek2-8-experts": {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 256,
        "intermediate_size": 512, "num_hidden_layers": 4, "first_k_dense_replace": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2, "vocab_size": 512, "q_lora_rank": 256, "kv_lora_rank": 256,
        "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "n_routed_experts": 8,
        "n_shared_experts": 1, "moe_intermediate_size": 256, "num_experts_per_tok": 2, "topk_method": "noaux_tc",
        "moe_layer_freq": 1, "tie_word_embeddings": False,
    },
    "qwen2-tied": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 256, "intermediate_size": 512,
        "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
        "tie_word_embeddings": True,
    },
    "llama-80-layers-gqa": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 256,
        "num_hidden_layers": 80, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "head_dim": 64, "tie_word_embeddings": False,
    },
}


def _write_f32_gguf(config: dict, path) -> None:
    arch = architectures.gguf_arch(config)
    w = gguf.GGUFWriter(path, arch)
    w.add_context_length(4096)
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(1 if arch == "deepseek2" else config["num_key_value_heads"])
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(64)
    w.add_vocab_size(config["vocab_size"])
    if arch == "deepseek2":
        w.add_leading_dense_block_count(config["first_k_dense_replace"])
        w.add_q_lora_rank(config["q_lora_rank"])
        w.add_kv_lora_rank(config["kv_lora_rank"])
        w.add_key_length(config["kv_lora_rank"] + config["qk_rope_head_dim"])
        w.add_value_length(config["kv_lora_rank"])
        w.add_key_length_mla(config["qk_nope_head_dim"] + config["qk_rope_head_dim"])
        w.add_value_length_mla(config["v_head_dim"])
        w.add_expert_feed_forward_length(config["moe_intermediate_size"])
        w.add_expert_count(config["n_routed_experts"])
        w.add_expert_used_count(config["num_experts_per_tok"])
        w.add_expert_shared_count(config["n_shared_experts"])
        w.add_expert_weights_scale(2.5)
        w.add_expert_weights_norm(True)
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    rng = np.random.default_rng(0)
    for name, shape in architectures.tensor_specs(config):
        w.add_tensor(name, rng.standard_normal(shape, dtype=np.float32) * 0.02)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _llama_cpp_types(src, dst, ftype: int) -> dict[str, str]:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 1
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) == 0
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(dst).tensors}


@pytest.mark.parametrize("model", sorted(TINY))
def test_planned_types_equal_llama_cpps(model, tmp_path):
    config = TINY[model]
    src = tmp_path / "f32.gguf"
    _write_f32_gguf(config, src)
    # the 80-layer model is only there for the 70B attn_v bump: the mixes that have one
    recipes = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"] if model.startswith("llama-80") else FTYPES
    for recipe in recipes:
        ftype = FTYPES[recipe]
        got = _llama_cpp_types(src, tmp_path / f"{recipe}.gguf", ftype)
        want = {t.name: t.type for t in plan(config, recipe).tensors}
        diff = {k: (want.get(k), got.get(k)) for k in sorted(set(got) | set(want)) if want.get(k) != got.get(k)}
        assert not diff, f"{model} {recipe}: (ours, llama.cpp) {diff}"
        (tmp_path / f"{recipe}.gguf").unlink()
