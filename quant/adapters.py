"""Architecture adapters: source tensors -> GGUF tensors and metadata, as convert_hf_to_gguf does.

An adapter looks only at the source's tensor names, shapes and config to produce the list
of output tensors (the plan); each output tensor carries a lazy ``slabs()`` generator that
reads its source rows when the writer gets to it. Nothing is buffered between tensors:
stacked experts are read expert by expert (each expert's matrix is a run of rows of the 3-D
tensor), so a 256-expert layer never sits in memory whole.

The "buffers that must drain" of llama.cpp's converter become checks at plan time: every
source tensor must be claimed by exactly one output tensor or be knowingly dropped (MTP
layers, tied lm_head, rotary caches, FP8 scales that travel with their weight), and every
expert group must be complete -- an expert that never arrived is an error naming it.

Architectures: deepseek2 (DeepSeek-V2/V3, incl. FP8 checkpoints), deepseek32 (V3.2: deepseek2
plus the lightning indexer, MTP block kept), deepseek4 (V4: FP8 with E8M0 scales, MXFP4 experts
read as stored; see :class:`DeepSeek4Adapter`), llama (q/k permuted for ggml's rope), qwen2. GGUF inputs go through :class:`GGUFPassthrough`.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterator

import gguf
import torch

from quant.recipes import block_index
from quant.sources import GGUFSource, HFSource, SourceError
from quant.vocab import add_vocab

# rows of float32 read and quantized at a time: 64 MiB
SLAB_WEIGHTS = 1 << 24


@dataclass
class Slab:
    """Rows of an output tensor, float32 [rows, n_per_row]; expert = index of the 3-D slice
    (the first one, when the slab holds `experts` whole consecutive slices)."""

    expert: int
    data: torch.Tensor
    experts: int = 1


@dataclass
class OutTensor:
    name: str
    shape: tuple[int, ...]  # PyTorch order; shape[-1] is ggml's ne[0]
    slabs: Callable[[int], Iterator[Slab]]  # argument: max weights per slab
    sources: tuple[str, ...] = ()
    source_type: "str | None" = None  # GGUF inputs: the stored type (bytes can be copied when equal)
    # the bytes of the tensor in source_type's GGML layout, slab by slab (argument: max weights per
    # slab): written as they are when the plan keeps source_type (V4's MXFP4 experts, I32 table)
    raw: "Callable[[int], Iterator[bytes]] | None" = None

    @property
    def n_per_row(self) -> int:
        return self.shape[-1]

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


class AdapterError(SourceError):
    pass


def _rows_step(n_per_row: int, max_weights: int) -> int:
    return max(1, max_weights // max(1, n_per_row))


def _row_slabs(read: Callable[[int, int], torch.Tensor], n_rows: int, n_per_row: int, max_weights: int, expert: int = 0) -> Iterator[Slab]:
    step = _rows_step(n_per_row, max_weights)
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        yield Slab(expert, read(r0, r1).reshape(r1 - r0, n_per_row))


def _whole_slabs(make: Callable[[], torch.Tensor], shape: tuple[int, ...]) -> Callable[[int], Iterator[Slab]]:
    """Slabs of a tensor computed whole (permuted or split weights): small tensors only."""

    def gen(max_weights: int) -> Iterator[Slab]:
        full = make().to(torch.float32)
        if tuple(full.shape) != tuple(shape):
            raise AdapterError(f"computed shape {tuple(full.shape)} != planned {shape}")
        if full.dim() == 3:
            for e in range(full.shape[0]):
                yield from _row_slabs(lambda a, b, e=e: full[e, a:b], full.shape[1], full.shape[2], max_weights, e)
        else:
            flat = full.reshape(-1, shape[-1]) if full.dim() > 1 else full.reshape(1, -1)
            yield from _row_slabs(lambda a, b: flat[a:b], flat.shape[0], flat.shape[1], max_weights)

    return gen


class Adapter:
    """Base: subclasses set ``arch`` and implement ``route`` (one source name -> action)."""

    arch: gguf.MODEL_ARCH
    writes_vocab_size = True  # {arch}.vocab_size (llama.cpp's DeepseekV4Model does not write it)

    def __init__(self, src: HFSource, tokenizer_pre: "str | None" = None):
        self.src = src
        self.config = src.config
        self.tokenizer_pre = tokenizer_pre
        self.n_layer = self.block_count()
        self.tmap = gguf.get_tensor_name_map(self.arch, self.n_layer)

    def block_count(self) -> int:
        """Blocks in the GGUF file (``{arch}.block_count``)."""
        return int(self.config["num_hidden_layers"])

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]

    # -- helpers ---------------------------------------------------------------------------
    def gguf_name(self, hf_name: str) -> str:
        new = self.tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise AdapterError(f"cannot map tensor {hf_name!r} to a GGUF name for {self.arch_name}")
        return new

    def direct(self, hf_name: str, out_name: "str | None" = None) -> OutTensor:
        shape = self.src.shape(hf_name)
        src = self.src
        n_per_row = shape[-1] if shape else 1
        n_rows = math.prod(shape[:-1]) if len(shape) > 1 else 1

        def slabs(max_weights: int) -> Iterator[Slab]:
            if len(shape) == 2:
                yield from _row_slabs(lambda a, b: src.read(hf_name, (a, b)), n_rows, n_per_row, max_weights)
            else:
                full = src.read(hf_name).reshape(n_rows, n_per_row)
                yield from _row_slabs(lambda a, b: full[a:b], n_rows, n_per_row, max_weights)

        return OutTensor(out_name or self.gguf_name(hf_name), tuple(shape), slabs, (hf_name,))

    def transformed(self, hf_name: str, fn: Callable[[torch.Tensor], torch.Tensor], out_name: "str | None" = None) -> OutTensor:
        shape = tuple(self.src.shape(hf_name))
        src = self.src
        return OutTensor(out_name or self.gguf_name(hf_name), shape, _whole_slabs(lambda: fn(src.read(hf_name)), shape), (hf_name,))

    def stacked(self, out_name: str, parts: list[str]) -> OutTensor:
        """A 3-D [n_expert, rows, cols] tensor from one 2-D source tensor per expert."""
        shapes = {tuple(self.src.shape(p)) for p in parts}
        if len(shapes) != 1:
            raise AdapterError(f"{out_name}: experts have different shapes {sorted(shapes)}")
        rows, cols = shapes.pop()
        src = self.src

        def slabs(max_weights: int) -> Iterator[Slab]:
            for e, p in enumerate(parts):
                yield from _row_slabs(lambda a, b, p=p: src.read(p, (a, b)), rows, cols, max_weights, e)

        return OutTensor(out_name, (len(parts), rows, cols), slabs, tuple(parts))

    def fused_slice(self, out_name: str, hf_name: str, r0: int, r1: int) -> OutTensor:
        """Rows [r0, r1) of each expert of a fused 3-D source tensor (transformers' gate_up_proj)."""
        n_exp, _, cols = self.src.shape(hf_name)
        src = self.src

        def slabs(max_weights: int) -> Iterator[Slab]:
            for e in range(n_exp):
                block = src.read(hf_name, (e, e + 1))[0, r0:r1]
                yield from _row_slabs(lambda a, b, block=block: block[a:b], r1 - r0, cols, max_weights, e)

        return OutTensor(out_name, (n_exp, r1 - r0, cols), slabs, (hf_name,))

    def fused_whole(self, out_name: str, hf_name: str) -> OutTensor:
        n_exp, rows, cols = self.src.shape(hf_name)
        return self.fused_slice(out_name, hf_name, 0, rows)

    @staticmethod
    def block_of(name: str) -> "int | None":
        m = re.search(r"\.layers\.(\d+)\.", name)
        return int(m.group(1)) if m else None

    # -- the plan ----------------------------------------------------------------------------
    def skip(self, name: str) -> bool:
        """Source tensors llama.cpp's converter drops."""
        if self.src.is_scale(name):
            return True
        if name.endswith((".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")):
            return True
        if self.config.get("tie_word_embeddings") and name in ("lm_head.weight", "model.lm_head.weight"):
            return True
        return False

    def plan(self) -> list[OutTensor]:
        out: list[OutTensor] = []
        claimed: dict[str, str] = {}
        for t in self.build():
            for s in t.sources:
                if s in claimed:
                    raise AdapterError(f"source tensor {s} used by both {claimed[s]} and {t.name}")
                claimed[s] = t.name
            out.append(t)
        leftover = [n for n in self.src.names() if n not in claimed and not self.skip(n)]
        if leftover:
            raise AdapterError(f"{len(leftover)} source tensor(s) not converted: {', '.join(leftover[:8])}")
        names = [t.name for t in out]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise AdapterError(f"duplicate output tensors {sorted(dupes)}")
        return sorted(out, key=_order_key)

    def build(self) -> list[OutTensor]:
        raise NotImplementedError

    # -- metadata ------------------------------------------------------------------------------
    def rope_params(self) -> dict:
        c = self.config
        params = dict(c.get("rope_parameters") or {})
        scaling = c.get("rope_scaling") or {}
        params.update(scaling)
        if "rope_theta" not in params and "rope_theta" in c:
            params["rope_theta"] = c["rope_theta"]
        if "rope_type" not in params and "type" in params:
            params["rope_type"] = params["type"]
        return params

    def add_common(self, w: gguf.GGUFWriter) -> None:
        c = self.config
        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(c.get("_name_or_path") or self.src.path.name)
        w.add_block_count(self.n_layer)
        if (n_ctx := c.get("max_position_embeddings")) is not None:
            w.add_context_length(n_ctx)
        w.add_embedding_length(c["hidden_size"])
        if (n_ff := c.get("intermediate_size")) is not None:
            w.add_feed_forward_length(n_ff)
        w.add_head_count(c["num_attention_heads"])
        rope = self.rope_params()
        rtype = (rope.get("rope_type") or "default").lower()
        if rtype == "linear" and rope.get("factor") is not None:
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(rope["factor"])
        elif rtype == "yarn" and rope.get("factor") is not None:
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(rope["factor"])
            w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
            if (v := rope.get("extrapolation_factor")) is not None:
                w.add_rope_scaling_yarn_ext_factor(v)
            if (v := rope.get("attention_factor", rope.get("attn_factor"))) is not None:
                w.add_rope_scaling_yarn_attn_factor(v)
            if (v := rope.get("beta_fast")) is not None:
                w.add_rope_scaling_yarn_beta_fast(v)
            if (v := rope.get("beta_slow")) is not None:
                w.add_rope_scaling_yarn_beta_slow(v)
        elif rtype not in ("default", "llama3"):
            raise AdapterError(f"unsupported rope scaling type {rtype!r}")
        if (theta := rope.get("rope_theta")) is not None:
            w.add_rope_freq_base(theta)
        w.add_layer_norm_rms_eps(c.get("rms_norm_eps", 1e-6))
        if self.writes_vocab_size:
            w.add_vocab_size(c["vocab_size"])

    def add_metadata(self, w: gguf.GGUFWriter) -> None:
        raise NotImplementedError

    def add_tokenizer(self, w: gguf.GGUFWriter) -> None:
        add_vocab(w, self.src.path, self.config.get("vocab_size"), self.tokenizer_pre)


def _order_key(t: OutTensor) -> tuple:
    if t.name.startswith(("token_embd", "rope_freqs")):
        return (-1, t.name)
    block = block_index(t.name)
    return (1 << 30 if block is None else block), t.name


# -- DeepSeek-V2 / V3 ---------------------------------------------------------------------------

_EXPERT = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$")
_FUSED = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)(\.weight)?$")


class DeepSeek2Adapter(Adapter):
    """DeepSeek-V2/V3 (``DeepseekV2ForCausalLM``, ``DeepseekV3ForCausalLM``) -> deepseek2.

    kv_b_proj is split into attn_k_b (transposed per head) and attn_v_b for MLA; the MTP
    layers (``model.layers.N`` for N >= num_hidden_layers) are dropped; routed experts are
    stacked into ffn_{gate,up,down}_exps."""

    arch = gguf.MODEL_ARCH.DEEPSEEK2

    def skip(self, name: str) -> bool:
        b = self.block_of(name)
        if b is not None and b >= self.n_layer:
            return True  # multi-token-prediction layer: llama.cpp does not use it
        return super().skip(name)

    def build(self) -> list[OutTensor]:
        c = self.config
        n_exp = c.get("n_routed_experts")
        out: list[OutTensor] = []
        experts: dict[int, dict[str, dict[int, str]]] = defaultdict(lambda: defaultdict(dict))
        for name in self.src.names():
            if self.skip(name):
                continue
            if m := _EXPERT.match(name):
                experts[int(m.group(1))][m.group(3)][int(m.group(2))] = name
                continue
            b = self.block_of(name)
            if m := _FUSED.match(name):
                kind = m.group(2)
                if kind == "down_proj":
                    out.append(self.fused_whole(f"blk.{b}.ffn_down_exps.weight", name))
                else:
                    n_e, rows2, cols = self.src.shape(name)
                    half = rows2 // 2
                    gate = self.fused_slice(f"blk.{b}.ffn_gate_exps.weight", name, 0, half)
                    up = self.fused_slice(f"blk.{b}.ffn_up_exps.weight", name, half, rows2)
                    up.sources = ()  # one source feeds two outputs
                    out += [gate, up]
                continue
            if name.endswith("kv_b_proj.weight"):
                out += self._split_kv_b(name, b)
                continue
            hf = name.replace("e_score_correction_bias", "e_score_correction.bias")
            out.append(self.direct(name, self.gguf_name(hf)))
        for b, kinds in sorted(experts.items()):
            for kind in ("gate", "up", "down"):
                got = kinds.get(kind, {})
                if n_exp is None:
                    raise AdapterError(f"layer {b} has routed experts but config.json has no n_routed_experts")
                missing = [e for e in range(n_exp) if e not in got]
                extra = [e for e in got if e >= n_exp]
                if missing or extra:
                    what = f"model.layers.{b}.mlp.experts.{{{','.join(map(str, missing[:8]))}}}.{kind}_proj.weight"
                    raise AdapterError(
                        f"layer {b} {kind}_proj: {len(missing)} expert(s) never arrived ({what})"
                        if missing else f"layer {b} {kind}_proj: expert index(es) {extra} >= n_routed_experts {n_exp}"
                    )
                out.append(self.stacked(f"blk.{b}.ffn_{kind}_exps.weight", [got[e] for e in range(n_exp)]))
        return out

    def _split_kv_b(self, name: str, b: int) -> list[OutTensor]:
        c = self.config
        n_head = c["num_attention_heads"]
        nope, v_dim = c["qk_nope_head_dim"], c["v_head_dim"]
        rows, kv_lora = self.src.shape(name)
        if rows != n_head * (nope + v_dim):
            raise AdapterError(f"{name}: {rows} rows, expected n_head*(qk_nope+v) = {n_head * (nope + v_dim)}")
        src = self.src

        def parts() -> tuple[torch.Tensor, torch.Tensor]:
            kv = src.read(name).view(n_head, nope + v_dim, kv_lora)
            k_b, v_b = torch.split(kv, [nope, v_dim], dim=1)
            return k_b.transpose(1, 2).contiguous(), v_b.contiguous()

        k_shape = (n_head, kv_lora, nope)
        v_shape = (n_head, v_dim, kv_lora)
        k = OutTensor(f"blk.{b}.attn_k_b.weight", k_shape, _whole_slabs(lambda: parts()[0], k_shape), (name,))
        v = OutTensor(f"blk.{b}.attn_v_b.weight", v_shape, _whole_slabs(lambda: parts()[1], v_shape), ())
        return [k, v]

    def add_metadata(self, w: gguf.GGUFWriter) -> None:
        c = self.config
        self.add_common(w)
        w.add_head_count_kv(1)  # MLA is written as MQA with one wide KV head
        first_dense = c.get("first_k_dense_replace")
        if first_dense is None:
            first_dense = self.n_layer if c.get("n_routed_experts") is None else 0
        w.add_leading_dense_block_count(first_dense)
        if c.get("q_lora_rank") is not None:
            w.add_q_lora_rank(c["q_lora_rank"])
        kv_lora = c["kv_lora_rank"]  # no default: a guessed rank would write wrong attention metadata
        w.add_kv_lora_rank(kv_lora)
        w.add_key_length(kv_lora + c["qk_rope_head_dim"])
        w.add_value_length(kv_lora)
        w.add_key_length_mla(c["qk_nope_head_dim"] + c["qk_rope_head_dim"])
        w.add_value_length_mla(c["v_head_dim"])
        w.add_expert_feed_forward_length(c.get("moe_intermediate_size", c.get("intermediate_size")))
        if (n := c.get("n_routed_experts")) is not None:
            w.add_expert_count(n)
        if (n := c.get("num_experts_per_tok")) is not None:
            w.add_expert_used_count(n)
        if (n := c.get("n_group")) is not None:
            w.add_expert_group_count(n)
        if (n := c.get("topk_group")) is not None:
            w.add_expert_group_used_count(n)
        w.add_expert_shared_count(c.get("n_shared_experts", 0))
        if (s := c.get("routed_scaling_factor")) is not None:
            w.add_expert_weights_scale(s)
        if c.get("norm_topk_prob"):
            w.add_expert_weights_norm(True)
        w.add_expert_gating_func(self.gating_func())
        w.add_rope_dimension_count(c["qk_rope_head_dim"])
        rope = self.rope_params()
        if (mscale_all := rope.get("mscale_all_dim")) is not None and (rope.get("rope_type") or "").lower() == "yarn":
            # llama.cpp divides this by 0.1 again when loading deepseek2 (TAG_DEEPSEEK2_YARN_LOG_MUL_FIX)
            w.add_rope_scaling_yarn_log_mul(0.1 * mscale_all)

    def gating_func(self) -> gguf.ExpertGatingFuncType:
        c = self.config
        fn = c.get("scoring_func")
        if fn is None:
            # transformers' DeepseekV3 always scores with a sigmoid, and saves no scoring_func;
            # llama.cpp would otherwise fall back to softmax for a deepseek2 file.
            fn = "sigmoid" if c.get("model_type") == "deepseek_v3" else "softmax"
        try:
            return {"sigmoid": gguf.ExpertGatingFuncType.SIGMOID, "softmax": gguf.ExpertGatingFuncType.SOFTMAX}[fn]
        except KeyError:
            raise AdapterError(f"unsupported scoring_func {fn!r}") from None


# -- DeepSeek-V3.2 ---------------------------------------------------------------------------------

#: V3.2's per-block tensors that deepseek2 lacks: the lightning indexer (in every block) and the MTP
#: block's own input/output tensors (conversion/deepseek.py DeepseekV32Model with gguf-py's tensor map).
_V32_NAMES: dict[str, str] = {
    "self_attn.indexer.wq_b.weight": "indexer.attn_q_b.weight",
    "self_attn.indexer.wk.weight": "indexer.attn_k.weight",
    "self_attn.indexer.k_norm.weight": "indexer.k_norm.weight",
    "self_attn.indexer.k_norm.bias": "indexer.k_norm.bias",
    "self_attn.indexer.weights_proj.weight": "indexer.proj.weight",
    "eh_proj.weight": "nextn.eh_proj.weight",
    "embed_tokens.weight": "nextn.embed_tokens.weight",
    "enorm.weight": "nextn.enorm.weight",
    "hnorm.weight": "nextn.hnorm.weight",
    "shared_head.head.weight": "nextn.shared_head_head.weight",
    "shared_head.norm.weight": "nextn.shared_head_norm.weight",
}
_LAYER_TENSOR = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


class DeepSeek32Adapter(DeepSeek2Adapter):
    """DeepSeek-V3.2 (``DeepseekV32ForCausalLM``) -> deepseek32, as llama.cpp's DeepseekV32Model.

    deepseek2's tensors plus the indexer's five per block; the MTP layers are kept as blocks
    num_hidden_layers.. (counted in block_count, with ``nextn.*`` tensors), so nothing is dropped.
    The installed gguf-py may predate deepseek32: names come from deepseek2's map and the table
    above, and the indexer/MTP keys are written by name."""

    arch = gguf.MODEL_ARCH.DEEPSEEK2  # the tensor-name map; the file says deepseek32
    arch_name = "deepseek32"

    def block_count(self) -> int:
        return int(self.config["num_hidden_layers"]) + int(self.config.get("num_nextn_predict_layers") or 0)

    def gguf_name(self, hf_name: str) -> str:
        if (m := _LAYER_TENSOR.match(hf_name)) and (tail := _V32_NAMES.get(m.group(2))):
            return f"blk.{m.group(1)}.{tail}"
        return super().gguf_name(hf_name)

    def add_metadata(self, w: gguf.GGUFWriter) -> None:
        c = self.config
        super().add_metadata(w)
        arch = self.arch_name
        if (n := c.get("num_nextn_predict_layers")) is not None:
            w.add_uint32(f"{arch}.nextn_predict_layers", n)
        w.add_uint32(f"{arch}.attention.indexer.head_count", c["index_n_heads"])
        w.add_uint32(f"{arch}.attention.indexer.key_length", c["index_head_dim"])
        w.add_uint32(f"{arch}.attention.indexer.top_k", c["index_topk"])


# -- DeepSeek-V4 -----------------------------------------------------------------------------------

#: e2m1 value of each 4-bit MXFP4 code, as ggml decodes them (kvalues_mxfp4, int8, are these doubled
#: with the scale halved): code 8, e2m1's -0, is +0 there, which a BF16/F16 file shows
_E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4_codes(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [rows, cols/2], element 2i in the low nibble -> codes uint8 [rows, cols]."""
    p = packed.view(torch.uint8)
    return torch.stack((p & 0x0F, p >> 4), dim=-1).reshape(p.shape[0], -1)


def mxfp4_dequant(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """DeepSeek-V4's stored MXFP4 (codes, one E8M0 exponent per 32) -> float32 [rows, cols], exactly."""
    codes = mxfp4_codes(packed)
    e = scale.view(torch.uint8).to(torch.int32) - 127
    return _E2M1[codes.long()] * torch.exp2(e.to(torch.float32)).repeat_interleave(32, dim=1)


def mxfp4_blocks(packed: torch.Tensor, scale: torch.Tensor) -> bytes:
    """The same weights as ggml's block_mxfp4 (convert_hf_to_gguf's repack_mxfp4_blocks): per 32
    weights the exponent byte, then 16 bytes with element j in the low nibble, j+16 in the high."""
    codes = mxfp4_codes(packed).reshape(packed.shape[0], -1, 2, 16)
    qs = codes[:, :, 0, :] | (codes[:, :, 1, :] << 4)
    blocks = torch.cat((scale.view(torch.uint8).unsqueeze(-1), qs), dim=-1)
    return blocks.contiguous().numpy().tobytes()


#: DeepSeek-V4 source name (after ``layers.N.``) -> GGUF name (after ``blk.N.``), as DeepseekV4Model maps them.
_V4_ROOT = {
    "embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight", "head.weight": "output.weight",
    "hc_head_fn": "output_hc_fn.weight", "hc_head_base": "output_hc_base.weight", "hc_head_scale": "output_hc_scale.weight",
}
_V4_LAYER = {
    "hc_attn_fn": "hc_attn_fn.weight", "hc_attn_base": "hc_attn_base.weight", "hc_attn_scale": "hc_attn_scale.weight",
    "hc_ffn_fn": "hc_ffn_fn.weight", "hc_ffn_base": "hc_ffn_base.weight", "hc_ffn_scale": "hc_ffn_scale.weight",
    "attn.attn_sink": "attn_sinks.weight",
    "attn.wq_a.weight": "attn_q_a.weight", "attn.wq_b.weight": "attn_q_b.weight", "attn.q_norm.weight": "attn_q_a_norm.weight",
    "attn.wkv.weight": "attn_kv.weight", "attn.kv_norm.weight": "attn_kv_a_norm.weight",
    "attn.wo_a.weight": "attn_output_a.weight", "attn.wo_b.weight": "attn_output_b.weight",
    "attn.compressor.ape": "attn_compressor_ape.weight", "attn.compressor.wkv.weight": "attn_compressor_kv.weight",
    "attn.compressor.wgate.weight": "attn_compressor_gate.weight", "attn.compressor.norm.weight": "attn_compressor_norm.weight",
    "attn.indexer.wq_b.weight": "indexer.attn_q_b.weight", "attn.indexer.weights_proj.weight": "indexer.proj.weight",
    "attn.indexer.compressor.ape": "indexer_compressor_ape.weight",
    "attn.indexer.compressor.wkv.weight": "indexer_compressor_kv.weight",
    "attn.indexer.compressor.wgate.weight": "indexer_compressor_gate.weight",
    "attn.indexer.compressor.norm.weight": "indexer_compressor_norm.weight",
    "attn_norm.weight": "attn_norm.weight", "ffn_norm.weight": "ffn_norm.weight",
    "ffn.gate.weight": "ffn_gate_inp.weight", "ffn.gate.bias": "exp_probs_b.bias", "ffn.gate.tid2eid": "ffn_gate_tid2eid.weight",
    "ffn.shared_experts.w1.weight": "ffn_gate_shexp.weight", "ffn.shared_experts.w2.weight": "ffn_down_shexp.weight",
    "ffn.shared_experts.w3.weight": "ffn_up_shexp.weight",
}
_V4_EXPERT = re.compile(r"^layers\.(\d+)\.ffn\.experts\.(\d+)\.(w[123])\.weight$")
_V4_PROJ = {"w1": "gate", "w2": "down", "w3": "up"}


class DeepSeek4Adapter(Adapter):
    """DeepSeek-V4 (``DeepseekV4ForCausalLM``) -> deepseek4, as llama.cpp's DeepseekV4Model writes it.

    The converter's file is not a float file: it keeps what the checkpoint stores. FP8 linear
    layers become Q8_0 (dequantized with their E8M0 tile scales, then quantized), the routed
    experts stay the stored MXFP4 blocks, 2-D BF16 tensors stay BF16, F32 ones F32 and the hash
    routing table I32. Each output tensor here carries that type as ``source_type``; its slabs
    are the values llama-quantize reads back from that file (FP8 weights through Q8_0 and back),
    so a quantized mix equals llama-quantize --allow-requantize of the converter's file, and its
    ``raw`` bytes are written when the plan keeps the type (MXFP4 experts in MXFP4_MOE, Q8_0 in
    Q8_0, the I32 table always). The MTP layer (``mtp.*``) is dropped, as the converter does."""

    arch = gguf.MODEL_ARCH.DEEPSEEK2  # unused name map: the installed gguf-py may predate deepseek4
    arch_name = "deepseek4"
    writes_vocab_size = False

    def skip(self, name: str) -> bool:
        if name.startswith(("mtp.", "aligner.", "image_")):
            return True
        b = self.block_of("." + name)
        if name.endswith(".ffn.gate.bias") and b is not None and b < int(self.config["num_hash_layers"]):
            return True  # hash-routed blocks do not use the router bias
        return super().skip(name)

    def gguf_name(self, hf_name: str) -> str:
        if hf_name in _V4_ROOT:
            return _V4_ROOT[hf_name]
        m = re.match(r"^layers\.(\d+)\.(.+)$", hf_name)
        if m and m.group(2) in _V4_LAYER:
            return f"blk.{m.group(1)}.{_V4_LAYER[m.group(2)]}"
        raise AdapterError(f"cannot map tensor {hf_name!r} to a GGUF name for deepseek4")

    def stored_type(self, name: str) -> str:
        """The type convert_hf_to_gguf gives a (non-expert) source tensor."""
        t = self.src.tensors[name]
        if t.dtype in ("F8_E4M3", "F8_E5M2"):
            return "Q8_0"
        if t.dtype.startswith("I"):
            return "I32"
        if t.dtype == "BF16" and len(t.shape) >= 2 and not name.endswith("norm.weight"):
            return "BF16"
        return "F32"

    def v4_tensor(self, name: str) -> OutTensor:
        import kernels

        src = self.src
        shape = tuple(src.shape(name))
        out_name = self.gguf_name(name)
        kind = self.stored_type(name)
        if len(shape) == 1 and kind != "F32":
            kind = "F32"
        n_per_row = shape[-1]
        n_rows = math.prod(shape[:-1]) if len(shape) > 1 else 1

        def values(a: int, b: int) -> torch.Tensor:
            x = src.read(name, (a, b)) if len(shape) == 2 else src.read(name).reshape(n_rows, n_per_row)[a:b]
            if kind == "Q8_0":  # what llama-quantize reads back from the converter's Q8_0
                x = kernels.dequantize(kernels.quantize(x.reshape(b - a, n_per_row), "Q8_0"), "Q8_0", n_per_row)
            return x.reshape(b - a, n_per_row)

        def slabs(max_weights: int) -> Iterator[Slab]:
            yield from _row_slabs(values, n_rows, n_per_row, max_weights)

        def raw(max_weights: int) -> Iterator[bytes]:
            step = _rows_step(n_per_row, max_weights)
            for r0 in range(0, n_rows, step):
                r1 = min(n_rows, r0 + step)
                if kind == "I32":
                    yield src.raw(name).reshape(n_rows, n_per_row)[r0:r1].to(torch.int32).contiguous().numpy().tobytes()
                else:
                    x = src.read(name, (r0, r1)) if len(shape) == 2 else src.read(name).reshape(n_rows, n_per_row)[r0:r1]
                    yield kernels.quantize(x.reshape(r1 - r0, n_per_row), kind).cpu().numpy().tobytes()

        return OutTensor(out_name, shape, slabs, (name,), source_type=kind, raw=raw)

    def experts(self, b: int, proj: str, parts: list[str]) -> OutTensor:
        src = self.src
        rows, half = src.shape(parts[0])
        for p in parts:
            if tuple(src.shape(p)) != (rows, half):
                raise AdapterError(f"{p}: shape {src.shape(p)}, expected {(rows, half)} like expert 0")
        cols = 2 * half
        scales = [p.removesuffix(".weight") + ".scale" for p in parts]

        def slabs(max_weights: int) -> Iterator[Slab]:
            for e, (p, s) in enumerate(zip(parts, scales)):
                yield from _row_slabs(lambda a, b, p=p, s=s: mxfp4_dequant(src.raw(p, (a, b)), src.raw(s, (a, b))),
                                      rows, cols, max_weights, e)

        def raw(max_weights: int) -> Iterator[bytes]:
            step = _rows_step(cols, max_weights)
            for p, s in zip(parts, scales):
                for r0 in range(0, rows, step):
                    r1 = min(rows, r0 + step)
                    yield mxfp4_blocks(src.raw(p, (r0, r1)), src.raw(s, (r0, r1)))

        return OutTensor(f"blk.{b}.ffn_{_V4_PROJ[proj]}_exps.weight", (len(parts), rows, cols), slabs,
                         tuple(parts), source_type="MXFP4", raw=raw)

    def build(self) -> list[OutTensor]:
        n_exp = int(self.config["n_routed_experts"])
        out: list[OutTensor] = []
        experts: dict[int, dict[str, dict[int, str]]] = defaultdict(lambda: defaultdict(dict))
        for name in self.src.names():
            if self.skip(name):
                continue
            if m := _V4_EXPERT.match(name):
                experts[int(m.group(1))][m.group(3)][int(m.group(2))] = name
                continue
            out.append(self.v4_tensor(name))
        for b, kinds in sorted(experts.items()):
            for proj in ("w1", "w2", "w3"):
                got = kinds.get(proj, {})
                missing = [e for e in range(n_exp) if e not in got]
                if missing or len(got) != n_exp:
                    raise AdapterError(f"layer {b} {proj}: {len(missing)} expert(s) never arrived "
                                       f"(layers.{b}.ffn.experts.{{{','.join(map(str, missing[:8]))}}}.{proj}.weight)")
                out.append(self.experts(b, proj, [got[e] for e in range(n_exp)]))
        return out

    def add_metadata(self, w: gguf.GGUFWriter) -> None:
        c = self.config
        a = self.arch_name
        self.add_common(w)
        w.add_head_count_kv(1)
        w.add_uint32(f"{a}.expert_count", c["n_routed_experts"])
        w.add_uint32(f"{a}.expert_used_count", c["num_experts_per_tok"])
        gating = {"softmax": 1, "sigmoid": 2, "sqrtsoftplus": 4}  # llama.cpp's llama_expert_gating_func_type
        if (fn := c.get("scoring_func")) not in gating:
            raise AdapterError(f"unsupported scoring_func {fn!r}")
        w.add_uint32(f"{a}.expert_gating_func", gating[fn])
        w.add_key_length(c["head_dim"])
        w.add_value_length(c["head_dim"])
        w.add_rope_dimension_count(c["qk_rope_head_dim"])
        w.add_q_lora_rank(c["q_lora_rank"])
        w.add_uint32(f"{a}.attention.sliding_window", c["sliding_window"])
        w.add_expert_feed_forward_length(c["moe_intermediate_size"])
        w.add_expert_shared_count(c["n_shared_experts"])
        w.add_expert_weights_scale(c["routed_scaling_factor"])
        w.add_expert_weights_norm(c["norm_topk_prob"])
        w.add_array(f"{a}.swiglu_clamp_exp", [float(c["swiglu_limit"])] * self.n_layer)
        w.add_array(f"{a}.swiglu_clamp_shexp", [float(c["swiglu_limit"])] * self.n_layer)
        w.add_uint32(f"{a}.attention.indexer.head_count", c["index_n_heads"])
        w.add_uint32(f"{a}.attention.indexer.key_length", c["index_head_dim"])
        w.add_uint32(f"{a}.attention.indexer.top_k", c["index_topk"])
        w.add_uint32(f"{a}.attention.output_group_count", c["o_groups"])
        w.add_uint32(f"{a}.attention.output_lora_rank", c["o_lora_rank"])
        w.add_array(f"{a}.attention.compress_ratios", [int(r) for r in c["compress_ratios"]])
        w.add_float32(f"{a}.attention.compress_rope_freq_base", c["compress_rope_theta"])
        w.add_uint32(f"{a}.hyper_connection.count", c["hc_mult"])
        w.add_uint32(f"{a}.hyper_connection.sinkhorn_iterations", c["hc_sinkhorn_iters"])
        w.add_float32(f"{a}.hyper_connection.epsilon", c["hc_eps"])
        w.add_uint32(f"{a}.hash_layer_count", c["num_hash_layers"])
        w.add_uint32(f"{a}.embedding_length_out", c["hidden_size"] * c["hc_mult"])


# -- Llama / Qwen2 -------------------------------------------------------------------------------


def permute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF's rotate-half q/k rows -> ggml's interleaved rope rows (convert_hf_to_gguf's permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Inverse of :func:`permute_qk`: GGUF llama q/k rows back to HF's layout."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class LlamaAdapter(Adapter):
    arch = gguf.MODEL_ARCH.LLAMA
    permute = True

    def n_head_kv(self) -> int:
        return self.config.get("num_key_value_heads") or self.config["num_attention_heads"]

    def head_dim(self) -> int:
        c = self.config
        return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]

    def build(self) -> list[OutTensor]:
        n_head, n_kv = self.config["num_attention_heads"], self.n_head_kv()
        out = []
        for name in self.src.names():
            if self.skip(name):
                continue
            if self.permute and name.endswith(("q_proj.weight", "q_proj.bias")):
                out.append(self.transformed(name, lambda w: permute_qk(w, n_head)))
            elif self.permute and name.endswith(("k_proj.weight", "k_proj.bias")):
                out.append(self.transformed(name, lambda w: permute_qk(w, n_kv)))
            else:
                out.append(self.direct(name))
        if (freqs := self.llama3_rope_freqs()) is not None:
            out.append(OutTensor("rope_freqs.weight", tuple(freqs.shape), _whole_slabs(lambda: freqs, tuple(freqs.shape))))
        return out

    def llama3_rope_freqs(self) -> "torch.Tensor | None":
        rope = self.rope_params()
        if (rope.get("rope_type") or "").lower() != "llama3":
            return None
        base = rope.get("rope_theta", 10000.0)
        dim = self.head_dim()
        freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        factor = rope.get("factor", 8.0)
        low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
        old_ctx = rope.get("original_max_position_embeddings", 8192)
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        factors = []
        for f in freqs.tolist():
            wavelen = 2 * math.pi / f
            if wavelen < high_wavelen:
                factors.append(1.0)
            elif wavelen > low_wavelen:
                factors.append(factor)
            else:
                smooth = (old_ctx / wavelen - low) / (high - low)
                factors.append(1 / ((1 - smooth) / factor + smooth))
        return torch.tensor(factors, dtype=torch.float32)

    def add_metadata(self, w: gguf.GGUFWriter) -> None:
        c = self.config
        self.add_common(w)
        w.add_head_count_kv(self.n_head_kv())
        w.add_rope_dimension_count(self.head_dim())
        if c.get("head_dim") is not None:
            w.add_key_length(c["head_dim"])
            w.add_value_length(c["head_dim"])


class Qwen2Adapter(LlamaAdapter):
    arch = gguf.MODEL_ARCH.QWEN2
    permute = False  # qwen2 uses NEOX rope in llama.cpp: rows stay as they are

    def llama3_rope_freqs(self) -> "torch.Tensor | None":
        return None


ADAPTERS: dict[str, type[Adapter]] = {
    "DeepseekV2ForCausalLM": DeepSeek2Adapter,
    "DeepseekV3ForCausalLM": DeepSeek2Adapter,
    "DeepseekV32ForCausalLM": DeepSeek32Adapter,
    "DeepseekV4ForCausalLM": DeepSeek4Adapter,
    "LlamaForCausalLM": LlamaAdapter,
    "MistralForCausalLM": LlamaAdapter,
    "Qwen2ForCausalLM": Qwen2Adapter,
}


def adapter_for(src: HFSource, tokenizer_pre: "str | None" = None) -> Adapter:
    archs = src.config.get("architectures") or []
    for a in archs:
        if a in ADAPTERS:
            return ADAPTERS[a](src, tokenizer_pre)
    raise AdapterError(
        f"{src.path / 'config.json'}: unsupported architecture {archs} (model_type {src.config.get('model_type')!r}); "
        f"supported: {', '.join(ADAPTERS)}"
    )


# -- GGUF inputs -----------------------------------------------------------------------------------


class GGUFPassthrough:
    """A float GGUF in, same tensors and metadata out (re-quantized as llama-quantize does)."""

    def __init__(self, src: GGUFSource):
        self.src = src
        self.arch_name = src.arch
        self.n_layer = int(src.field(f"{self.arch_name}.block_count", 0))

    def plan(self) -> list[OutTensor]:
        out = []
        src = self.src
        for name, t in src.tensors.items():
            shape = t.shape
            n_per_row = shape[-1]
            n_rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
            rows_per_expert = shape[-2] if len(shape) == 3 else n_rows

            def slabs(max_weights: int, name=name, n_rows=n_rows, n_per_row=n_per_row, rpe=rows_per_expert) -> Iterator[Slab]:
                step = _rows_step(n_per_row, max_weights)
                for e0 in range(0, n_rows, rpe):
                    for r0 in range(e0, e0 + rpe, step):
                        r1 = min(e0 + rpe, r0 + step)
                        yield Slab(e0 // rpe, src.read(name, (r0, r1)).reshape(r1 - r0, n_per_row))

            out.append(OutTensor(name, shape, slabs, (name,), source_type=t.dtype))
        return out
