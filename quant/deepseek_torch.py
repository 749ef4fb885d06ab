"""DeepSeek-V3's forward pass in plain PyTorch, written from the architecture (not transformers).

Used to train the tiny MoE (``quant.train_tiny``) and to prove that what we train is what
llama.cpp's ``deepseek2`` graph computes (``src/models/deepseek2.cpp``, ``build_moe_ffn`` in
``src/llama-graph.cpp``). Each block: RMSNorm → multi-head latent attention → residual →
RMSNorm → feed-forward (dense SwiGLU in the first ``first_k_dense_replace`` blocks, routed
experts + shared expert after) → residual. The parameter names are DeepSeek-V3's Hugging Face
names, so ``state_dict()`` is a checkpoint dsq converts as it is.

Details that must agree with llama.cpp, and do:

* **MLA**: q = q_b(RMSNorm(q_a(x))) per head [nope | rope]; ``kv_a_proj_with_mqa(x)`` =
  [compressed kv (kv_lora_rank) | k_pe (rope, one head shared by all)]; RMSNorm on the compressed
  part only; kv_b per head [k_nope | v].
* **RoPE** on adjacent pairs (x[2i], x[2i+1]) — llama.cpp's "normal" rope for deepseek2, which is
  what DeepSeek's view/transpose before ``rotate_half`` amounts to — with YaRN frequencies
  (beta_fast/beta_slow ramp, factor, original context) and softmax scale
  mscale(factor, mscale_all_dim)² / sqrt(qk_nope + qk_rope).
* **Routing** (``scoring_func: sigmoid``, ``topk_method: noaux_tc``): s = sigmoid(x·Wg); choose with
  s + e_score_correction_bias, first the ``topk_group`` groups by the sum of their two best biased
  scores, then the top ``num_experts_per_tok`` experts; weigh with the *unbiased* s, normalised
  (``norm_topk_prob``) then times ``routed_scaling_factor``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Arch:
    """The hyperparameters the forward pass reads, from a DeepSeek-V3 config.json."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    first_k_dense_replace: int
    intermediate_size: int
    moe_intermediate_size: int
    num_attention_heads: int
    q_lora_rank: "int | None"
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    n_routed_experts: int
    num_experts_per_tok: int
    n_group: int
    topk_group: int
    n_shared_experts: int
    routed_scaling_factor: float
    norm_topk_prob: bool
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: "dict | None"
    tie_word_embeddings: bool = False

    @classmethod
    def from_config(cls, config: dict) -> "Arch":
        if config.get("scoring_func", "sigmoid") != "sigmoid" or config.get("topk_method", "noaux_tc") != "noaux_tc":
            raise ValueError("only DeepSeek-V3 routing (scoring_func sigmoid, topk_method noaux_tc) is implemented")
        return cls(**{k: config.get(k) for k in cls.__dataclass_fields__ if k in config or k == "rope_scaling"})


# -- rotary embedding ---------------------------------------------------------------------------------


def yarn_mscale(factor: float, mscale: float) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def rope_frequencies(arch: Arch) -> tuple[torch.Tensor, float]:
    """(inverse frequencies [qk_rope_head_dim / 2] float64, softmax scale) with DeepSeek's YaRN."""
    dim, base = arch.qk_rope_head_dim, float(arch.rope_theta)
    extra = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    scale = 1.0 / math.sqrt(arch.qk_nope_head_dim + arch.qk_rope_head_dim)
    rs = arch.rope_scaling or {}
    if (rs.get("type") or rs.get("rope_type")) != "yarn":
        return extra, scale
    factor, orig = float(rs["factor"]), int(rs["original_max_position_embeddings"])

    def correction_dim(n_rot: float) -> float:
        return dim * math.log(orig / (n_rot * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(correction_dim(rs.get("beta_fast", 32))), 0)
    high = min(math.ceil(correction_dim(rs.get("beta_slow", 1))), dim - 1)
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / max(high - low, 0.001)).clamp(0, 1)
    keep = 1.0 - ramp  # 1: extrapolate (high frequencies), 0: interpolate by `factor`
    inv_freq = extra / factor * (1 - keep) + extra * keep
    m = yarn_mscale(factor, rs.get("mscale_all_dim", 0) or 0)
    # cos/sin would be scaled by mscale(factor, mscale) / mscale(factor, mscale_all_dim): 1 for V3's config
    if yarn_mscale(factor, rs.get("mscale", 1)) != m:
        raise ValueError("rope_scaling with mscale != mscale_all_dim is not implemented")
    return inv_freq, scale * m * m


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on adjacent pairs. x [..., S, d]; cos/sin [S, d/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


# -- blocks ----------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _linear(n_in: int, n_out: int) -> nn.Linear:
    return nn.Linear(n_in, n_out, bias=False)


class MLA(nn.Module):
    def __init__(self, a: Arch):
        super().__init__()
        self.a = a
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            self.q_a_proj = _linear(a.hidden_size, a.q_lora_rank)
            self.q_a_layernorm = RMSNorm(a.q_lora_rank, a.rms_norm_eps)
            self.q_b_proj = _linear(a.q_lora_rank, a.num_attention_heads * qk)
        else:
            self.q_proj = _linear(a.hidden_size, a.num_attention_heads * qk)
        self.kv_a_proj_with_mqa = _linear(a.hidden_size, a.kv_lora_rank + a.qk_rope_head_dim)
        self.kv_a_layernorm = RMSNorm(a.kv_lora_rank, a.rms_norm_eps)
        self.kv_b_proj = _linear(a.kv_lora_rank, a.num_attention_heads * (a.qk_nope_head_dim + a.v_head_dim))
        self.o_proj = _linear(a.num_attention_heads * a.v_head_dim, a.hidden_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, scale: float) -> torch.Tensor:
        a = self.a
        B, S, _ = x.shape
        nh, nope, rope = a.num_attention_heads, a.qk_nope_head_dim, a.qk_rope_head_dim
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if a.q_lora_rank else self.q_proj(x)
        q = q.view(B, S, nh, nope + rope).transpose(1, 2)  # [B, nh, S, nope+rope]
        ckv, k_pe = self.kv_a_proj_with_mqa(x).split([a.kv_lora_rank, rope], dim=-1)
        kv = self.kv_b_proj(self.kv_a_layernorm(ckv)).view(B, S, nh, nope + a.v_head_dim).transpose(1, 2)
        k_nope, v = kv.split([nope, a.v_head_dim], dim=-1)
        q_pe = rotate_pairs(q[..., nope:], cos, sin)
        k_pe = rotate_pairs(k_pe.unsqueeze(1), cos, sin).expand(B, nh, S, rope)
        q = torch.cat((q[..., :nope], q_pe), dim=-1)
        k = torch.cat((k_nope, k_pe), dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        return self.o_proj(out.transpose(1, 2).reshape(B, S, nh * a.v_head_dim))


class MLP(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = _linear(hidden, inner), _linear(hidden, inner), _linear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    """The router: weight [n_experts, hidden] and the selection bias (not trained by gradient)."""

    def __init__(self, a: Arch):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(a.n_routed_experts, a.hidden_size))
        self.register_buffer("e_score_correction_bias", torch.zeros(a.n_routed_experts))


def route(a: Arch, scores: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """noaux_tc: (expert indices [T, k], weights [T, k]) from sigmoid scores [T, E] and the bias."""
    choice = scores.detach() + bias
    if a.n_group > 1:
        T, E = choice.shape
        groups = choice.view(T, a.n_group, E // a.n_group)
        group_score = groups.topk(2, dim=-1).values.sum(-1)  # [T, n_group]
        keep = torch.zeros_like(group_score, dtype=torch.bool)
        keep.scatter_(1, group_score.topk(a.topk_group, dim=-1).indices, True)
        choice = groups.masked_fill(~keep.unsqueeze(-1), float("-inf")).view(T, E)
    idx = choice.topk(a.num_experts_per_tok, dim=-1).indices
    w = scores.gather(1, idx)
    if a.norm_topk_prob:
        w = w / w.sum(-1, keepdim=True).clamp(min=6.103515625e-5)  # llama.cpp's clamp
    return idx, w * a.routed_scaling_factor


class MoE(nn.Module):
    def __init__(self, a: Arch):
        super().__init__()
        self.a = a
        self.gate = Gate(a)
        self.experts = nn.ModuleList(MLP(a.hidden_size, a.moe_intermediate_size) for _ in range(a.n_routed_experts))
        self.shared_experts = MLP(a.hidden_size, a.moe_intermediate_size * a.n_shared_experts)
        self.last_load: "torch.Tensor | None" = None  # tokens per expert in the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        scores = torch.sigmoid(x @ self.gate.weight.t())
        idx, w = route(self.a, scores, self.gate.e_score_correction_bias)
        self.last_load = torch.bincount(idx.flatten(), minlength=self.a.n_routed_experts)
        out = self.shared_experts(x)
        for e, expert in enumerate(self.experts):
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel():
                out = out.index_add(0, rows, expert(x[rows]) * w[rows, slot].unsqueeze(-1))
        return out.view(shape)


class Block(nn.Module):
    def __init__(self, a: Arch, i: int):
        super().__init__()
        self.input_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.self_attn = MLA(a)
        self.post_attention_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.mlp = MLP(a.hidden_size, a.intermediate_size) if i < a.first_k_dense_replace else MoE(a)

    def forward(self, x, cos, sin, scale):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, scale)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, a: Arch):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab_size, a.hidden_size)
        self.layers = nn.ModuleList(Block(a, i) for i in range(a.num_hidden_layers))
        self.norm = RMSNorm(a.hidden_size, a.rms_norm_eps)


class DeepSeekV3(nn.Module):
    """tokens [B, S] → logits [B, S, vocab]; positions 0..S-1 in every row (one window each)."""

    def __init__(self, a: Arch):
        super().__init__()
        self.a = a
        self.model = Body(a)
        if not a.tie_word_embeddings:
            self.lm_head = _linear(a.hidden_size, a.vocab_size)
        inv_freq, self.softmax_scale = rope_frequencies(a)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    @classmethod
    def from_config(cls, config: dict) -> "DeepSeekV3":
        return cls(Arch.from_config(config))

    def moe_layers(self) -> list[MoE]:
        return [b.mlp for b in self.model.layers if isinstance(b.mlp, MoE)]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        S = tokens.shape[1]
        angles = torch.arange(S, dtype=torch.float32, device=tokens.device)[:, None] * self.inv_freq[None, :]
        cos, sin = angles.cos(), angles.sin()
        x = self.model.embed_tokens(tokens)
        for block in self.model.layers:
            x = block(x, cos, sin, self.softmax_scale)
        x = self.model.norm(x)
        head = self.model.embed_tokens.weight if self.a.tie_word_embeddings else self.lm_head.weight
        return x @ head.t()


def load_checkpoint(path) -> DeepSeekV3:
    """A DeepSeekV3 in float32 from a checkpoint directory (config.json + safetensors shards)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    path = Path(path)
    model = DeepSeekV3.from_config(json.loads((path / "config.json").read_text()))
    state = {}
    for f in sorted(path.glob("*.safetensors")):
        state.update({k: v.float() for k, v in load_file(str(f)).items()})
    model.load_state_dict(state, strict=True)
    return model.eval()
