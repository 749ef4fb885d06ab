"""The GGUF tensor list of a model, from its Hugging Face config.json alone.

Names and shapes are what llama.cpp's converter (convert_hf_to_gguf.py and
conversion/{deepseek,llama,qwen}.py) writes; shapes are in PyTorch order
(last dim = row length = ggml ne[0]). The list is in the order llama.cpp's
quantizer walks a file (``weight_name_comparer``: tensors outside blocks first,
then block by block, each sorted by name), which is the order its running
counters see.

DeepSeek-V3 (deepseek2): the multi-token-prediction layer (index
num_hidden_layers) is dropped; ``kv_b_proj`` is split into ``attn_k_b``
(n_head, kv_lora_rank, qk_nope_head_dim) -- transposed, so its rows are only
128 long -- and ``attn_v_b`` (n_head, v_head_dim, kv_lora_rank); llama.cpp no
longer writes ``attn_kv_b``. Routed experts are stacked into 3-D
``ffn_{gate,up,down}_exps``; the router bias is ``exp_probs_b.bias``.

DeepSeek-V3.2 (deepseek32, conversion/deepseek.py ``DeepseekV32Model``): deepseek2's
tensors plus the lightning indexer in every block (``indexer.attn_q_b``,
``indexer.attn_k``, ``indexer.k_norm`` weight and bias, ``indexer.proj``), and the
converter keeps the MTP layer by default: block num_hidden_layers is written, with
its ``nextn.*`` tensors, and counts in ``block_count`` (llama-quant.cpp's
``n_layer_all``, which its ffn_down rules divide).

DeepSeek-V4 (deepseek4, ``DeepseekV4Model``; shapes from src/models/deepseek4.cpp
``load_arch_tensors``): no MLA and no dense layers; per block q/kv projections
(``attn_q_a``, ``attn_q_b``, ``attn_kv``), a grouped low-rank output
(``attn_output_a``, ``attn_output_b``), the attention sinks, hyper-connection mixers
(``hc_attn_*``, ``hc_ffn_*``; ``output_hc_*`` at the head), a KV compressor where
``compress_ratios[i]`` is non-zero and an indexer with its own compressor where it
is 4, routed experts (MXFP4 in the checkpoint) and a shared expert. The first
``num_hash_layers`` blocks route by token id (``ffn_gate_tid2eid``, I32) instead of
a router bias. The MTP layer is dropped by default.
"""
from __future__ import annotations

from typing import Any, Callable

from quant.recipes import ModelFacts, block_index

Spec = tuple[str, tuple[int, ...]]

#: HF model_type / architectures[0] -> GGUF architecture name.
ARCHITECTURES: dict[str, str] = {
    "deepseek_v3": "deepseek2",
    "deepseek_v2": "deepseek2",
    "DeepseekV3ForCausalLM": "deepseek2",
    "DeepseekV2ForCausalLM": "deepseek2",
    "kimi_k2": "deepseek2",  # Moonshot's Kimi-K2 is DeepseekV3ForCausalLM
    "deepseek_v32": "deepseek32",
    "DeepseekV32ForCausalLM": "deepseek32",
    "deepseek_v4": "deepseek4",
    "DeepseekV4ForCausalLM": "deepseek4",
    "llama": "llama",
    "LlamaForCausalLM": "llama",
    "qwen2": "qwen2",
    "Qwen2ForCausalLM": "qwen2",
}


def gguf_arch(config: dict[str, Any]) -> str:
    """GGUF architecture of a config; ValueError for one dsq does not serve."""
    for key in [config.get("model_type"), *config.get("architectures", [])]:
        if key in ARCHITECTURES:
            return ARCHITECTURES[key]
    raise ValueError(
        f"unsupported model: model_type={config.get('model_type')!r}, "
        f"architectures={config.get('architectures')!r}; supported: {', '.join(sorted(set(ARCHITECTURES.values())))}"
    )


#: Architectures whose converter keeps the MTP (NextN) layers as extra blocks.
KEEPS_MTP: frozenset[str] = frozenset({"deepseek32"})

#: Architectures whose attention is written with one KV head (deepseek2's MLA as MQA; V4's single KV head).
ONE_KV_HEAD: frozenset[str] = frozenset({"deepseek2", "deepseek32", "deepseek4"})


def n_layer(config: dict[str, Any]) -> int:
    """Blocks in the GGUF file: MTP layers only where the converter keeps them (deepseek32)."""
    n = int(config["num_hidden_layers"])
    if gguf_arch(config) in KEEPS_MTP:
        n += int(config.get("num_nextn_predict_layers") or 0)
    return n


#: What llama.cpp never quantizes keeps the converter's type: F32, except these (deepseek4: the router
#: is BF16 in the checkpoint and the converter keeps BF16 for 2-D BF16 tensors; tid2eid is an I32 table).
KEPT_TYPES: dict[str, dict[str, str]] = {
    "deepseek4": {"ffn_gate_inp.weight": "BF16", "ffn_gate_tid2eid.weight": "I32"},
}


def kept_type(arch: str, name: str) -> str:
    """The type a tensor llama.cpp never quantizes has in the converter's GGUF (F32 unless listed)."""
    for suffix, qtype in KEPT_TYPES.get(arch, {}).items():
        if name.endswith(suffix):
            return qtype
    return "F32"


def model_facts(config: dict[str, Any]) -> ModelFacts:
    """The model-level facts recipe conditions may use."""
    arch = gguf_arch(config)
    n_head = int(config["num_attention_heads"])
    # deepseek2's MLA is written as MQA (head_count_kv = 1)
    n_head_kv = 1 if arch in ONE_KV_HEAD else int(config.get("num_key_value_heads") or n_head)
    return ModelFacts(
        arch=arch,
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_expert=int(config.get("n_routed_experts") or config.get("num_local_experts") or 0),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def _sort_key(spec: Spec) -> tuple[int, str]:
    name = spec[0]
    block = block_index(name)
    return (-1 if block is None else block), name


def _globals(config: dict[str, Any], extra: list[Spec] = ()) -> list[Spec]:  # type: ignore[assignment]
    vocab, hidden = int(config["vocab_size"]), int(config["hidden_size"])
    specs: list[Spec] = [("token_embd.weight", (vocab, hidden)), ("output_norm.weight", (hidden,))]
    if not config.get("tie_word_embeddings", False):
        specs.append(("output.weight", (vocab, hidden)))
    return specs + list(extra)


def _dense_ffn(p: str, hidden: int, ff: int) -> list[Spec]:
    return [
        (f"{p}.ffn_gate.weight", (ff, hidden)),
        (f"{p}.ffn_up.weight", (ff, hidden)),
        (f"{p}.ffn_down.weight", (hidden, ff)),
    ]


def _deepseek2(config: dict[str, Any]) -> list[Spec]:
    hidden = int(config["hidden_size"])
    n_head = int(config["num_attention_heads"])
    q_lora = config.get("q_lora_rank")
    kv_lora = int(config["kv_lora_rank"])
    rope, nope, v_dim = (int(config[k]) for k in ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"))
    n_expert = int(config.get("n_routed_experts") or 0)
    n_shared = int(config.get("n_shared_experts") or 0)
    moe_ff = int(config.get("moe_intermediate_size") or 0)
    first_dense = int(config.get("first_k_dense_replace", 0 if n_expert else n_layer(config)))
    step = int(config.get("moe_layer_freq", 1))

    specs = _globals(config)
    for i in range(n_layer(config)):  # deepseek32: the MTP block too, built like the others
        p = f"blk.{i}"
        specs.append((f"{p}.attn_norm.weight", (hidden,)))
        if q_lora:
            specs += [
                (f"{p}.attn_q_a.weight", (int(q_lora), hidden)),
                (f"{p}.attn_q_a_norm.weight", (int(q_lora),)),
                (f"{p}.attn_q_b.weight", (n_head * (nope + rope), int(q_lora))),
            ]
        else:
            specs.append((f"{p}.attn_q.weight", (n_head * (nope + rope), hidden)))
        specs += [
            (f"{p}.attn_kv_a_mqa.weight", (kv_lora + rope, hidden)),
            (f"{p}.attn_kv_a_norm.weight", (kv_lora,)),
            (f"{p}.attn_k_b.weight", (n_head, kv_lora, nope)),
            (f"{p}.attn_v_b.weight", (n_head, v_dim, kv_lora)),
            (f"{p}.attn_output.weight", (hidden, n_head * v_dim)),
            (f"{p}.ffn_norm.weight", (hidden,)),
        ]
        if n_expert and i >= first_dense and i % step == 0:
            specs += [
                (f"{p}.ffn_gate_inp.weight", (n_expert, hidden)),
                (f"{p}.ffn_gate_exps.weight", (n_expert, moe_ff, hidden)),
                (f"{p}.ffn_up_exps.weight", (n_expert, moe_ff, hidden)),
                (f"{p}.ffn_down_exps.weight", (n_expert, hidden, moe_ff)),
            ]
            if config.get("topk_method") == "noaux_tc":
                specs.append((f"{p}.exp_probs_b.bias", (n_expert,)))
            if n_shared:
                ff = moe_ff * n_shared
                specs += [
                    (f"{p}.ffn_gate_shexp.weight", (ff, hidden)),
                    (f"{p}.ffn_up_shexp.weight", (ff, hidden)),
                    (f"{p}.ffn_down_shexp.weight", (hidden, ff)),
                ]
        else:
            specs += _dense_ffn(p, hidden, int(config["intermediate_size"]))
    return specs


def _deepseek32(config: dict[str, Any]) -> list[Spec]:
    hidden, vocab = int(config["hidden_size"]), int(config["vocab_size"])
    q_lora = int(config["q_lora_rank"])
    idx_heads, idx_dim = int(config["index_n_heads"]), int(config["index_head_dim"])
    main = int(config["num_hidden_layers"])
    specs = _deepseek2(config)
    for i in range(n_layer(config)):
        p = f"blk.{i}"
        specs += [
            (f"{p}.indexer.attn_q_b.weight", (idx_heads * idx_dim, q_lora)),
            (f"{p}.indexer.attn_k.weight", (idx_dim, hidden)),
            (f"{p}.indexer.k_norm.weight", (idx_dim,)),
            (f"{p}.indexer.k_norm.bias", (idx_dim,)),
            (f"{p}.indexer.proj.weight", (idx_heads, hidden)),
        ]
        if i >= main:  # the MTP layer: its own embedding, head and the two input norms
            specs += [
                (f"{p}.nextn.eh_proj.weight", (hidden, 2 * hidden)),
                (f"{p}.nextn.enorm.weight", (hidden,)),
                (f"{p}.nextn.hnorm.weight", (hidden,)),
                (f"{p}.nextn.embed_tokens.weight", (vocab, hidden)),
                (f"{p}.nextn.shared_head_head.weight", (vocab, hidden)),
                (f"{p}.nextn.shared_head_norm.weight", (hidden,)),
            ]
    return specs


def _deepseek4(config: dict[str, Any]) -> list[Spec]:
    hidden, vocab = int(config["hidden_size"]), int(config["vocab_size"])
    n_head, head_dim = int(config["num_attention_heads"]), int(config["head_dim"])
    q_lora = int(config["q_lora_rank"])
    o_groups, o_lora = int(config["o_groups"]), int(config["o_lora_rank"])
    hc = int(config["hc_mult"])
    hc_mix = (2 + hc) * hc  # pre, post and the hc x hc residual mix
    idx_heads, idx_dim = int(config["index_n_heads"]), int(config["index_head_dim"])
    n_expert, n_used = int(config["n_routed_experts"]), int(config["num_experts_per_tok"])
    moe_ff = int(config["moe_intermediate_size"])
    shared_ff = moe_ff * int(config["n_shared_experts"])
    ratios = [int(r) for r in config["compress_ratios"]]

    specs = _globals(config, [
        ("output_hc_fn.weight", (hc, hc * hidden)),
        ("output_hc_base.weight", (hc,)),
        ("output_hc_scale.weight", (1,)),
    ])
    for i in range(n_layer(config)):
        p = f"blk.{i}"
        specs += [
            (f"{p}.attn_norm.weight", (hidden,)),
            (f"{p}.attn_sinks.weight", (n_head,)),
            (f"{p}.attn_q_a.weight", (q_lora, hidden)),
            (f"{p}.attn_q_a_norm.weight", (q_lora,)),
            (f"{p}.attn_q_b.weight", (n_head * head_dim, q_lora)),
            (f"{p}.attn_kv.weight", (head_dim, hidden)),
            (f"{p}.attn_kv_a_norm.weight", (head_dim,)),
            # written 2-D; the loader views it as (o_groups, o_lora, n_head * head_dim / o_groups)
            (f"{p}.attn_output_a.weight", (o_groups * o_lora, n_head * head_dim // o_groups)),
            (f"{p}.attn_output_b.weight", (hidden, o_groups * o_lora)),
        ]
        for where in ("attn", "ffn"):
            specs += [
                (f"{p}.hc_{where}_fn.weight", (hc_mix, hc * hidden)),
                (f"{p}.hc_{where}_base.weight", (hc_mix,)),
                (f"{p}.hc_{where}_scale.weight", (3,)),
            ]
        ratio = ratios[i]
        if ratio:
            width = (2 if ratio == 4 else 1) * head_dim  # ratio 4 compresses overlapping windows
            specs += [
                (f"{p}.attn_compressor_kv.weight", (width, hidden)),
                (f"{p}.attn_compressor_gate.weight", (width, hidden)),
                (f"{p}.attn_compressor_ape.weight", (ratio, width)),
                (f"{p}.attn_compressor_norm.weight", (head_dim,)),
            ]
        if ratio == 4:
            specs += [
                (f"{p}.indexer.proj.weight", (idx_heads, hidden)),
                (f"{p}.indexer.attn_q_b.weight", (idx_heads * idx_dim, q_lora)),
                (f"{p}.indexer_compressor_kv.weight", (2 * idx_dim, hidden)),
                (f"{p}.indexer_compressor_gate.weight", (2 * idx_dim, hidden)),
                (f"{p}.indexer_compressor_ape.weight", (ratio, 2 * idx_dim)),
                (f"{p}.indexer_compressor_norm.weight", (idx_dim,)),
            ]
        specs.append((f"{p}.ffn_gate_inp.weight", (n_expert, hidden)))
        if i < int(config["num_hash_layers"]):
            specs.append((f"{p}.ffn_gate_tid2eid.weight", (vocab, n_used)))
        else:
            specs.append((f"{p}.exp_probs_b.bias", (n_expert,)))
        specs += [
            (f"{p}.ffn_norm.weight", (hidden,)),
            (f"{p}.ffn_gate_exps.weight", (n_expert, moe_ff, hidden)),
            (f"{p}.ffn_up_exps.weight", (n_expert, moe_ff, hidden)),
            (f"{p}.ffn_down_exps.weight", (n_expert, hidden, moe_ff)),
            (f"{p}.ffn_gate_shexp.weight", (shared_ff, hidden)),
            (f"{p}.ffn_up_shexp.weight", (shared_ff, hidden)),
            (f"{p}.ffn_down_shexp.weight", (hidden, shared_ff)),
        ]
    return specs


def _llama_like(config: dict[str, Any], *, qkv_bias: bool) -> list[Spec]:
    hidden = int(config["hidden_size"])
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    head_dim = int(config.get("head_dim") or hidden // n_head)
    extra: list[Spec] = []
    rope_scaling = config.get("rope_scaling") or {}
    if (rope_scaling.get("rope_type") or rope_scaling.get("type")) == "llama3":
        extra.append(("rope_freqs.weight", (head_dim // 2,)))  # converter-computed llama3 rope factors
    specs = _globals(config, extra)
    for i in range(n_layer(config)):
        p = f"blk.{i}"
        specs += [
            (f"{p}.attn_norm.weight", (hidden,)),
            (f"{p}.attn_q.weight", (n_head * head_dim, hidden)),
            (f"{p}.attn_k.weight", (n_head_kv * head_dim, hidden)),
            (f"{p}.attn_v.weight", (n_head_kv * head_dim, hidden)),
            (f"{p}.attn_output.weight", (hidden, n_head * head_dim)),
            (f"{p}.ffn_norm.weight", (hidden,)),
        ]
        if qkv_bias:
            specs += [
                (f"{p}.attn_q.bias", (n_head * head_dim,)),
                (f"{p}.attn_k.bias", (n_head_kv * head_dim,)),
                (f"{p}.attn_v.bias", (n_head_kv * head_dim,)),
            ]
        specs += _dense_ffn(p, hidden, int(config["intermediate_size"]))
    return specs


_BUILDERS: dict[str, Callable[[dict[str, Any]], list[Spec]]] = {
    "deepseek2": _deepseek2,
    "deepseek32": _deepseek32,
    "deepseek4": _deepseek4,
    "llama": lambda c: _llama_like(c, qkv_bias=False),
    "qwen2": lambda c: _llama_like(c, qkv_bias=True),
}


def tensor_specs(config: dict[str, Any]) -> list[Spec]:
    """[(gguf_name, shape)] of the model's GGUF file, in llama.cpp's quantization order."""
    return sorted(_BUILDERS[gguf_arch(config)](config), key=_sort_key)
