"""The trained tiny DeepSeek-V3 MoE: the committed checkpoint is what it claims, converts, and
llama.cpp computes what our forward computes; training is deterministic."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import gguf
import numpy as np
import pytest
import torch

from quant.deepseek_torch import load_checkpoint
from quant.tiny import TRAINED_DIR, TinySpec, tensor_specs, tokenizer_files
from quant.train_tiny import (SPEC, TrainSettings, Tokenizer, corpus, hf_tensors, scored_targets, train,
                              unigram_nll, window_nll)


@pytest.fixture(scope="module")
def trained():
    return load_checkpoint(TRAINED_DIR)


@pytest.fixture(scope="module")
def config():
    return json.loads((TRAINED_DIR / "config.json").read_text())


def test_it_is_a_deepseek_v3_moe(config):
    assert config["architectures"] == ["DeepseekV3ForCausalLM"]
    assert config["n_routed_experts"] >= 16 and config["n_shared_experts"] == 1
    assert config["first_k_dense_replace"] == 1 and config["num_hidden_layers"] >= 5  # DQ3_K_M's blocks 3-4
    assert config["scoring_func"] == "sigmoid" and config["topk_method"] == "noaux_tc"
    assert config["n_group"] > 1 and config["q_lora_rank"] and config["kv_lora_rank"]
    assert config["rope_scaling"]["type"] == "yarn"


def test_every_row_is_a_multiple_of_256(config):
    """Row length = the last dimension of each 2-D weight: K-quants (256-blocks) apply to all of them."""
    from safetensors import safe_open

    seen = 0
    for f in TRAINED_DIR.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            for name in st.keys():
                shape = st.get_slice(name).get_shape()
                if len(shape) == 2:
                    assert shape[-1] % 256 == 0, (name, shape)
                    seen += 1
    n_moe = config["num_hidden_layers"] - config["first_k_dense_replace"]
    assert seen >= n_moe * config["n_routed_experts"] * 3


def test_the_checkpoint_holds_exactly_the_architectures_tensors(trained, config):
    spec = TinySpec(**json.loads((TRAINED_DIR / "dsq-tiny.json").read_text())["spec"])
    assert spec == SPEC
    names = [n for n, _ in hf_tensors(trained, spec)]  # raises on a missing, extra or misshapen tensor
    assert names == [n for n, _ in tensor_specs(spec)]
    for moe in trained.moe_layers():  # the selection bias was trained, not left at zero
        assert moe.gate.e_score_correction_bias.abs().max() > 0


def test_it_predicts_the_validation_text_far_better_than_unigram(trained, config):
    train_text, valid_text = corpus()
    tok = Tokenizer(json.loads((TRAINED_DIR / "tokenizer.json").read_text()))
    valid = tok.encode(valid_text[:20000])
    nll = window_nll(trained, valid, 128, 4, tok.bos)
    counts = json.loads((TRAINED_DIR / "dsq-tiny.json").read_text())
    assert counts["trained_by"] == "python -m quant.train_tiny"
    uni = unigram_nll(tok.encode(train_text[:200000]), scored_targets(valid, 128, 4), config["vocab_size"])
    assert math.exp(nll.mean()) < math.exp(uni.mean()) / 3


def test_it_converts_and_llama_cpp_computes_our_logits(trained, tmp_path):
    """F32 GGUF through dsq's converter, F32 KV cache: llama.cpp's logits equal our forward's to float32
    rounding (with F16 weights or the default F16 cache, near-tied expert choices flip at a few
    per cent of positions; the perplexities still agree to 0.03 %, docs/tiny-moe-training.json)."""
    import llama_cpp

    from quant.convert import convert

    out = convert(TRAINED_DIR, tmp_path, "F32", name="tiny-moe", stats=False).files[0].path
    reader = gguf.GGUFReader(str(out))
    kv = {f.name: f.contents() for f in reader.fields.values() if not f.name.startswith("tokenizer.")}
    assert kv["general.architecture"] == "deepseek2"
    assert kv["deepseek2.expert_count"] >= 16 and kv["deepseek2.expert_group_count"] > 1
    assert kv["deepseek2.leading_dense_block_count"] == 1 and kv["deepseek2.expert_gating_func"] == 2  # sigmoid
    assert any(t.name == "blk.1.exp_probs_b.bias" for t in reader.tensors)

    llm = llama_cpp.Llama(str(out), n_ctx=64, n_batch=64, n_threads=1, logits_all=True, verbose=False,
                          type_k=0, type_v=0)  # GGML_TYPE_F32
    try:
        tokens = llm.tokenize(corpus()[1][:2000].encode(), add_bos=True)[:64]
        llm.eval(tokens)
        theirs = np.array(llm.scores[:64], dtype=np.float64)
    finally:
        llm.close()
    with torch.no_grad():
        ours = trained(torch.tensor(tokens)[None])[0].double().numpy()
    assert np.abs(ours - theirs).max() < 5e-3, np.abs(ours - theirs).max(-1)


SMALL = TinySpec(vocab_size=300, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                 num_hidden_layers=2, num_attention_heads=2, q_lora_rank=32, kv_lora_rank=32,
                 qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=4,
                 num_experts_per_tok=2, n_group=2, topk_group=1, num_nextn_predict_layers=0, n_merges=41)


def test_training_is_deterministic():
    text = corpus(stdlib_chars=1000)[0][:30000]
    tok = Tokenizer(tokenizer_files(SMALL, text)["tokenizer.json"])
    tokens = tok.encode(text)
    settings = TrainSettings(steps=3, batch=2, seq_len=32, warmup=1, eval_every=0)
    runs = [train(SMALL, settings, tokens, tokens[:200], tok.bos, log=lambda m: None) for _ in range(2)]
    (a, curve_a), (b, curve_b) = runs
    assert curve_a["train_loss"] == curve_b["train_loss"]
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    moved = train(SMALL, replace(settings, steps=1), tokens, tokens[:200], tok.bos, log=lambda m: None)[0]
    assert not all(torch.equal(sa[k], moved.state_dict()[k]) for k in sa)  # the steps did something
