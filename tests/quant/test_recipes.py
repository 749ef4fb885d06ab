"""Recipes: llama.cpp's per-tensor choices as data, hashes, fallbacks and user-recipe validation."""
from __future__ import annotations

import hashlib
import json

import pytest

from quant import architectures
from quant.configs import load_config
from quant.recipes import (
    ModelFacts,
    SUPPORTED_TYPES,
    RecipeError,
    builtin_names,
    get_recipe,
    load_recipe,
    use_more_bits,
)

V3 = load_config("DeepSeek-V3")
V3_FACTS = architectures.model_facts(V3)
N = 61
LLAMA_MIXES = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K",
               "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def v3_type(recipe: str, name: str) -> str:
    shapes = dict(architectures.tensor_specs(V3))
    return get_recipe(recipe).tensor_type(name, shapes[name], N, V3_FACTS)


def test_it_ships_every_llama_cpp_mix_and_the_dynamic_ones():
    assert set(LLAMA_MIXES + ["BF16", "F16", "MXFP4_MOE", "DQ3_K_M", "DQ3_K_M-dense"]) == set(builtin_names())
    for name in builtin_names():
        r = get_recipe(name)
        assert r.name == name and r.version >= 1 and len(r.sha256) == 64


def test_use_more_bits_matches_llama_cpp_for_61_layers():
    # n/8 = 7, 7n/8 = 53: layers 0-6, 53-60 and 9, 12, ..., 51
    expected = set(range(7)) | set(range(53, 61)) | set(range(9, 53, 3))
    assert {i for i in range(N) if use_more_bits(i, N)} == expected


@pytest.mark.parametrize("recipe", LLAMA_MIXES)
def test_it_keeps_norms_router_and_bias_f32(recipe):
    for name in ["output_norm.weight", "blk.0.attn_norm.weight", "blk.5.attn_kv_a_norm.weight",
                 "blk.5.attn_q_a_norm.weight", "blk.5.ffn_gate_inp.weight", "blk.5.exp_probs_b.bias"]:
        assert v3_type(recipe, name) == "F32", name


@pytest.mark.parametrize("recipe,expected", [("Q8_0", "Q8_0"), ("Q6_K", "Q6_K"), ("Q4_K_M", "Q6_K"),
                                             ("Q3_K_S", "Q6_K"), ("Q2_K", "Q6_K"), ("Q4_0", "Q6_K")])
def test_output_is_q6_k_except_in_the_q8_0_mix(recipe, expected):
    assert v3_type(recipe, "output.weight") == expected


@pytest.mark.parametrize("recipe,expected", [("Q4_K_M", "Q4_K"), ("Q3_K_M", "Q3_K"), ("Q8_0", "Q8_0"),
                                             ("Q5_K_M", "Q5_K"), ("Q4_0", "Q4_0")])
def test_untied_token_embd_takes_the_default_type(recipe, expected):
    assert v3_type(recipe, "token_embd.weight") == expected


def test_tied_token_embd_follows_the_output_rule():
    r = get_recipe("Q4_K_M")
    assert r.tensor_type("token_embd.weight", (1000, 512), 4, ModelFacts(tied_embeddings=True)) == "Q6_K"
    assert r.tensor_type("token_embd.weight", (1000, 512), 4, ModelFacts(tied_embeddings=False)) == "Q4_K"


@pytest.mark.parametrize("recipe,default", [("Q4_K_M", "Q4_K"), ("Q5_K_M", "Q5_K"), ("Q3_K_M", "Q3_K"),
                                            ("Q2_K", "Q2_K"), ("Q6_K", "Q6_K")])
def test_mla_projections_take_the_default_type(recipe, default):
    for name in ["blk.7.attn_q_a.weight", "blk.7.attn_q_b.weight", "blk.7.attn_kv_a_mqa.weight",
                 "blk.7.attn_v_b.weight", "blk.7.ffn_gate_exps.weight", "blk.7.ffn_up_shexp.weight"]:
        assert v3_type(recipe, name) == default, name


@pytest.mark.parametrize("recipe,expected", [("Q4_K_M", "Q5_0"), ("Q5_K_M", "Q5_1"), ("Q3_K_M", "Q4_0"),
                                             ("Q2_K", "Q4_0"), ("Q6_K", "Q8_0"), ("Q8_0", "Q8_0"),
                                             ("Q4_0", "Q4_0")])
def test_attn_k_b_rows_of_128_fall_back(recipe, expected):
    assert v3_type(recipe, "blk.10.attn_k_b.weight") == expected


def test_a_row_no_32_block_divides_becomes_f16():
    r = get_recipe("Q4_K_M")
    assert r.tensor_type("blk.0.ffn_up.weight", (64, 100), 4) == "F16"
    assert r.tensor_type("blk.0.ffn_up.weight", (64, 96), 4) == "Q5_0"


def test_attn_output_rules():
    assert v3_type("Q3_K_M", "blk.9.attn_output.weight") == "Q4_K"
    assert v3_type("Q3_K_L", "blk.9.attn_output.weight") == "Q5_K"
    assert v3_type("Q2_K", "blk.9.attn_output.weight") == "Q3_K"
    assert v3_type("Q4_K_M", "blk.9.attn_output.weight") == "Q4_K"


@pytest.mark.parametrize("kind", ["ffn_down", "ffn_down_exps", "ffn_down_shexp"])
def test_every_ffn_down_follows_the_ffn_down_rule_by_block_index(kind):
    for i in range(N):
        name = f"blk.{i}.{kind}.weight"
        r = get_recipe("Q4_K_M")
        got = r.tensor_type(name, (7168, 2048), N, V3_FACTS)
        assert got == ("Q6_K" if use_more_bits(i, N) else "Q4_K"), name
        got = get_recipe("Q5_K_M").tensor_type(name, (7168, 2048), N, V3_FACTS)
        assert got == ("Q6_K" if use_more_bits(i, N) else "Q5_K"), name
        got = get_recipe("Q3_K_M").tensor_type(name, (7168, 2048), N, V3_FACTS)
        assert got == ("Q5_K" if i < N // 16 else "Q4_K"), name
        got = get_recipe("Q4_K_S").tensor_type(name, (7168, 2048), N, V3_FACTS)
        assert got == ("Q5_K" if i < N // 8 else "Q4_K"), name


def test_attn_v_rules_on_a_dense_gqa_model():
    facts = ModelFacts(arch="llama", n_head=32, n_head_kv=8)
    v = [get_recipe("Q4_K_M").tensor_type(f"blk.{i}.attn_v.weight", (1024, 4096), 32, facts) for i in range(32)]
    assert v == ["Q6_K" if use_more_bits(i, 32) else "Q4_K" for i in range(32)]
    v = [get_recipe("Q3_K_M").tensor_type(f"blk.{i}.attn_v.weight", (1024, 4096), 32, facts) for i in range(4)]
    assert v == ["Q5_K", "Q5_K", "Q4_K", "Q4_K"]
    assert get_recipe("Q2_K").tensor_type("blk.3.attn_v.weight", (1024, 4096), 32, facts) == "Q4_K"
    mha = ModelFacts(arch="llama", n_head=32, n_head_kv=32)
    assert get_recipe("Q2_K").tensor_type("blk.3.attn_v.weight", (4096, 4096), 32, mha) == "Q3_K"


def test_llama_70b_attn_v_bump():
    facts = ModelFacts(arch="llama", n_head=64, n_head_kv=8)
    r = get_recipe("Q4_K_M")
    assert r.tensor_type("blk.20.attn_v.weight", (1024, 8192), 80, facts) == "Q5_K"  # not use_more_bits
    assert r.tensor_type("blk.0.attn_v.weight", (1024, 8192), 80, facts) == "Q6_K"
    assert get_recipe("Q3_K_S").tensor_type("blk.20.attn_v.weight", (1024, 8192), 80, facts) == "Q5_K"
    qwen = ModelFacts(arch="qwen2", n_head=64, n_head_kv=8)
    assert r.tensor_type("blk.20.attn_v.weight", (1024, 8192), 80, qwen) == "Q4_K"


def test_model_conditions_without_facts_are_an_error_not_a_guess():
    with pytest.raises(RecipeError, match="'gqa_ge_4' needs ModelFacts.n_head"):
        get_recipe("Q2_K").tensor_type("blk.3.attn_v.weight", (1024, 4096), 32)
    # below 80 layers the 70B predicate needs no facts
    assert get_recipe("Q4_K_M").tensor_type("blk.20.attn_v.weight", (1024, 4096), 32) == "Q4_K"


def test_dq3_k_m_routed_expert_down_split():
    types = [v3_type("DQ3_K_M", f"blk.{i}.ffn_down_exps.weight") for i in range(3, N)]
    assert len(types) == 58
    assert [i for i, t in zip(range(3, N), types) if t == "Q6_K"] == [3, 4]
    assert [i for i, t in zip(range(3, N), types) if t == "Q4_K"] == list(range(8, 53, 4))
    assert types.count("Q3_K") == 44
    # everything else is Q3_K_M
    for name in ["blk.0.ffn_down.weight", "blk.10.ffn_down_shexp.weight", "blk.10.attn_output.weight",
                 "blk.10.ffn_up_exps.weight", "output.weight", "token_embd.weight", "blk.10.attn_k_b.weight"]:
        assert v3_type("DQ3_K_M", name) == v3_type("Q3_K_M", name), name


def _dense_sets(n: int) -> tuple[list[int], list[int]]:
    r = get_recipe("DQ3_K_M-dense")
    types = [r.tensor_type(f"blk.{i}.ffn_down.weight", (4096, 14336), n) for i in range(n)]
    return [i for i, t in enumerate(types) if t == "Q6_K"], [i for i, t in enumerate(types) if t == "Q4_K"]


def test_dq3_k_m_dense_scales_the_layer_sets():
    assert _dense_sets(58) == ([0, 1], list(range(5, 50, 4)))
    q6, q4 = _dense_sets(28)
    assert q6 == [0] and q4 == [2, 6, 11, 15, 20, 24]
    q6, q4 = _dense_sets(80)
    assert q6 == [0, 1, 2] and len(q4) == 17 and q4[0] == 7 and q4[-1] == 68


def test_hash_is_stable_and_covers_the_rules_not_the_prose():
    r = get_recipe("Q4_K_M")
    again = load_recipe(json.loads(r.canonical_json()))
    assert again.sha256 == r.sha256
    # pinned: editing the built-in Q4_K_M must come with a version bump and a new pin
    assert r.sha256 == "fc64d22f265f733b4c6eee6c823392c6389c4f3688b0114520ed7787b79502ff"
    assert r.sha256 == hashlib.sha256(r.canonical_json().encode()).hexdigest()
    data = r.to_dict()
    data["description"] = "reworded"
    assert load_recipe(data).sha256 == r.sha256
    data["rules"][-1]["type"] = "Q5_K"
    assert load_recipe(data).sha256 != r.sha256
    data = r.to_dict()
    data["version"] = r.version + 1
    assert load_recipe(data).sha256 != r.sha256


def test_extends_resolves_into_the_hash():
    mine = load_recipe({"name": "mine", "extends": "Q3_K_M",
                        "rules": [{"match": r"ffn_down_exps", "type": "Q4_K"}]})
    assert mine.default_type == "Q3_K" and len(mine.rules) == len(get_recipe("Q3_K_M").rules) + 1
    assert mine.tensor_type("blk.9.ffn_down_exps.weight", (256, 7168, 2048), N, V3_FACTS) == "Q4_K"
    assert json.loads(mine.canonical_json())["rules"][-1] == get_recipe("Q3_K_M").to_dict()["rules"][-1]


def test_user_recipe_from_a_file(tmp_path):
    path = tmp_path / "my.json"
    path.write_text(json.dumps({
        "name": "attn-q8", "version": 3, "default_type": "Q4_K",
        "rules": [{"match": r"attn_", "when": {"layer_ge": "n_layer/2"}, "type": "Q8_0", "note": "deep attention"}],
    }))
    r = load_recipe(path)
    assert (r.name, r.version) == ("attn-q8", 3)
    assert r.tensor_type("blk.40.attn_q_b.weight", (24576, 1536), N) == "Q8_0"
    assert r.tensor_type("blk.20.attn_q_b.weight", (24576, 1536), N) == "Q4_K"


@pytest.mark.parametrize("recipe,message", [
    ({"name": "x", "default_type": "Q4_K", "rules": [{"match": "a", "type": "Q7_K"}]},
     r"rules\[0\]\.type: unknown GGML type 'Q7_K'"),
    ({"name": "x", "default_type": "Q4_K", "rules": [{"match": "(", "type": "Q4_K"}]},
     r"rules\[0\]\.match: invalid regular expression"),
    ({"name": "x", "default_type": "Q4_K", "rules": [{"match": "a", "type": "Q4_K", "when": {"layer_odd": 1}}]},
     r"rules\[0\]\.when: unknown condition 'layer_odd'"),
    ({"name": "x", "default_type": "Q4_K",
      "rules": [{"match": "a", "type": "Q4_K", "when": {"layer_lt": "__import__('os')"}}]},
     r"rules\[0\]\.when\.layer_lt: .* may only use integers, n_layer"),
    ({"name": "x", "default_type": "Q4_K", "rules": [{"match": "a", "type": "Q4_K", "when": {"layer_lt": "n_layer/0"}}]},
     r"divides by zero"),
    ({"name": "x", "default_type": "Q4_K", "rules": [{"match": "a", "type": "Q4_K", "when": {"layers": "odd"}}]},
     r"unknown layer set 'odd'"),
    ({"name": "x", "default_type": "Q4_K", "rules": [{"match": "a", "type": "Q4_K", "when": {"layers": [1, -2]}}]},
     r"list of non-negative block indices"),
    ({"name": "x", "default_type": "Q4_K", "rules": [{"match": "a", "type": "Q4_K", "when": {"model": "big"}}]},
     r"unknown model predicate 'big'"),
    ({"name": "x", "default_type": "Q4_K", "rules": [{"match": "a", "kind": "Q4_K"}]},
     r"rules\[0\]: unknown field"),
    ({"name": "x", "rules": []}, r"missing 'default_type'"),
    ({"name": "x", "extends": "Q9_K", "rules": []}, r"extends: unknown built-in recipe 'Q9_K'"),
    ({"name": "bad name!", "default_type": "Q4_K"}, r"name: expected"),
    ({"name": "x", "default_type": "Q4_K", "fallbacks": {"Q4_0": "Q4_1"}}, r"has no smaller block"),
    ({"name": "x", "default_type": "Q4_K", "rules": {"match": "a"}}, r"rules: expected a list"),
    ({"name": "x", "default_type": "Q4_K", "color": "red"}, r"unknown field\(s\) \['color'\]"),
])
def test_invalid_user_recipes_say_what_is_wrong(recipe, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe)


def test_unreadable_recipe_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RecipeError, match="bad.json: not valid JSON"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.json")


def test_unknown_builtin():
    with pytest.raises(RecipeError, match="unknown recipe 'Q9_K'"):
        get_recipe("Q9_K")
    assert get_recipe("q4_k_m").name == "Q4_K_M"


def test_supported_types_are_the_ones_the_kernels_write():
    import kernels

    assert set(SUPPORTED_TYPES) == set(kernels.TYPES)
