"""Tiny random DeepSeek-V4 checkpoints (``DeepseekV4ForCausalLM``), for tests against llama.cpp.

What a V4 release holds, at toy size, under the names llama.cpp's ``DeepseekV4Model`` reads
(DeepSeek's own inference naming, no ``model.`` prefix): ``embed``/``head``/``norm``, the
hyper-connection mixers (``hc_head_*``; per block ``hc_attn_*``, ``hc_ffn_*``), attention
with low-rank q, one KV head, grouped low-rank output and sinks, a KV compressor where
``compress_ratios[i]`` is non-zero and an indexer with its own compressor where it is 4,
token-id hash routing (``ffn.gate.tid2eid``) in the first ``num_hash_layers`` blocks and a
router bias in the others, a shared expert, and routed experts stored as MXFP4 (``w1``/``w2``/
``w3``: uint8 pairs of e2m1 codes, low nibble first, and one E8M0 exponent per 32 weights).

Storage types follow what llama.cpp's converter distinguishes: the linear layers of attention
and the shared expert are FP8 e4m3 with one power-of-two (E8M0) ``.scale`` per 128x128 tile;
the router, embeddings, head, compressor projections and the indexer's head weights BF16;
the hyper-connection tensors, sinks, compressor positions (``ape``), norms and router bias F32.
Which of these the published checkpoint stores in which type is UNVERIFIED (no network here).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from quant.sources import FP8_BLOCK
from quant.tiny import BOS, EOS, TinySpec, _ShardWriter, tokenizer_files


@dataclass
class TinyV4Spec:
    vocab_size: int = 384
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    head_dim: int = 128
    qk_rope_head_dim: int = 64
    q_lora_rank: int = 256
    o_groups: int = 2
    o_lora_rank: int = 128
    hc_mult: int = 4  # llama.cpp's deepseek4 graph asserts 4
    index_n_heads: int = 2
    index_head_dim: int = 128
    index_topk: int = 64
    n_routed_experts: int = 3
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 256
    n_shared_experts: int = 1
    num_hash_layers: int = 1
    # one entry per block, then the MTP layer's (as the published configs)
    compress_ratios: list[int] = field(default_factory=lambda: [0, 4, 128, 4, 0])
    sliding_window: int = 128
    n_merges: int = 100
    seed: int = 0
    max_shard_bytes: int = 8 << 20


def config_dict(spec: TinyV4Spec, tokenizer: dict) -> dict:
    ids = {a["content"]: a["id"] for a in tokenizer["added_tokens"]}
    return {
        "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4",
        "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": ids[BOS], "eos_token_id": ids[EOS],
        "compress_ratios": list(spec.compress_ratios), "compress_rope_theta": 160000, "expert_dtype": "fp4",
        "hc_eps": 1e-06, "hc_mult": spec.hc_mult, "hc_sinkhorn_iters": 20, "head_dim": spec.head_dim,
        "hidden_act": "silu", "hidden_size": spec.hidden_size, "index_head_dim": spec.index_head_dim,
        "index_n_heads": spec.index_n_heads, "index_topk": spec.index_topk, "initializer_range": 0.02,
        "max_position_embeddings": 1048576, "moe_intermediate_size": spec.moe_intermediate_size,
        "n_routed_experts": spec.n_routed_experts, "n_shared_experts": spec.n_shared_experts, "norm_topk_prob": True,
        "num_attention_heads": spec.num_attention_heads, "num_experts_per_tok": spec.num_experts_per_tok,
        "num_hash_layers": spec.num_hash_layers, "num_hidden_layers": spec.num_hidden_layers,
        "num_key_value_heads": 1, "num_nextn_predict_layers": len(spec.compress_ratios) - spec.num_hidden_layers,
        "o_groups": spec.o_groups, "o_lora_rank": spec.o_lora_rank, "q_lora_rank": spec.q_lora_rank,
        "qk_rope_head_dim": spec.qk_rope_head_dim,
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                "scale_fmt": "ue8m0", "weight_block_size": list(FP8_BLOCK)},
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 16, "original_max_position_embeddings": 65536,
                         "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 1.5, "scoring_func": "sqrtsoftplus",
        "sliding_window": spec.sliding_window, "swiglu_limit": 10.0, "tie_word_embeddings": False,
        "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": spec.vocab_size,
    }


# (name, shape, storage): storage is "fp8", "bf16", "f32", "mxfp4" or "i32"
Spec = tuple[str, tuple[int, ...], str]


def tensor_specs(spec: TinyV4Spec) -> Iterator[Spec]:
    H, V, hc = spec.hidden_size, spec.vocab_size, spec.hc_mult
    hc_mix = (2 + hc) * hc
    n_head, hd = spec.num_attention_heads, spec.head_dim
    yield "embed.weight", (V, H), "bf16"
    for i in range(spec.num_hidden_layers):
        p = f"layers.{i}."
        for where in ("attn", "ffn"):
            yield p + f"hc_{where}_fn", (hc_mix, hc * H), "f32"
            yield p + f"hc_{where}_base", (hc_mix,), "f32"
            yield p + f"hc_{where}_scale", (3,), "f32"
        yield p + "attn_norm.weight", (H,), "f32"
        yield p + "attn.attn_sink", (n_head,), "f32"
        yield p + "attn.wq_a.weight", (spec.q_lora_rank, H), "fp8"
        yield p + "attn.q_norm.weight", (spec.q_lora_rank,), "f32"
        yield p + "attn.wq_b.weight", (n_head * hd, spec.q_lora_rank), "fp8"
        yield p + "attn.wkv.weight", (hd, H), "fp8"
        yield p + "attn.kv_norm.weight", (hd,), "f32"
        yield p + "attn.wo_a.weight", (spec.o_groups * spec.o_lora_rank, n_head * hd // spec.o_groups), "fp8"
        yield p + "attn.wo_b.weight", (H, spec.o_groups * spec.o_lora_rank), "fp8"
        ratio = spec.compress_ratios[i]
        if ratio:
            width = (2 if ratio == 4 else 1) * hd
            yield p + "attn.compressor.ape", (ratio, width), "f32"
            yield p + "attn.compressor.wkv.weight", (width, H), "bf16"
            yield p + "attn.compressor.wgate.weight", (width, H), "bf16"
            yield p + "attn.compressor.norm.weight", (hd,), "f32"
        if ratio == 4:
            idx = spec.index_head_dim
            yield p + "attn.indexer.wq_b.weight", (spec.index_n_heads * idx, spec.q_lora_rank), "fp8"
            yield p + "attn.indexer.weights_proj.weight", (spec.index_n_heads, H), "bf16"
            yield p + "attn.indexer.compressor.ape", (ratio, 2 * idx), "f32"
            yield p + "attn.indexer.compressor.wkv.weight", (2 * idx, H), "bf16"
            yield p + "attn.indexer.compressor.wgate.weight", (2 * idx, H), "bf16"
            yield p + "attn.indexer.compressor.norm.weight", (idx,), "f32"
        yield p + "ffn_norm.weight", (H,), "f32"
        yield p + "ffn.gate.weight", (spec.n_routed_experts, H), "bf16"
        if i < spec.num_hash_layers:
            yield p + "ffn.gate.tid2eid", (V, spec.num_experts_per_tok), "i32"
        else:
            yield p + "ffn.gate.bias", (spec.n_routed_experts,), "f32"
        ff = spec.moe_intermediate_size
        for e in range(spec.n_routed_experts):
            yield p + f"ffn.experts.{e}.w1.weight", (ff, H), "mxfp4"
            yield p + f"ffn.experts.{e}.w2.weight", (H, ff), "mxfp4"
            yield p + f"ffn.experts.{e}.w3.weight", (ff, H), "mxfp4"
        sff = ff * spec.n_shared_experts
        yield p + "ffn.shared_experts.w1.weight", (sff, H), "fp8"
        yield p + "ffn.shared_experts.w2.weight", (H, sff), "fp8"
        yield p + "ffn.shared_experts.w3.weight", (sff, H), "fp8"
    yield "norm.weight", (H,), "f32"
    yield "head.weight", (V, H), "bf16"
    yield "hc_head_fn", (hc, hc * H), "f32"
    yield "hc_head_base", (hc,), "f32"
    yield "hc_head_scale", (1,), "f32"


def fp8_e8m0(w: torch.Tensor, block: tuple[int, int] = FP8_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """FP8 e4m3 tiles with one power-of-two scale each, stored as E8M0 (float8_e8m0fnu)."""
    rows, cols = w.shape
    br, bc = block
    nr, nc = -(-rows // br), -(-cols // bc)
    pad = torch.zeros(nr * br, nc * bc)
    pad[:rows, :cols] = w.float()
    tiles = pad.view(nr, br, nc, bc)
    exp = torch.ceil(torch.log2(tiles.abs().amax(dim=(1, 3)).clamp(min=1e-30) / 448.0))
    scale = torch.exp2(exp)
    q = (tiles / scale[:, None, :, None]).view(nr * br, nc * bc)[:rows, :cols]
    return q.to(torch.float8_e4m3fn), (exp + 127).to(torch.uint8).view(torch.float8_e8m0fnu)


def mxfp4_random(rows: int, cols: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random MXFP4 weights: uint8 [rows, cols/2] code pairs (element 2i low nibble) and E8M0
    exponents [rows, cols/32] around 2**-5 (typical of a weight's scale)."""
    codes = torch.randint(0, 256, (rows, cols // 2), generator=gen, dtype=torch.int32).to(torch.uint8)
    exps = torch.randint(118, 125, (rows, cols // 32), generator=gen, dtype=torch.int32).to(torch.uint8)
    return codes, exps.view(torch.float8_e8m0fnu)


def make_tiny_v4(out_dir: "str | Path", spec: "TinyV4Spec | None" = None) -> Path:
    """Write a tiny DeepSeek-V4 checkpoint to out_dir (created); returns its path."""
    spec = spec or TinyV4Spec()
    if len(spec.compress_ratios) < spec.num_hidden_layers:
        raise ValueError("compress_ratios needs an entry per block")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(spec.seed)
    w = _ShardWriter(out, spec.max_shard_bytes)
    for name, shape, storage in tensor_specs(spec):
        if storage == "mxfp4":
            codes, scale = mxfp4_random(shape[0], shape[1], gen)
            w.add(name, codes)
            w.add(name.removesuffix(".weight") + ".scale", scale)
            continue
        if storage == "i32":
            w.add(name, torch.randint(0, spec.n_routed_experts, shape, generator=gen, dtype=torch.int32))
            continue
        if name.endswith("norm.weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith(("_scale", "_base", ".ape", "attn_sink", "gate.bias")):
            t = 0.1 * torch.randn(shape, generator=gen)
        elif name == "embed.weight":
            t = torch.randn(shape, generator=gen)
        else:
            t = torch.randn(shape, generator=gen) / math.sqrt(shape[-1])
        if storage == "fp8":
            q, s = fp8_e8m0(t.to(torch.bfloat16).float())
            w.add(name, q)
            w.add(name.removesuffix(".weight") + ".scale", s)
        else:
            w.add(name, t.to(torch.bfloat16 if storage == "bf16" else torch.float32))
    w.finish()
    files = tokenizer_files(TinySpec(vocab_size=spec.vocab_size, n_merges=spec.n_merges))
    config = config_dict(spec, files["tokenizer.json"])
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for fname, data in files.items():
        (out / fname).write_text(json.dumps(data, indent=2, ensure_ascii=False))
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": config["bos_token_id"],
                                                            "eos_token_id": config["eos_token_id"]}))
    (out / "dsq-tiny.json").write_text(json.dumps({"spec": asdict(spec)}, indent=2))
    return out
