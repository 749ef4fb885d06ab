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
        f"architectures={config.get('architectures')!r}; supported: deepseek2, llama, qwen2"
    )


def n_layer(config: dict[str, Any]) -> int:
    """Blocks in the GGUF file (DeepSeek's MTP layers are not written)."""
    return int(config["num_hidden_layers"])


def model_facts(config: dict[str, Any]) -> ModelFacts:
    """The model-level facts recipe conditions may use."""
    arch = gguf_arch(config)
    n_head = int(config["num_attention_heads"])
    # deepseek2's MLA is written as MQA (head_count_kv = 1)
    n_head_kv = 1 if arch == "deepseek2" else int(config.get("num_key_value_heads") or n_head)
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
    for i in range(n_layer(config)):
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
    "llama": lambda c: _llama_like(c, qkv_bias=False),
    "qwen2": lambda c: _llama_like(c, qkv_bias=True),
}


def tensor_specs(config: dict[str, Any]) -> list[Spec]:
    """[(gguf_name, shape)] of the model's GGUF file, in llama.cpp's quantization order."""
    return sorted(_BUILDERS[gguf_arch(config)](config), key=_sort_key)
