"""End-to-end: a tiny random DeepSeek-V3 -> our GGUF -> llama.cpp, against transformers and llama-quantize."""
from __future__ import annotations

import json
import shutil

import gguf
import numpy as np
import pytest

from quant.convert import convert, plan_conversion
from tests.quant.llama_ref import field, llama_quantize, mismatches, tensors
from tests.tiny_models import TINY_TEXT, llama_logits, reference_logits, tiny_tokens

llama_cpp = pytest.importorskip("llama_cpp")


def test_f32_gguf_logits_match_transformers(tiny_deepseek_dir, tiny_deepseek_gguf):
    tokens = tiny_tokens(tiny_deepseek_dir)
    ref = reference_logits(tiny_deepseek_dir, tokens)
    got = llama_logits(tiny_deepseek_gguf, tokens)
    assert ref.std() > 0.5  # logits that say something, so a wrong tensor shows
    assert np.abs(got - ref).max() < 1e-3


def test_llama_cpp_tokenizes_like_the_hf_tokenizer(tiny_deepseek_dir, tiny_deepseek_gguf):
    llm = llama_cpp.Llama(str(tiny_deepseek_gguf), vocab_only=True, verbose=False)
    try:
        assert llm.tokenize(TINY_TEXT.encode(), add_bos=True) == tiny_tokens(tiny_deepseek_dir)
    finally:
        llm.close()


def test_metadata_is_what_llama_cpp_reads_for_deepseek2(tiny_deepseek_dir, tiny_deepseek_gguf):
    cfg = json.loads((tiny_deepseek_dir / "config.json").read_text())
    want = {
        "general.architecture": "deepseek2",
        "general.file_type": int(gguf.LlamaFileType.ALL_F32),
        "general.quantization_version": gguf.GGML_QUANT_VERSION,
        "deepseek2.block_count": cfg["num_hidden_layers"],
        "deepseek2.leading_dense_block_count": 1,
        "deepseek2.attention.head_count": cfg["num_attention_heads"],
        "deepseek2.attention.head_count_kv": 1,
        "deepseek2.attention.q_lora_rank": cfg["q_lora_rank"],
        "deepseek2.attention.kv_lora_rank": cfg["kv_lora_rank"],
        "deepseek2.attention.key_length": cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"],
        "deepseek2.attention.value_length": cfg["kv_lora_rank"],
        "deepseek2.attention.key_length_mla": cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"],
        "deepseek2.attention.value_length_mla": cfg["v_head_dim"],
        "deepseek2.expert_count": cfg["n_routed_experts"],
        "deepseek2.expert_used_count": cfg["num_experts_per_tok"],
        "deepseek2.expert_group_count": cfg["n_group"],
        "deepseek2.expert_group_used_count": cfg["topk_group"],
        "deepseek2.expert_shared_count": cfg["n_shared_experts"],
        "deepseek2.expert_feed_forward_length": cfg["moe_intermediate_size"],
        "deepseek2.expert_weights_norm": True,
        "deepseek2.expert_gating_func": int(gguf.ExpertGatingFuncType.SIGMOID),
        "deepseek2.rope.dimension_count": cfg["qk_rope_head_dim"],
        "deepseek2.rope.scaling.type": "yarn",
        "deepseek2.rope.scaling.original_context_length": 4096,
        "deepseek2.vocab_size": cfg["vocab_size"],
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "deepseek-v3",
        "tokenizer.ggml.add_bos_token": True,
        "dsq.recipe.name": "F32",
    }
    r = gguf.GGUFReader(tiny_deepseek_gguf)
    got = {k: r.fields[k].contents() for k in want if k in r.fields}
    assert got == want
    assert r.fields["deepseek2.expert_weights_scale"].contents() == pytest.approx(cfg["routed_scaling_factor"])
    assert r.fields["deepseek2.rope.scaling.yarn_log_multiplier"].contents() == pytest.approx(0.1)
    assert r.fields["deepseek2.rope.scaling.factor"].contents() == pytest.approx(40)
    assert len(r.fields["tokenizer.ggml.tokens"].contents()) == cfg["vocab_size"]
    assert len(r.fields["dsq.recipe.sha256"].contents()) == 64


def test_tensor_layout_matches_the_planner_and_drops_mtp(tiny_deepseek_dir, tiny_deepseek_gguf):
    from quant import architectures

    cfg = json.loads((tiny_deepseek_dir / "config.json").read_text())
    ours = {n: shape for n, (_, shape, _) in tensors(tiny_deepseek_gguf).items()}
    assert ours == {name: tuple(shape) for name, shape in architectures.tensor_specs(cfg)}
    n_head, nope, v, kv_lora = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    assert ours["blk.1.attn_k_b.weight"] == (n_head, kv_lora, nope)
    assert ours["blk.1.attn_v_b.weight"] == (n_head, v, kv_lora)
    assert ours["blk.1.ffn_gate_exps.weight"] == (cfg["n_routed_experts"], cfg["moe_intermediate_size"], cfg["hidden_size"])
    assert not any(n.startswith(f"blk.{cfg['num_hidden_layers']}.") for n in ours)  # MTP layer dropped


@pytest.mark.parametrize("recipe", ["Q8_0", "Q4_K_M", "Q3_K_M", "Q2_K"])
def test_quantized_files_are_byte_identical_to_llama_quantize(recipe, tiny_deepseek_dir, tiny_deepseek_gguf, tmp_path):
    ours = convert(tiny_deepseek_dir, tmp_path, recipe, stats=False).files[0].path
    theirs = llama_quantize(tiny_deepseek_gguf, tmp_path / f"llama-{recipe}.gguf", recipe)
    assert mismatches(ours, theirs) == []
    assert field(ours, "general.file_type") == field(theirs, "general.file_type")


def test_gguf_input_is_requantized_as_llama_quantize_does(tiny_deepseek_gguf, tmp_path):
    ours = convert(tiny_deepseek_gguf, tmp_path, "Q2_K", stats=False).files[0].path
    theirs = llama_quantize(tiny_deepseek_gguf, tmp_path / "llama-Q2_K.gguf", "Q2_K")
    assert mismatches(ours, theirs) == []
    # every key/value of the input is carried over
    src = gguf.GGUFReader(tiny_deepseek_gguf).fields
    out = gguf.GGUFReader(ours).fields
    for k in src:
        if not k.startswith("GGUF.") and k not in ("general.file_type", "dsq.recipe.name", "dsq.recipe.sha256",
                                                   "dsq.recipe.version"):
            assert out[k].contents() == src[k].contents(), k


def test_f16_gguf_input_matches_llama_quantize_and_hf_cache_origin_is_recorded(tiny_deepseek_dir, tmp_path):
    snap = tmp_path / "hub" / "models--example--tiny-ds3" / "snapshots" / "0123456789abcdef"
    shutil.copytree(tiny_deepseek_dir, snap)
    f16 = convert(snap, tmp_path / "f16", "F16", stats=False).files[0].path
    assert field(f16, "dsq.source.repo") == "example/tiny-ds3"
    assert field(f16, "dsq.source.revision") == "0123456789abcdef"
    ours = convert(f16, tmp_path / "ours", "Q8_0", stats=False).files[0].path
    theirs = llama_quantize(f16, tmp_path / "llama-Q8_0.gguf", "Q8_0")
    assert mismatches(ours, theirs) == []
    assert field(ours, "dsq.source.revision") == "0123456789abcdef"  # provenance survives re-quantization
    assert field(ours, "dsq.recipe.name") == "Q8_0"


def test_imatrix_per_expert_slices_match_llama_quantize(tiny_deepseek_dir, tiny_deepseek_gguf, tmp_path):
    from quant.imatrix import load_imatrix, save_gguf, save_legacy

    rng = np.random.default_rng(1)
    entries, legacy = {}, {}
    for name, (_, shape, _) in tensors(tiny_deepseek_gguf).items():
        if len(shape) < 2 or "norm" in name or "ffn_gate_inp" in name or name == "token_embd.weight":
            continue
        n_mat = shape[0] if len(shape) == 3 else 1
        counts = rng.integers(1, 50, n_mat).astype(np.float32)
        sums = rng.gamma(1.0, 1.0, (n_mat, shape[-1])).astype(np.float32) * counts[:, None]
        entries[name] = (sums, counts)
        legacy[name] = (7, (sums / counts[:, None]).reshape(-1) * 7)
    save_gguf(tmp_path / "imatrix.gguf", entries, ["tiny.txt"], chunk_count=3, chunk_size=512)
    save_legacy(tmp_path / "imatrix.dat", legacy, chunk_count=3, dataset="tiny.txt")
    im = load_imatrix(tmp_path / "imatrix.gguf")
    im_legacy = load_imatrix(tmp_path / "imatrix.dat")
    for name, v in im.data.items():
        np.testing.assert_allclose(v.numpy(), im_legacy.data[name].numpy(), rtol=1e-6)

    ours = convert(tiny_deepseek_dir, tmp_path / "ours", "Q4_K_M", imatrix=tmp_path / "imatrix.gguf", stats=False).files[0].path
    theirs = llama_quantize(tiny_deepseek_gguf, tmp_path / "llama.gguf", "Q4_K_M",
                            imatrix={n: v.numpy() for n, v in im.data.items()})
    assert mismatches(ours, theirs) == []
    assert field(ours, "quantize.imatrix.entries_count") == len(entries)
    assert field(ours, "quantize.imatrix.dataset") == "tiny.txt"


def test_dq3_k_m_has_the_planned_types_and_runs(tiny_deepseek_dir, tmp_path):
    from quant.planner import plan
    from quant.recipes import get_recipe

    cfg = json.loads((tiny_deepseek_dir / "config.json").read_text())
    res = convert(tiny_deepseek_dir, tmp_path, "DQ3_K_M", stats=False)
    planned = {t.name: (t.type, t.shape, t.nbytes) for t in plan(cfg, get_recipe("DQ3_K_M")).tensors}
    got = {n: (ty, shape, len(data)) for n, (ty, shape, data) in tensors(res.files[0].path).items()}
    assert got == planned
    assert field(res.files[0].path, "dsq.recipe.name") == "DQ3_K_M"
    logits = llama_logits(res.files[0].path, tiny_tokens(tiny_deepseek_dir))
    assert np.isfinite(logits).all() and logits.std() > 0.1


def test_fp8_checkpoint_converts_to_the_same_gguf_as_its_bf16_cast(tiny_deepseek_fp8_dir, tmp_path):
    from quant.sources import HFSource
    from quant.tiny import dequantize_fp8_checkpoint

    src = HFSource(tiny_deepseek_fp8_dir)
    assert any(t.dtype == "F8_E4M3" for t in src.tensors.values())
    bf16 = dequantize_fp8_checkpoint(tiny_deepseek_fp8_dir, tmp_path / "bf16")
    a = convert(tiny_deepseek_fp8_dir, tmp_path / "a", "Q8_0", name="m", stats=False).files[0].path
    b = convert(bf16, tmp_path / "b", "Q8_0", name="m", stats=False).files[0].path
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys() and all(ta[n] == tb[n] for n in ta)


def test_split_output_loads_in_llama_cpp_and_equals_the_single_file(tiny_deepseek_dir, tiny_deepseek_gguf, tmp_path):
    res = convert(tiny_deepseek_dir, tmp_path, "F32", shard_size=6 << 20, name="split", stats=False)
    n = len(res.files)
    assert n >= 3
    assert [f.path.name for f in res.files] == [f"split-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]
    for i, f in enumerate(res.files):
        assert field(f.path, "split.no") == i and field(f.path, "split.count") == n
        assert field(f.path, "split.tensors.count") == len(res.tensors)
    assert field(res.files[1].path, "general.architecture") is None  # metadata only in the first, as gguf-split
    merged = {}
    for f in res.files:
        merged.update(tensors(f.path))
    assert merged == tensors(tiny_deepseek_gguf)
    tokens = tiny_tokens(tiny_deepseek_dir)
    np.testing.assert_array_equal(llama_logits(res.files[0].path, tokens), llama_logits(tiny_deepseek_gguf, tokens))


def test_a_missing_expert_is_named(tiny_deepseek_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from quant.adapters import AdapterError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_deepseek_dir, broken)
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    victim = "model.layers.2.mlp.experts.5.up_proj.weight"
    shard = broken / index["weight_map"].pop(victim)
    kept = {k: v for k, v in load_file(shard).items() if k != victim}
    save_file(kept, shard)
    (broken / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(AdapterError, match=r"layer 2 up_proj: 1 expert\(s\) never arrived .*experts\.\{5\}"):
        plan_conversion(broken, "F32")
