"""Tiny random DeepSeek-V3-architecture checkpoints, for demos, tests and benchmarks.

``make_tiny(DIR)`` writes what a real DeepSeek-V3 release holds, at toy size: a
``config.json`` in DeepSeek's own style (YaRN ``rope_scaling``, ``scoring_func:
sigmoid``, ``topk_method: noaux_tc``), BF16 (or FP8 with 128x128 ``weight_scale_inv``
tiles) safetensors shards with ``model.safetensors.index.json``, one routed expert per
tensor name, the multi-token-prediction layer after the last block, and a small
byte-level BPE ``tokenizer.json`` with DeepSeek-V3's pre-tokenizer.

Weights are drawn tensor by tensor from a seeded generator (N(0, 1/fan_in), norms near 1),
so the output is deterministic and writing a large "tiny" model needs no more memory than
one tensor. Transformers' ``DeepseekV3ForCausalLM.from_pretrained`` loads the result.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch

from quant.sources import FP8_BLOCK, fp8_dequant
from quant.vocab import pre_tokenizer_json

#: The trained tiny MoE (``python -m quant.train_tiny``), committed: what `make demo` and
#: `make bench-quality` quantize. The random models below are for tests that need arbitrary shapes.
TRAINED_DIR = Path(__file__).parent / "data" / "tiny-moe"

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"

CORPUS = (
    "The quick brown fox jumps over the lazy dog. A tiny model is still a model: it has "
    "embeddings, attention with low-rank queries and a compressed key-value cache, and a "
    "mixture of experts where each token is routed to a few of many feed-forward networks. "
    "Quantization stores each weight in fewer bits, and an importance matrix tells the "
    "quantizer which columns matter most. Numbers like 3.14159, 2024 and 1000000 appear too. "
    "def hello(world):\n    return world + 1\n"
)


@dataclass
class TinySpec:
    """Shapes of the tiny model (defaults: every row length a multiple of 256 except the
    per-head ones, as in the real model)."""

    vocab_size: int = 1024
    hidden_size: int = 256
    intermediate_size: int = 512
    moe_intermediate_size: int = 256
    num_hidden_layers: int = 4
    first_k_dense_replace: int = 1
    num_attention_heads: int = 4
    q_lora_rank: "int | None" = 256
    kv_lora_rank: int = 256
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    n_routed_experts: int = 16
    num_experts_per_tok: int = 4
    n_group: int = 4
    topk_group: int = 2
    n_shared_experts: int = 1
    routed_scaling_factor: float = 2.5
    num_nextn_predict_layers: int = 1
    n_merges: int = 300
    seed: int = 0
    max_shard_bytes: int = 8 << 20
    tie_word_embeddings: bool = False
    # DeepSeek-V3.2 (DeepseekV32ForCausalLM): set index_n_heads to add the lightning indexer to
    # every block (the MTP layer's too) and write V3.2's config.json
    index_n_heads: "int | None" = None
    index_head_dim: int = 128
    index_topk: int = 64
    # FP8 tile scales rounded up to powers of two, stored as float32 (V3.1/V3.2's scale_fmt "ue8m0"):
    # every FP8 weight times its scale is then exact in BF16
    ue8m0: bool = False


# -- tokenizer ------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def train_bpe(text: str, n_merges: int) -> tuple[dict[str, int], list[str]]:
    """A deterministic byte-level BPE: most frequent pair first, ties broken by the pair.

    Pair counts are kept up to date incrementally (only the words holding the merged pair are
    re-read), so a megabyte of training text takes seconds rather than minutes.
    """
    table = bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    counts = Counter(re.findall(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+", text))
    words = list(counts)
    freq = [counts[w] for w in words]
    seqs = [[table[b] for b in w.encode()] for w in words]
    pairs: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            pairs[pair] += freq[i]
            where.setdefault(pair, set()).add(i)
    merges: list[str] = []
    for _ in range(n_merges):
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(f"{best[0]} {best[1]}")
        vocab[best[0] + best[1]] = len(vocab)
        for i in sorted(where.pop(best, ())):
            seq = seqs[i]
            for pair in zip(seq, seq[1:]):
                pairs[pair] -= freq[i]
                if pairs[pair] <= 0:
                    del pairs[pair]
            out, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and (seq[j], seq[j + 1]) == best:
                    out.append(seq[j] + seq[j + 1])
                    j += 2
                else:
                    out.append(seq[j])
                    j += 1
            seqs[i] = out
            for pair in zip(out, out[1:]):
                pairs[pair] += freq[i]
                where.setdefault(pair, set()).add(i)
    return vocab, merges


def tokenizer_files(spec: TinySpec, corpus: str = CORPUS) -> dict[str, dict]:
    """tokenizer.json and tokenizer_config.json contents for the tiny model, BPE trained on corpus."""
    vocab, merges = train_bpe(corpus, spec.n_merges)
    specials = [BOS, EOS, PAD]
    added = []
    for s in specials:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
        vocab[s] = len(vocab)
    if len(vocab) > spec.vocab_size:
        raise ValueError(f"tokenizer has {len(vocab)} tokens, more than vocab_size {spec.vocab_size}")
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer_json("deepseek-v3"),
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [vocab[BOS]], "tokens": [BOS]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": 16384,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
    }
    return {"tokenizer.json": tok, "tokenizer_config.json": cfg}


# -- config and tensors -------------------------------------------------------------------------------


def config_dict(spec: TinySpec, fp8: bool = False, tokenizer: "dict | None" = None) -> dict:
    """config.json in the style of deepseek-ai/DeepSeek-V3's (tokenizer: tokenizer.json's contents,
    for the special tokens' ids; default: the one tokenizer_files(spec) makes)."""
    tok = tokenizer or tokenizer_files(spec)["tokenizer.json"]
    ids = {a["content"]: a["id"] for a in tok["added_tokens"]}
    cfg = {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS],
        "ep_size": 1,
        "first_k_dense_replace": spec.first_k_dense_replace,
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": spec.intermediate_size,
        "kv_lora_rank": spec.kv_lora_rank,
        "max_position_embeddings": 163840,
        "moe_intermediate_size": spec.moe_intermediate_size,
        "moe_layer_freq": 1,
        "n_group": spec.n_group,
        "n_routed_experts": spec.n_routed_experts,
        "n_shared_experts": spec.n_shared_experts,
        "norm_topk_prob": True,
        "num_attention_heads": spec.num_attention_heads,
        "num_experts_per_tok": spec.num_experts_per_tok,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_key_value_heads": spec.num_attention_heads,
        "num_nextn_predict_layers": spec.num_nextn_predict_layers,
        "q_lora_rank": spec.q_lora_rank,
        "qk_nope_head_dim": spec.qk_nope_head_dim,
        "qk_rope_head_dim": spec.qk_rope_head_dim,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 40,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 4096,
            "type": "yarn",
        },
        "rope_theta": 10000,
        "routed_scaling_factor": spec.routed_scaling_factor,
        "scoring_func": "sigmoid",
        "tie_word_embeddings": spec.tie_word_embeddings,
        "topk_group": spec.topk_group,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "v_head_dim": spec.v_head_dim,
        "vocab_size": spec.vocab_size,
    }
    if spec.index_n_heads is not None:
        cfg.update({
            "architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32",
            "index_n_heads": spec.index_n_heads, "index_head_dim": spec.index_head_dim, "index_topk": spec.index_topk,
        })
    if fp8:
        cfg["quantization_config"] = {
            "activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": list(FP8_BLOCK),
        }
        if spec.ue8m0:
            cfg["quantization_config"]["scale_fmt"] = "ue8m0"
    return cfg


def _layer_tensors(spec: TinySpec, i: int, moe: bool) -> Iterator[tuple[str, tuple[int, ...]]]:
    H, p = spec.hidden_size, f"model.layers.{i}."
    qk = spec.qk_nope_head_dim + spec.qk_rope_head_dim
    yield p + "input_layernorm.weight", (H,)
    if spec.q_lora_rank is not None:
        yield p + "self_attn.q_a_proj.weight", (spec.q_lora_rank, H)
        yield p + "self_attn.q_a_layernorm.weight", (spec.q_lora_rank,)
        yield p + "self_attn.q_b_proj.weight", (spec.num_attention_heads * qk, spec.q_lora_rank)
    else:
        yield p + "self_attn.q_proj.weight", (spec.num_attention_heads * qk, H)
    yield p + "self_attn.kv_a_proj_with_mqa.weight", (spec.kv_lora_rank + spec.qk_rope_head_dim, H)
    yield p + "self_attn.kv_a_layernorm.weight", (spec.kv_lora_rank,)
    yield p + "self_attn.kv_b_proj.weight", (spec.num_attention_heads * (spec.qk_nope_head_dim + spec.v_head_dim), spec.kv_lora_rank)
    yield p + "self_attn.o_proj.weight", (H, spec.num_attention_heads * spec.v_head_dim)
    if spec.index_n_heads is not None:  # V3.2's lightning indexer (names as in DeepSeek-V3.2-Exp's release)
        q_lora = spec.q_lora_rank if spec.q_lora_rank is not None else H
        yield p + "self_attn.indexer.wq_b.weight", (spec.index_n_heads * spec.index_head_dim, q_lora)
        yield p + "self_attn.indexer.wk.weight", (spec.index_head_dim, H)
        yield p + "self_attn.indexer.k_norm.weight", (spec.index_head_dim,)
        yield p + "self_attn.indexer.k_norm.bias", (spec.index_head_dim,)
        yield p + "self_attn.indexer.weights_proj.weight", (spec.index_n_heads, H)
    yield p + "post_attention_layernorm.weight", (H,)
    if not moe:
        I = spec.intermediate_size
        yield p + "mlp.gate_proj.weight", (I, H)
        yield p + "mlp.up_proj.weight", (I, H)
        yield p + "mlp.down_proj.weight", (H, I)
        return
    I = spec.moe_intermediate_size
    yield p + "mlp.gate.weight", (spec.n_routed_experts, H)
    yield p + "mlp.gate.e_score_correction_bias", (spec.n_routed_experts,)
    for e in range(spec.n_routed_experts):
        yield p + f"mlp.experts.{e}.gate_proj.weight", (I, H)
        yield p + f"mlp.experts.{e}.up_proj.weight", (I, H)
        yield p + f"mlp.experts.{e}.down_proj.weight", (H, I)
    S = I * spec.n_shared_experts
    yield p + "mlp.shared_experts.gate_proj.weight", (S, H)
    yield p + "mlp.shared_experts.up_proj.weight", (S, H)
    yield p + "mlp.shared_experts.down_proj.weight", (H, S)


def tensor_specs(spec: TinySpec) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(HF name, shape) of every tensor, in the order they are written."""
    H, V = spec.hidden_size, spec.vocab_size
    yield "model.embed_tokens.weight", (V, H)
    for i in range(spec.num_hidden_layers):
        yield from _layer_tensors(spec, i, moe=i >= spec.first_k_dense_replace)
    yield "model.norm.weight", (H,)
    if not spec.tie_word_embeddings:
        yield "lm_head.weight", (V, H)
    for j in range(spec.num_nextn_predict_layers):
        i = spec.num_hidden_layers + j
        p = f"model.layers.{i}."
        yield p + "embed_tokens.weight", (V, H)
        yield p + "enorm.weight", (H,)
        yield p + "hnorm.weight", (H,)
        yield p + "eh_proj.weight", (H, 2 * H)
        yield from _layer_tensors(spec, i, moe=True)
        yield p + "shared_head.norm.weight", (H,)
        yield p + "shared_head.head.weight", (V, H)


def _is_fp8_weight(name: str, shape: tuple[int, ...]) -> bool:
    """Which tensors DeepSeek-V3 stores in FP8: the linear layers inside the blocks."""
    return (
        len(shape) == 2
        and (name.endswith("proj.weight") or name.endswith(("indexer.wq_b.weight", "indexer.wk.weight")))
        and ".layers." in name
        and "embed_tokens" not in name
        and not name.endswith("indexer.weights_proj.weight")  # V3.2 keeps the indexer's head weights in BF16
    )


def random_tensor(name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if name.endswith("norm.weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    if name.endswith("norm.bias"):
        return 0.05 * torch.randn(shape, generator=gen)
    if name.endswith("e_score_correction_bias"):
        return 0.05 * torch.randn(shape, generator=gen)
    if "embed_tokens" in name:
        return torch.randn(shape, generator=gen)
    return torch.randn(shape, generator=gen) / math.sqrt(shape[-1])


def fp8_quantize(w: torch.Tensor, block: tuple[int, int] = FP8_BLOCK, ue8m0: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tile FP8 e4m3 quantization as in DeepSeek's checkpoints: w ~= fp8 * scale_inv
    (ue8m0: each scale rounded up to a power of two, as V3.1/V3.2's are)."""
    rows, cols = w.shape
    br, bc = block
    nr, nc = -(-rows // br), -(-cols // bc)
    pad = torch.zeros(nr * br, nc * bc, dtype=torch.float32)
    pad[:rows, :cols] = w.float()
    tiles = pad.view(nr, br, nc, bc)
    amax = tiles.abs().amax(dim=(1, 3)).clamp(min=1e-12)
    scale = amax / 448.0
    if ue8m0:
        scale = torch.exp2(torch.ceil(torch.log2(scale)))
    q = (tiles / scale[:, None, :, None]).view(nr * br, nc * bc)[:rows, :cols]
    return q.to(torch.float8_e4m3fn), scale.to(torch.float32)


def _dtype_name(t: torch.Tensor) -> str:
    return {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16", torch.float8_e4m3fn: "F8_E4M3"}[t.dtype]


class _ShardWriter:
    """Streams tensors into safetensors shards of about max_bytes, one tensor in memory."""

    def __init__(self, out: Path, max_bytes: int):
        self.out, self.max_bytes = out, max_bytes
        self.shards: list[list[tuple[str, torch.Tensor]]] = []
        self.pending: list[tuple[str, torch.Tensor]] = []
        self.pending_bytes = 0
        self.index: dict[str, str] = {}
        self.n = 0

    def add(self, name: str, t: torch.Tensor) -> None:
        nbytes = t.numel() * t.element_size()
        if self.pending and self.pending_bytes + nbytes > self.max_bytes:
            self.flush()
        self.pending.append((name, t.contiguous()))
        self.pending_bytes += nbytes

    def flush(self) -> None:
        if not self.pending:
            return
        from safetensors.torch import save_file

        self.n += 1
        fname = f"model-{self.n:05d}.safetensors"
        save_file(dict(self.pending), str(self.out / fname), metadata={"format": "pt"})
        for name, _ in self.pending:
            self.index[name] = fname
        self.pending, self.pending_bytes = [], 0

    def finish(self) -> None:
        self.flush()
        # rename to the -of-N form a release uses
        total = self.n
        renamed = {}
        for i in range(1, total + 1):
            old = self.out / f"model-{i:05d}.safetensors"
            new = f"model-{i:05d}-of-{total:05d}.safetensors"
            old.rename(self.out / new)
            renamed[f"model-{i:05d}.safetensors"] = new
        weight_map = {k: renamed[v] for k, v in self.index.items()}
        size = sum((self.out / f).stat().st_size for f in set(weight_map.values()))
        (self.out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": size}, "weight_map": dict(sorted(weight_map.items()))}, indent=2)
        )


def make_tiny(out_dir: "str | Path", spec: "TinySpec | None" = None, fp8: bool = False) -> Path:
    """Write a tiny DeepSeek-V3 checkpoint to out_dir (created); returns its path."""
    spec = spec or TinySpec()
    gen = torch.Generator().manual_seed(spec.seed)
    tensors = ((name, random_tensor(name, shape, gen)) for name, shape in tensor_specs(spec))
    return write_checkpoint(out_dir, spec, tensors, fp8=fp8)


def write_checkpoint(out_dir: "str | Path", spec: TinySpec, tensors: "Iterable[tuple[str, torch.Tensor]]",
                     fp8: bool = False, corpus: str = CORPUS, extra: "dict | None" = None) -> Path:
    """A DeepSeek-V3-style release of these tensors (HF names, float): BF16 shards (FP8 tiles when
    fp8) with the index, config.json, the tokenizer trained on corpus, generation_config.json and
    dsq-tiny.json (the spec, plus extra). The random and the trained tiny models both go through
    here, so they convert through the same pipeline."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.safetensors"):
        old.unlink()
    w = _ShardWriter(out, spec.max_shard_bytes)
    for name, t in tensors:
        if name.endswith("e_score_correction_bias"):
            w.add(name, t.float())
        elif fp8 and _is_fp8_weight(name, tuple(t.shape)):
            q, s = fp8_quantize(t.to(torch.bfloat16).float(), ue8m0=spec.ue8m0)
            w.add(name, q)
            w.add(name + "_scale_inv", s)
        else:
            w.add(name, t.to(torch.bfloat16))
    w.finish()
    files = tokenizer_files(spec, corpus)
    config = config_dict(spec, fp8, files["tokenizer.json"])
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for fname, data in files.items():
        (out / fname).write_text(json.dumps(data, indent=2, ensure_ascii=False))
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": config["bos_token_id"],
                                                            "eos_token_id": config["eos_token_id"]}))
    (out / "dsq-tiny.json").write_text(json.dumps({"spec": asdict(spec), "fp8": fp8, **(extra or {})}, indent=2))
    return out


def dequantize_fp8_checkpoint(src_dir: "str | Path", out_dir: "str | Path") -> Path:
    """DeepSeek's fp8_cast_bf16 for a checkpoint directory: every FP8 weight times its tile
    scales, in bf16; scales dropped; quantization_config removed from config.json."""
    from safetensors.torch import save_file

    from quant.sources import HFSource

    src = HFSource(src_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    files = sorted({t.file for t in src.tensors.values()})
    for f in files:
        tensors = {}
        for name, t in src.tensors.items():
            if t.file != f or src.is_scale(name):
                continue
            if t.dtype == "F8_E4M3":
                tensors[name] = fp8_dequant(src.raw(name), src.raw(name + "_scale_inv"), src.fp8_block).to(torch.bfloat16)
            else:
                tensors[name] = src.raw(name).clone()
            weight_map[name] = f.name
        save_file(tensors, str(out / f.name), metadata={"format": "pt"})
    cfg = dict(src.config)
    cfg.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
    for extra in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if (Path(src_dir) / extra).is_file():
            (out / extra).write_bytes((Path(src_dir) / extra).read_bytes())
    return out
