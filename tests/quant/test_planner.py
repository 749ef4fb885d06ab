"""Planner: GGUF tensor lists from config.json and file sizes against published llama.cpp GGUFs."""
from __future__ import annotations

import contextlib
import io
import json
import math

import gguf
import numpy as np
import pytest

from dsq import cli
from quant import architectures, gguf_size
from quant.configs import load_config, names
from quant.planner import plan, plan_tensor
from quant.recipes import ModelFacts, builtin_names, get_recipe

V3_0324 = load_config("DeepSeek-V3-0324")

# llama.cpp-quantized DeepSeek-V3-0324 GGUFs as published (sum of the split files, GB = 1e9 bytes)
PUBLISHED_V3_0324_GB = {"Q8_0": 713.29, "Q6_K": 550.80, "Q5_K_M": 475.40, "Q4_K_M": 404.43}


@pytest.mark.parametrize("recipe,published_gb", sorted(PUBLISHED_V3_0324_GB.items()))
def test_deepseek_v3_sizes_match_published_files_within_a_tenth_of_a_percent(recipe, published_gb):
    planned = plan(V3_0324, recipe).total_bytes
    assert abs(planned / (published_gb * 1e9) - 1) < 1e-3, planned


def test_plan_tensor_keeps_a_gguf_sources_type_only_where_llama_cpp_never_quantizes():
    recipe, facts = get_recipe("Q4_K_M"), ModelFacts(arch="llama", n_head=4, n_head_kv=4)
    norm = plan_tensor(recipe, "blk.0.attn_norm.weight", (256,), 2, facts, source_type="F16")
    assert (norm.type, norm.nbytes) == ("F16", 512)
    assert plan_tensor(recipe, "blk.0.attn_norm.weight", (256,), 2, facts).type == "F32"  # the converter's
    q = plan_tensor(recipe, "blk.0.attn_q.weight", (512, 256), 2, facts, source_type="F16")
    assert (q.type, q.shape, q.nbytes) == ("Q4_K", (512, 256), 512 * 144)  # 256 weights: one 144-byte block


def test_deepseek_v3_tensor_list_is_llama_cpps():
    specs = dict(architectures.tensor_specs(V3_0324))
    # 3 globals, 3 dense blocks of 13 tensors, 58 MoE blocks of 18; no MTP block 61, no attn_kv_b
    assert len(specs) == 3 + 3 * 13 + 58 * 18
    assert not any(n.startswith("blk.61.") for n in specs)
    assert not any("attn_kv_b" in n for n in specs)
    assert specs["blk.0.attn_k_b.weight"] == (128, 512, 128)
    assert specs["blk.0.attn_v_b.weight"] == (128, 128, 512)
    assert specs["blk.0.attn_q_b.weight"] == (128 * 192, 1536)
    assert specs["blk.0.attn_kv_a_mqa.weight"] == (576, 7168)
    assert specs["blk.2.ffn_down.weight"] == (7168, 18432)
    assert "blk.2.ffn_gate_inp.weight" not in specs and "blk.3.ffn_gate_inp.weight" in specs
    assert specs["blk.3.ffn_down_exps.weight"] == (256, 7168, 2048)
    assert specs["blk.3.ffn_gate_exps.weight"] == (256, 2048, 7168)
    assert specs["blk.60.exp_probs_b.bias"] == (256,)
    assert specs["blk.60.ffn_down_shexp.weight"] == (7168, 2048)
    assert specs["output.weight"] == specs["token_embd.weight"] == (129280, 7168)
    p = plan(V3_0324, "Q4_K_M")
    assert p.n_params == 671_026_419_200


def test_the_quantizer_order_puts_globals_first_then_blocks_numerically():
    order = [n for n, _ in architectures.tensor_specs(V3_0324)]
    assert order[:3] == ["output.weight", "output_norm.weight", "token_embd.weight"]
    blocks = [int(n.split(".")[1]) for n in order[3:]]
    assert blocks == sorted(blocks)


def test_dq3_k_m_split_of_the_routed_expert_down_projections():
    p = plan(load_config("DeepSeek-R1"), "DQ3_K_M")
    down = [t for t in p.tensors if t.name.endswith("ffn_down_exps.weight")]
    weights = {q: sum(t.n_elements for t in down if t.type == q) for q in ("Q6_K", "Q4_K", "Q3_K")}
    assert [sum(t.type == q for t in down) for q in ("Q6_K", "Q4_K", "Q3_K")] == [2, 12, 44]
    total = sum(weights.values())
    assert [round(100 * weights[q] / total, 1) for q in ("Q6_K", "Q4_K", "Q3_K")] == [3.4, 20.7, 75.9]
    # the published DQ3_K_M is 281 GiB / 3.59 bpw; see quant.planner's docstring for where we stand
    assert 270 < p.total_bytes / 2**30 < 290
    assert p.total_bytes < plan(load_config("DeepSeek-R1"), "Q3_K_M").total_bytes


@pytest.mark.parametrize("name", names())
def test_every_shipped_config_plans_with_every_builtin(name):
    config = load_config(name)
    sizes = {r: plan(config, r).total_bytes for r in builtin_names()}
    assert sizes["Q8_0"] > sizes["Q6_K"] > sizes["Q5_K_M"] > sizes["Q4_K_M"] > sizes["Q3_K_M"] > sizes["Q2_K"]


def test_dense_models_tensor_lists():
    qwen = load_config("DeepSeek-R1-Distill-Qwen-1.5B")
    specs = dict(architectures.tensor_specs(qwen))
    assert len(specs) == 3 + 28 * 12
    assert specs["blk.0.attn_k.weight"] == (256, 1536) and specs["blk.0.attn_k.bias"] == (256,)
    llama = load_config("DeepSeek-R1-Distill-Llama-8B")
    specs = dict(architectures.tensor_specs(llama))
    assert specs["rope_freqs.weight"] == (64,)
    assert len(specs) == 4 + 32 * 9
    p = plan(llama, "Q4_K_M")
    types = {t.name: t.type for t in p.tensors}
    assert types["rope_freqs.weight"] == "F32" and types["blk.0.attn_q.weight"] == "Q4_K"
    assert types["blk.0.attn_v.weight"] == "Q6_K" and types["blk.5.attn_v.weight"] == "Q4_K"
    assert p.n_params == 8_030_261_312


def test_plan_json_has_what_the_registry_records():
    p = plan(V3_0324, "Q4_K_M")
    data = json.loads(p.to_json())
    assert {"recipe", "recipe_sha256", "total_bytes", "bits_per_weight", "tensors"} <= set(data)
    assert data["recipe"] == "Q4_K_M" and len(data["recipe_sha256"]) == 64
    first = data["tensors"][0]
    assert set(first) == {"name", "shape", "type", "bytes"}
    assert sum(t["bytes"] for t in data["tensors"]) == p.tensor_bytes
    assert abs(data["bits_per_weight"] - 8 * p.tensor_bytes / p.n_params) < 1e-4


def _run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["plan", *argv])
    return rc, out.getvalue(), err.getvalue()


def test_cli_json_table_and_summary(tmp_path):
    rc, out, _ = _run_cli("--config", "DeepSeek-V3-0324", "--recipe", "Q4_K_M", "--json")
    assert rc == 0 and json.loads(out)["total_bytes"] == plan(V3_0324, "Q4_K_M").total_bytes
    rc, out, _ = _run_cli("--config", "DeepSeek-V3-0324", "--recipe", "DQ3_K_M")
    assert rc == 0 and "blk.3.ffn_down_exps.weight" in out and "GiB" in out and "bpw" in out
    path = tmp_path / "config.json"
    path.write_text(json.dumps(V3_0324))
    rc, out, _ = _run_cli("--config", str(path), "--all")
    assert rc == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == builtin_names()


def test_cli_reports_invalid_user_recipes(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "default_type": "Q4_K", "rules": [{"match": "a", "type": "Q9"}]}))
    rc, out, err = _run_cli("--config", "DeepSeek-V3", "--recipe-file", str(bad))
    assert rc == 2 and "rules[0].type: unknown GGML type 'Q9'" in err and out == ""


def test_unsupported_architecture_is_named():
    with pytest.raises(ValueError, match="unsupported model: model_type='mamba'"):
        plan({"model_type": "mamba", "architectures": ["MambaForCausalLM"]}, "Q4_K_M")


TINY_QWEN = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 256, "intermediate_size": 512,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
    "tie_word_embeddings": False,
}


def _tokenizer_files(tmp_path):
    vocab = {f"tok{i}": i for i in range(290)}
    added = [{"id": 290 + k, "content": f"<|special{k}|>"} for k in range(3)]
    merges = [["t", f"ok{i}"] for i in range(200)] + [f"a{i} b" for i in range(50)]
    tok = tmp_path / "tokenizer.json"
    tok.write_text(json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": merges}, "added_tokens": added}))
    cfg = tmp_path / "tokenizer_config.json"
    cfg.write_text(json.dumps({"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}))
    return tok, cfg, vocab, added, merges


def test_total_bytes_equal_a_gguf_written_by_gguf_py(tmp_path):
    """Header, key/values, tensor infos and every alignment pad, byte for byte."""
    tok, cfg, vocab, added, merges = _tokenizer_files(tmp_path)
    p = plan(TINY_QWEN, "Q4_K_M", tokenizer_json=tok, tokenizer_config=cfg)
    assert {t.type for t in p.tensors} >= {"Q4_K", "Q6_K", "F32"}

    out = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(out, "qwen2")
    for key, value in gguf_size.hparam_kvs("qwen2", TINY_QWEN).items():
        if key == "general.architecture":
            continue
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, bool):
            w.add_bool(key, value)
        else:
            w.add_uint32(key, value)
    ids = {i: t for t, i in vocab.items()} | {a["id"]: a["content"] for a in added}
    w.add_token_list([ids.get(i, f"[PAD{i}]") for i in range(300)])
    w.add_token_types([1] * 300)
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_chat_template(json.loads(cfg.read_text())["chat_template"])
    for t in p.tensors:
        qtype = gguf.GGMLQuantizationType[t.type]
        w.add_tensor(t.name, np.zeros(t.nbytes, dtype=np.uint8), raw_shape=_byte_shape(t.shape, qtype),
                     raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert out.stat().st_size == p.total_bytes
    reader = gguf.GGUFReader(out)
    assert [(t.name, t.tensor_type.name) for t in reader.tensors] == [(t.name, t.type) for t in p.tensors]


def _byte_shape(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> tuple[int, ...]:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return (*shape[:-1], shape[-1] // block * size)


def test_metadata_estimate_without_tokenizer_is_close_to_the_measured_one(tmp_path):
    # llama.cpp's vocab-only GGUFs set the per-family averages; a family's estimate of its own
    # vocabulary reproduces the measured tokenizer bytes
    assert gguf_size.tokenizer_bytes(151936, "qwen2") == pytest.approx(2588241 + 607793 + 2731593, rel=1e-6)
    meta = plan(load_config("DeepSeek-R1-Distill-Qwen-1.5B"), "Q4_K_M").metadata_bytes
    assert 5.5e6 < meta < 6.5e6
    assert math.isclose(plan(V3_0324, "Q4_K_M").metadata_bytes, 5.1e6, rel_tol=0.1)
