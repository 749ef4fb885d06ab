"""Is a config.json one llama.cpp could load? Types, ranges and consistency, before anything is planned.

The registry takes configs from API users (inline, a file under an import root, the Hub), and
``architectures.tensor_specs``, the planner and ``/api/fit`` trust what they read: a count that is a
string, a float, a bool, zero or negative crashes them later; 20,000 layers or 10**12 experts make
them build millions of tensor entries. ``check`` refuses such a config with a message that names
the key.

Bounds are llama.cpp's where it has one (``src/llama-hparams.h``: ``LLAMA_MAX_LAYERS`` 512,
``LLAMA_MAX_EXPERTS`` 512), otherwise far above every released model (DeepSeek-V3: hidden size
7168, 128 heads, vocabulary 129,280; Llama-3.1-405B: feed-forward 53,248), so no real checkpoint
is refused and no made-up one is unbounded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quant import architectures

MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 512  # LLAMA_MAX_EXPERTS


class ConfigError(ValueError):
    """A config llama.cpp could not load; the message names the offending key."""


@dataclass(frozen=True)
class Count:
    """An integer hyperparameter: its key, its range, and whether it may be absent (or null)."""

    key: str
    low: int
    high: int
    required: bool = True


#: Every architecture dsq serves.
COMMON = (
    Count("num_hidden_layers", 1, MAX_LAYERS),
    Count("hidden_size", 1, 1 << 16),
    Count("num_attention_heads", 1, 1 << 10),
    Count("num_key_value_heads", 1, 1 << 10, required=False),
    Count("vocab_size", 1, 1 << 20),
)
#: llama and qwen2 (the R1 distills).
LLAMA_LIKE = (
    Count("intermediate_size", 1, 1 << 18),
    Count("head_dim", 1, 1 << 10, required=False),  # absent: hidden_size / num_attention_heads
)
#: deepseek2 (DeepSeek-V2/V3/R1): multi-head latent attention and routed experts.
DEEPSEEK2 = (
    Count("kv_lora_rank", 1, 1 << 14),
    Count("q_lora_rank", 1, 1 << 14, required=False),  # null in V2-Lite: q is projected directly
    Count("qk_nope_head_dim", 1, 1 << 10),
    Count("qk_rope_head_dim", 1, 1 << 10),
    Count("v_head_dim", 1, 1 << 10),
    Count("intermediate_size", 1, 1 << 18, required=False),  # required below if any layer is dense
    Count("n_routed_experts", 0, MAX_EXPERTS, required=False),  # 0 or absent: every layer dense
    Count("num_experts_per_tok", 1, MAX_EXPERTS, required=False),
    Count("n_shared_experts", 0, 64, required=False),
    Count("moe_intermediate_size", 1, 1 << 18, required=False),
    Count("first_k_dense_replace", 0, MAX_LAYERS, required=False),
    Count("moe_layer_freq", 1, MAX_LAYERS, required=False),
    Count("n_group", 1, MAX_EXPERTS, required=False),
    Count("topk_group", 1, MAX_EXPERTS, required=False),
)
#: deepseek32 (DeepSeek-V3.2): deepseek2 plus the lightning indexer and the MTP layer it keeps.
DEEPSEEK32 = DEEPSEEK2 + (
    Count("q_lora_rank", 1, 1 << 14),  # the indexer projects from the q latent
    Count("index_n_heads", 1, 1 << 10),
    Count("index_head_dim", 1, 1 << 10),
    Count("index_topk", 1, 1 << 20),
    Count("num_nextn_predict_layers", 0, 8, required=False),
)
#: deepseek4 (DeepSeek-V4): what DeepseekV4Model.set_gguf_parameters and the tensor list read.
DEEPSEEK4 = (
    Count("head_dim", 1, 1 << 12),
    Count("q_lora_rank", 1, 1 << 14),
    Count("qk_rope_head_dim", 1, 1 << 10),
    Count("o_groups", 1, 1 << 10),
    Count("o_lora_rank", 1, 1 << 14),
    Count("hc_mult", 1, 64),
    Count("index_n_heads", 1, 1 << 10),
    Count("index_head_dim", 1, 1 << 10),
    Count("index_topk", 1, 1 << 20),
    Count("n_routed_experts", 1, MAX_EXPERTS),
    Count("num_experts_per_tok", 1, MAX_EXPERTS),
    Count("n_shared_experts", 0, 64),
    Count("moe_intermediate_size", 1, 1 << 18),
    Count("num_hash_layers", 0, MAX_LAYERS),
    Count("sliding_window", 1, 1 << 20),
)
BY_ARCH: dict[str, tuple[Count, ...]] = {"llama": LLAMA_LIKE, "qwen2": LLAMA_LIKE, "deepseek2": DEEPSEEK2,
                                         "deepseek32": DEEPSEEK32, "deepseek4": DEEPSEEK4}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _count(config: dict[str, Any], spec: Count) -> "int | None":
    value = config.get(spec.key)
    if value is None:
        if spec.required:
            raise ConfigError(f"config.json is missing {spec.key!r} (an integer from {spec.low} to {spec.high})")
        return None
    if isinstance(value, bool) or not isinstance(value, int):  # bool is an int in Python, not in config.json
        raise ConfigError(f"{spec.key} must be an integer from {spec.low} to {spec.high}, "
                          f"got {type(value).__name__} {_shown(value)}")
    if not spec.low <= value <= spec.high:
        raise ConfigError(f"{spec.key} must be from {spec.low} to {spec.high}, got {value}")
    return value


def _kinds(config: dict[str, Any]) -> None:
    """The non-numeric keys the code reads: wrong JSON types would surface as TypeErrors much later."""
    for key, kind, what in (("model_type", str, "a string"), ("architectures", list, "a list of strings"),
                            ("tie_word_embeddings", bool, "true or false"), ("topk_method", str, "a string"),
                            ("rope_scaling", dict, "an object")):
        value = config.get(key)
        if value is not None and not isinstance(value, kind):
            raise ConfigError(f"{key} must be {what}, got {_shown(value)}")
    if not all(isinstance(a, str) for a in config.get("architectures") or []):
        raise ConfigError(f"architectures must be a list of strings, got {_shown(config['architectures'])}")


def check(config: Any) -> str:
    """Raise ConfigError unless llama.cpp could load this config; returns its GGUF architecture."""
    if not isinstance(config, dict):
        raise ConfigError("config must be a JSON object (the checkpoint's config.json)")
    _kinds(config)
    arch = architectures.gguf_arch(config)
    counts: dict[str, "int | None"] = {}
    for spec in COMMON + BY_ARCH[arch]:
        counts[spec.key] = _count(config, spec)
    n_head, n_head_kv = counts["num_attention_heads"], counts["num_key_value_heads"]
    if arch in ("deepseek2", "deepseek32"):
        _check_deepseek2(counts)
    elif arch == "deepseek4":
        _check_deepseek4(config, counts)
    else:
        if n_head_kv is not None and n_head % n_head_kv:
            raise ConfigError(f"num_key_value_heads ({n_head_kv}) must divide num_attention_heads ({n_head}): "
                              "each key/value head serves a whole group of query heads")
        head_dim = counts["head_dim"]
        if head_dim is None and counts["hidden_size"] % n_head:
            raise ConfigError(f"num_attention_heads ({n_head}) must divide hidden_size ({counts['hidden_size']}) "
                              "when head_dim is not given")
        if (head_dim or counts["hidden_size"] // n_head) % 2:
            raise ConfigError("head_dim (or hidden_size / num_attention_heads) must be even: RoPE rotates pairs")
    return arch


def _check_deepseek2(c: dict[str, "int | None"]) -> None:
    if c["qk_rope_head_dim"] % 2:
        raise ConfigError(f"qk_rope_head_dim must be even (RoPE rotates pairs), got {c['qk_rope_head_dim']}")
    n_layer, experts = c["num_hidden_layers"], c["n_routed_experts"] or 0
    first_dense = c["first_k_dense_replace"]
    if first_dense is not None and first_dense > n_layer:
        raise ConfigError(f"first_k_dense_replace ({first_dense}) cannot exceed num_hidden_layers ({n_layer})")
    dense_layers = not experts or (first_dense or 0) > 0 or (c["moe_layer_freq"] or 1) > 1
    if dense_layers and c["intermediate_size"] is None:
        raise ConfigError("config.json is missing 'intermediate_size' (the dense layers' feed-forward size)")
    if not experts:
        return
    for key in ("num_experts_per_tok", "moe_intermediate_size"):
        if c[key] is None:
            raise ConfigError(f"config.json is missing {key!r} (n_routed_experts is {experts})")
    used = c["num_experts_per_tok"]
    if used > experts:
        raise ConfigError(f"num_experts_per_tok ({used}) cannot exceed n_routed_experts ({experts})")
    groups, used_groups = c["n_group"], c["topk_group"]
    if groups is not None:
        if experts % groups:
            raise ConfigError(f"n_group ({groups}) must divide n_routed_experts ({experts})")
        if used_groups is not None:
            if used_groups > groups:
                raise ConfigError(f"topk_group ({used_groups}) cannot exceed n_group ({groups})")
            if used > used_groups * (experts // groups):
                raise ConfigError(f"num_experts_per_tok ({used}) cannot exceed the experts of the topk_group "
                                  f"groups it routes to ({used_groups} × {experts // groups})")


def _check_deepseek4(config: dict[str, Any], c: dict[str, "int | None"]) -> None:
    ratios = config.get("compress_ratios")
    if not isinstance(ratios, list) or len(ratios) < c["num_hidden_layers"]:
        raise ConfigError("compress_ratios must be a list with an entry for each of the num_hidden_layers layers")
    bad = [r for r in ratios if isinstance(r, bool) or r not in (0, 4, 128)]
    if bad:  # src/models/deepseek4.cpp: "only supports compression ratios 0, 4, and 128"
        raise ConfigError(f"compress_ratios may only hold 0, 4 and 128, got {_shown(bad[0])}")
    if (c["num_attention_heads"] * c["head_dim"]) % c["o_groups"]:
        raise ConfigError(f"o_groups ({c['o_groups']}) must divide num_attention_heads × head_dim")
    if c["num_experts_per_tok"] > c["n_routed_experts"]:
        raise ConfigError(f"num_experts_per_tok ({c['num_experts_per_tok']}) cannot exceed "
                          f"n_routed_experts ({c['n_routed_experts']})")
