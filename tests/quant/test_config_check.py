"""quant.config_check: every config dsq ships or builds passes; each kind of bad value is refused by name."""
from __future__ import annotations

import pytest

from quant import config_check, configs
from quant.config_check import ConfigError
from quant.tiny import TinySpec, config_dict
from tests.tiny_models import TEST_SPEC, smollm2_config, smollm2_gguf

V3 = configs.load_config("DeepSeek-V3")
LLAMA = configs.load_config("DeepSeek-R1-Distill-Llama-8B")


@pytest.mark.parametrize("name", configs.names())
def test_every_shipped_config_passes(name):
    assert config_check.check(configs.load_config(name)) in ("deepseek2", "deepseek32", "deepseek4", "llama", "qwen2")


def test_a_v4_compress_ratio_llama_cpp_cannot_load_is_refused():
    flash = configs.load_config("DeepSeek-V4-Flash")
    with pytest.raises(config_check.ConfigError, match="compress_ratios may only hold 0, 4 and 128"):
        config_check.check(dict(flash, compress_ratios=[2] * 44))
    with pytest.raises(config_check.ConfigError, match="an entry for each"):
        config_check.check(dict(flash, compress_ratios=[0] * 10))


@pytest.mark.parametrize("spec", [TinySpec(), TEST_SPEC], ids=["quant.tiny default", "tests.tiny_models"])
@pytest.mark.parametrize("fp8", [False, True])
def test_the_tiny_models_pass(spec, fp8):
    assert config_check.check(config_dict(spec, fp8=fp8)) == "deepseek2"


def test_the_smollm2_config_the_tests_write_passes():
    import gguf

    assert config_check.check(smollm2_config(gguf.GGUFReader(smollm2_gguf()))) == "llama"


@pytest.mark.parametrize("base,change,key", [
    (V3, {"num_hidden_layers": "61"}, "num_hidden_layers"),
    (V3, {"num_hidden_layers": 61.0}, "num_hidden_layers"),
    (V3, {"num_hidden_layers": True}, "num_hidden_layers"),
    (V3, {"num_hidden_layers": 0}, "num_hidden_layers"),
    (V3, {"num_hidden_layers": -3}, "num_hidden_layers"),
    (V3, {"num_hidden_layers": 20000}, "num_hidden_layers"),
    (V3, {"n_routed_experts": 10**12}, "n_routed_experts"),
    (V3, {"n_routed_experts": -1}, "n_routed_experts"),
    (V3, {"hidden_size": [7168]}, "hidden_size"),
    (V3, {"vocab_size": 2**40}, "vocab_size"),
    (V3, {"kv_lora_rank": 0}, "kv_lora_rank"),
    (V3, {"q_lora_rank": "1536"}, "q_lora_rank"),
    (V3, {"qk_rope_head_dim": 63}, "qk_rope_head_dim"),
    (V3, {"num_experts_per_tok": 300}, "num_experts_per_tok"),
    (V3, {"num_experts_per_tok": None}, "num_experts_per_tok"),
    (V3, {"moe_intermediate_size": 0}, "moe_intermediate_size"),
    (V3, {"first_k_dense_replace": 62}, "first_k_dense_replace"),
    (V3, {"n_group": 7}, "n_group"),
    (V3, {"topk_group": 9}, "topk_group"),
    (V3, {"topk_group": 1, "num_experts_per_tok": 40}, "num_experts_per_tok"),
    (V3, {"moe_layer_freq": 0}, "moe_layer_freq"),
    (V3, {"tie_word_embeddings": "no"}, "tie_word_embeddings"),
    (V3, {"rope_scaling": "yarn"}, "rope_scaling"),
    (V3, {"model_type": ["deepseek_v3"]}, "model_type"),
    (V3, {"architectures": "DeepseekV3ForCausalLM"}, "architectures"),
    (V3, {"architectures": [7]}, "architectures"),
    (LLAMA, {"num_key_value_heads": 5}, "num_key_value_heads"),
    (LLAMA, {"num_key_value_heads": 64}, "num_key_value_heads"),
    (LLAMA, {"hidden_size": 4095, "head_dim": None}, "hidden_size"),
    (LLAMA, {"hidden_size": 4096 + 32, "head_dim": None}, "head_dim"),
    (LLAMA, {"head_dim": 127}, "head_dim"),
    (LLAMA, {"intermediate_size": None}, "intermediate_size"),
    (LLAMA, {"head_dim": 0}, "head_dim"),
])
def test_a_bad_value_is_refused_with_its_key_named(base, change, key):
    with pytest.raises(ConfigError, match=key):
        config_check.check(base | change)


@pytest.mark.parametrize("key", ["num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size",
                                 "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"])
def test_a_missing_key_is_named(key):
    config = dict(V3)
    del config[key]
    with pytest.raises(ConfigError, match=f"missing '{key}'"):
        config_check.check(config)


def test_a_dense_deepseek_needs_no_expert_keys_but_a_feed_forward_size():
    dense = {k: v for k, v in V3.items() if k not in ("n_routed_experts", "num_experts_per_tok", "n_group",
                                                        "topk_group", "moe_intermediate_size")}
    assert config_check.check(dense) == "deepseek2"
    with pytest.raises(ConfigError, match="intermediate_size"):
        config_check.check({k: v for k, v in dense.items() if k != "intermediate_size"})


def test_values_at_llama_cpps_limits_pass():
    assert config_check.check(V3 | {"num_hidden_layers": 512, "n_routed_experts": 512, "n_group": 8})
    with pytest.raises(ConfigError, match="num_hidden_layers must be from 1 to 512, got 513"):
        config_check.check(V3 | {"num_hidden_layers": 513})


def test_a_long_bad_value_is_shortened_in_the_message():
    with pytest.raises(ConfigError) as caught:
        config_check.check(V3 | {"hidden_size": "x" * 100_000})
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("config", [None, [], "config", 3])
def test_a_config_that_is_not_an_object_is_refused(config):
    with pytest.raises(ConfigError, match="JSON object"):
        config_check.check(config)
