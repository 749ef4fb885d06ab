"""Bytes of a GGUF file outside its tensor data: header, key/values, tensor infos, padding.

Layout (gguf-py's GGUFWriter, ggml's gguf.cpp): magic, version, tensor count
and kv count (24 bytes); each kv is a length-prefixed key, a u32 value type and
the value (strings length-prefixed with a u64, arrays a u32 item type and a u64
count first); each tensor info is a length-prefixed name, u32 n_dims, u64
dims, u32 type and u64 offset; the whole is padded to the alignment (32, quant.gguf_file), and
every tensor's data is padded to it too.

The key/values are estimated: the hyper-parameters and general.* keys are
written out as the converter does (close enough; they are a few KiB), and the
tokenizer arrays, which dominate, are either measured from a tokenizer.json or
estimated from the vocabulary size with a per-family average measured on
llama.cpp's vocab-only GGUFs (models/ggml-vocab-*.gguf).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quant.gguf_file import padded

#: Tokenizer bytes per vocabulary entry (token string + token type + merges, all
#: framing included), measured on llama.cpp's vocab GGUFs: deepseek-llm
#: (102400 tokens, 99757 merges), llama-bpe (Llama 3: 128256 tokens, 280147
#: merges), qwen2 (151936 tokens, 151387 merges).
TOKENIZER_BYTES_PER_ENTRY: dict[str, float] = {
    "deepseek": (1753880 + 409649 + 1805784) / 102400,
    "llama3": (2099538 + 513073 + 5204810) / 128256,
    "qwen2": (2588241 + 607793 + 2731593) / 151936,
}

#: Chat template length when no tokenizer_config.json is given (DeepSeek-V3/R1's is ~3 KB).
DEFAULT_CHAT_TEMPLATE_BYTES = 3000


def _kv_bytes(key: str, value: Any) -> int:
    head = 8 + len(key.encode()) + 4
    return head + _value_bytes(value)


def _value_bytes(value: Any) -> int:
    if isinstance(value, str):
        return 8 + len(value.encode())
    if isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return 4  # u32 / f32, as the converter writes hyper-parameters
    if isinstance(value, (list, tuple)):
        return 4 + 8 + sum(_value_bytes(v) for v in value)
    raise TypeError(f"cannot size {value!r}")


def tensor_info_bytes(name: str, n_dims: int) -> int:
    return 8 + len(name.encode()) + 4 + 8 * n_dims + 4 + 8


def tokenizer_family(arch: str, config: dict[str, Any]) -> str:
    if arch == "qwen2":
        return "qwen2"
    if arch == "llama" and int(config.get("vocab_size", 0)) >= 128000:
        return "llama3"
    return "deepseek"


def tokenizer_bytes(
    vocab_size: int, family: str, tokenizer_json: "str | Path | None" = None
) -> int:
    """tokenizer.ggml.{tokens,token_type,merges} bytes: measured if a tokenizer.json is given."""
    if tokenizer_json is None:
        return round(vocab_size * TOKENIZER_BYTES_PER_ENTRY[family])
    data = json.loads(Path(tokenizer_json).read_text())
    model = data.get("model", {})
    ids: dict[int, str] = {i: t for t, i in model.get("vocab", {}).items()}
    ids.update({t["id"]: t["content"] for t in data.get("added_tokens", [])})
    n = max(vocab_size, max(ids) + 1 if ids else 0)
    # the converter names missing ids "[PAD<id>]"
    tokens = sum(8 + len(ids[i].encode()) if i in ids else 8 + len(f"[PAD{i}]") for i in range(n))
    merges = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges", [])]
    merge_bytes = sum(8 + len(m.encode()) for m in merges)
    arrays = 3 * (4 + 8) + len("tokenizer.ggml.tokens") + len("tokenizer.ggml.token_type") + len(
        "tokenizer.ggml.merges") + 3 * (8 + 4)
    return tokens + 4 * n + merge_bytes + arrays


def chat_template_bytes(tokenizer_config: "str | Path | None") -> int:
    if tokenizer_config is None:
        return DEFAULT_CHAT_TEMPLATE_BYTES
    template = json.loads(Path(tokenizer_config).read_text()).get("chat_template") or ""
    if isinstance(template, list):  # named templates: the converter writes the default one
        template = next((t.get("template", "") for t in template if t.get("name") == "default"), "")
    return len(template.encode())


def hparam_kvs(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """The converter's general.* and hyper-parameter keys (values only matter for their size)."""
    kv: dict[str, Any] = {
        "general.architecture": arch,
        "general.type": "model",
        "general.name": "X" * 24,
        "general.basename": "X" * 16,
        "general.size_label": "X" * 8,
        "general.license": "mit",
        "general.quantization_version": 2,
        "general.file_type": 15,
    }
    keys = [
        "context_length", "embedding_length", "block_count", "feed_forward_length",
        "attention.head_count", "attention.head_count_kv", "rope.freq_base",
        "attention.layer_norm_rms_epsilon", "rope.dimension_count", "vocab_size",
    ]
    if arch in ("deepseek2", "deepseek32"):
        keys += [
            "expert_used_count", "expert_group_count", "expert_group_used_count", "expert_gating_func",
            "leading_dense_block_count", "attention.q_lora_rank", "attention.kv_lora_rank",
            "attention.key_length", "attention.value_length", "attention.key_length_mla",
            "attention.value_length_mla", "expert_feed_forward_length", "expert_count",
            "expert_shared_count", "expert_weights_scale", "expert_weights_norm",
            "rope.scaling.factor", "rope.scaling.original_context_length",
            "rope.scaling.yarn_log_multiplier",
        ]
        kv[f"{arch}.rope.scaling.type"] = "yarn"
    if arch == "deepseek32":
        keys += ["nextn_predict_layers", "attention.indexer.head_count", "attention.indexer.key_length",
                 "attention.indexer.top_k"]
    if arch == "deepseek4":  # conversion/deepseek.py DeepseekV4Model.set_gguf_parameters
        keys += [
            "expert_used_count", "expert_gating_func", "expert_count", "attention.key_length",
            "attention.value_length", "attention.q_lora_rank", "attention.sliding_window",
            "expert_feed_forward_length", "expert_shared_count", "expert_weights_scale", "expert_weights_norm",
            "attention.indexer.head_count", "attention.indexer.key_length", "attention.indexer.top_k",
            "attention.output_group_count", "attention.output_lora_rank", "attention.compress_rope_freq_base",
            "hyper_connection.count", "hyper_connection.sinkhorn_iterations", "hyper_connection.epsilon",
            "hash_layer_count", "embedding_length_out", "rope.scaling.factor",
            "rope.scaling.original_context_length",
        ]
        n_blocks = int(config["num_hidden_layers"])
        kv[f"{arch}.rope.scaling.type"] = "yarn"
        kv[f"{arch}.swiglu_clamp_exp"] = [0.0] * n_blocks
        kv[f"{arch}.swiglu_clamp_shexp"] = [0.0] * n_blocks
        kv[f"{arch}.attention.compress_ratios"] = [0] * len(config.get("compress_ratios", []))
    for k in keys:
        kv[f"{arch}.{k}"] = 0
    pre = {"deepseek2": "deepseek-v3", "deepseek32": "deepseek-v3", "deepseek4": "deepseek-v3",
           "llama": "llama-bpe", "qwen2": "deepseek-r1-qwen"}[arch]
    kv.update({
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 0,
        "tokenizer.ggml.padding_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
    })
    return kv


def metadata_bytes(
    arch: str,
    config: dict[str, Any],
    tensors: "list[tuple[str, int]]",
    *,
    tokenizer_json: "str | Path | None" = None,
    tokenizer_config: "str | Path | None" = None,
) -> int:
    """Header + key/values + tensor infos, padded: the bytes before the first tensor."""
    kvs = hparam_kvs(arch, config)
    kv_bytes = sum(_kv_bytes(k, v) for k, v in kvs.items())
    family = tokenizer_family(arch, config)
    kv_bytes += tokenizer_bytes(int(config["vocab_size"]), family, tokenizer_json)
    kv_bytes += 8 + len("tokenizer.chat_template") + 4 + 8 + chat_template_bytes(tokenizer_config)
    infos = sum(tensor_info_bytes(name, n_dims) for name, n_dims in tensors)
    return padded(24 + kv_bytes + infos)
