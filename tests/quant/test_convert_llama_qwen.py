"""Tiny random Llama (Llama-3 rope scaling) and Qwen2 checkpoints: our F32 GGUF's logits equal transformers'."""
from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch

from quant.convert import convert
from quant.tiny import TinySpec, tokenizer_files
from quant.vocab import pre_tokenizer_json
from tests.tiny_models import llama_logits, reference_logits

pytest.importorskip("llama_cpp")


def _save(model, out, pre: str):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g) if "norm" in name
                    else torch.randn(p.shape, generator=g) / (p.shape[-1] ** 0.5 if p.dim() > 1 and "embed" not in name else 5))
    model.save_pretrained(out)
    files = tokenizer_files(TinySpec(vocab_size=model.config.vocab_size, n_merges=100))
    files["tokenizer.json"]["pre_tokenizer"] = pre_tokenizer_json(pre)
    for name, data in files.items():
        (out / name).write_text(json.dumps(data, ensure_ascii=False))
    return out


TOKENS = [1, 45, 300, 7, 99, 250, 3, 18, 64, 200, 11, 5]


def test_llama_with_llama3_rope_scaling(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                      rope_theta=500000.0, tie_word_embeddings=False)
    src = _save(LlamaForCausalLM(cfg), tmp_path / "llama", "llama-bpe")
    out = convert(src, tmp_path / "out", "F32", stats=False).files[0].path
    r = gguf.GGUFReader(out)
    assert r.fields["tokenizer.ggml.pre"].contents() == "llama-bpe"
    assert "rope_freqs.weight" in {t.name for t in r.tensors}
    ref = reference_logits(src, TOKENS)
    assert np.abs(llama_logits(out, TOKENS) - ref).max() < 1e-3


def test_qwen2_with_qkv_bias_and_tied_embeddings(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      rope_theta=1000000.0, tie_word_embeddings=True)
    src = _save(Qwen2ForCausalLM(cfg), tmp_path / "qwen2", "qwen2")
    out = convert(src, tmp_path / "out", "F32", stats=False).files[0].path
    r = gguf.GGUFReader(out)
    names = {t.name for t in r.tensors}
    assert r.fields["general.architecture"].contents() == "qwen2" and r.fields["tokenizer.ggml.pre"].contents() == "qwen2"
    assert "blk.0.attn_q.bias" in names and "output.weight" not in names
    ref = reference_logits(src, TOKENS)
    assert np.abs(llama_logits(out, TOKENS) - ref).max() < 1e-3
