"""Deployment fit: will a GGUF variant run on this hardware at this context length?

Memory needed = weights + KV cache + compute buffers (+ a runtime reserve), per GPU and in
total, for llama.cpp offloading every layer (``-ngl 999``, the default layer split).

Weights
    Every tensor of the GGUF file from the model's config.json and the recipe (the same
    name/shape list and type rules the planner uses): ``rows × row_bytes(type, row_length)``.
    Tensors are placed as llama.cpp places them: ``token_embd`` stays in host memory (llama.cpp
    keeps the input layer on the CPU); block ``i`` goes to GPU ``floor(i × n_gpu / (n_layer + 1))``;
    the output head (``output``, ``output_norm``) is layer ``n_layer`` of that split, so it lands on
    the last GPU. ``n_layer`` is the trunk's (``num_hidden_layers``): the MTP block a deepseek32
    file keeps is never loaded by llama.cpp's main context ("model has unused tensor … ignoring"),
    so it counts nowhere. When only a total size is known (a registered variant without a plan) the
    bytes are spread over the tensors in proportion to their parameter count.

KV cache, per token per layer (``n_ctx`` rounded up to a multiple of 256, as llama.cpp pads it)
    ``mla`` (llama.cpp with MLA, deepseek2 files that carry ``attn_k_b``/``attn_v_b``): one
    compressed latent row of ``kv_lora_rank + qk_rope_head_dim`` elements (512 + 64 = 576 for
    DeepSeek-V3/R1) in the K cache, ``n_head_kv = 1``; no V cache is allocated, V is read from
    the same latent (src/llama-kv-cache.cpp: ``has_v = !is_mla``).
    ``full`` (builds before MLA support, which decompressed K and V per head):
    K = ``n_head × (qk_nope_head_dim + qk_rope_head_dim)``, V = ``n_head × v_head_dim``
    (128 × 192 + 128 × 128 = 40,960 for DeepSeek-V3/R1: 71× the MLA cache).
    Non-MLA architectures (the Llama/Qwen distills) use GQA in both modes:
    K = V = ``n_head_kv × head_dim``.
    ``deepseek32`` (V3.2, src/llama-kv-cache-dsa.cpp): the MLA cache above plus the lightning
    indexer's key cache, one row of ``index_head_dim`` (128) per token and layer, in the K cache's
    type; only the trunk's layers have either (the MTP block the file keeps has no cache).
    ``deepseek4`` (V4, src/llama-kv-cache-dsv4.cpp), one layout whatever the mode, every row K only
    and ``head_dim`` (512) long unless said: a sliding-window cache on every layer of
    ``pad256(min(n_ctx, sliding_window + n_ubatch))`` cells; on layers with ``compress_ratios`` 4
    (CSA) ``pad256(ceil(n_ctx / 4))`` compressed cells plus as many indexer cells of
    ``index_head_dim``; on ratio-128 layers (HCA) ``pad256(ceil(n_ctx / 128))`` cells; and each
    compressor's f32 state, a kv and a score tensor of ``state × width`` (CSA 8 × 2·head_dim,
    indexer 8 × 2·index_head_dim, HCA 128 × head_dim), whatever the cache type. ``kv_caches``
    lists these caches as llama.cpp creates them.
    Bytes per element: f16 2, q8_0 34/32 (a 32-value block is 32 int8 + one f16 scale).

Compute buffers, per GPU (an estimate; llama.cpp sizes them by reserving the worst-case graph)
    attention scores of one layer, ``n_ctx × n_ubatch × n_head × 4`` bytes (f32 KQ, not
    materialised with flash attention), plus activations ``4 × n_ubatch × width × 4`` bytes
    where width is the widest intermediate (hidden size, the q projection, the dense FFN or
    the active experts' FFN); the GPU holding the output head adds the logits,
    ``n_vocab × n_ubatch × 4``. Each GPU also keeps ``reserve_bytes`` (CUDA/CANN context and
    allocator slack, 1 GiB by default).

Verdict: fits when every GPU's weights + KV + compute + reserve is within its memory. The
whole calculation needs only config.json and a recipe, so it works before any weights exist.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from quant import architectures, planner
from quant.recipes import Recipe, block_index

GiB = 1 << 30
MiB = 1 << 20
DEFAULT_RESERVE = 1 * GiB
DEFAULT_UBATCH = 512
CTX_PAD = 256

#: Bytes per cache element, as (bytes, per n values).
CACHE_TYPES: dict[str, tuple[int, int]] = {"f32": (4, 1), "f16": (2, 1), "bf16": (2, 1), "q8_0": (34, 32)}
KV_MODES = ("mla", "full")

# Bounds on a question (GET /api/fit is anonymous, so each must stay cheap and meaningful).
#: GPUs in one machine: above every llama.cpp backend's device limit (CUDA, CANN, Vulkan 16; SYCL 48).
MAX_GPUS = 64
#: Memory of one GPU: 4 TiB, ten times the largest accelerator sold; 1 MiB is the smallest size one can write.
MAX_GPU_BYTES = 4096 * GiB
#: Context in tokens: 2**21 (2,097,152) is above every model dsq serves (DeepSeek-V3/R1: 163,840 positions)
#: and the longest-context open models (1M), so no real question is refused; llama.cpp's n_ctx is a uint32.
MAX_CONTEXT = 1 << 21


@dataclass(frozen=True)
class Hardware:
    """Identical accelerators in one machine; memory as the runtime reports it."""

    name: str
    n_gpu: int
    gpu_bytes: int
    label: str = ""
    reserve_bytes: int = DEFAULT_RESERVE


#: Built-in profiles. Memory is the device total the driver reports (nvidia-smi / npu-smi).
HARDWARE: dict[str, Hardware] = {h.name: h for h in [
    Hardware("8xH100-80GB", 8, 81559 * MiB, "8× NVIDIA H100 80 GB"),
    Hardware("8xA100-80GB", 8, 81920 * MiB, "8× NVIDIA A100 80 GB"),
    Hardware("8xA100-40GB", 8, 40960 * MiB, "8× NVIDIA A100 40 GB"),
    Hardware("8xAscend910B-64GB", 8, 65536 * MiB, "8× Huawei Ascend 910B 64 GB"),
]}

_CUSTOM = re.compile(r"custom:(\d{1,9})\s*[x×]\s*(\d{1,9}(?:\.\d{1,6})?)\s*(GB|GiB|G|MB|MiB|M)?", re.IGNORECASE)


def parse_hardware(spec: str) -> Hardware:
    """A profile name (case-insensitive) or ``custom:NxSIZE`` such as ``custom:4x48GB``.

    Custom sizes in GB are taken as GiB: a card sold as "48 GB" reports about 48 GiB.
    """
    for name, hw in HARDWARE.items():
        if name.lower() == spec.strip().lower():
            return hw
    m = _CUSTOM.fullmatch(spec.strip())
    if not m:
        raise ValueError(f"unknown hardware {spec[:100]!r}: use one of {', '.join(HARDWARE)} or custom:NxSIZEGB "
                         f"(e.g. custom:4x48GB)")
    n, size, unit = int(m.group(1)), float(m.group(2)), (m.group(3) or "GB").upper()
    gpu_bytes = int(size * (MiB if unit.startswith("M") else GiB))
    if not 1 <= n <= MAX_GPUS:
        raise ValueError(f"hardware {spec!r}: from 1 to {MAX_GPUS} GPUs (MAX_GPUS), got {n}")
    if not MiB <= gpu_bytes <= MAX_GPU_BYTES:
        raise ValueError(f"hardware {spec!r}: each GPU's memory must be from 1 MiB to {MAX_GPU_BYTES // GiB} GiB")
    return Hardware(f"custom:{n}x{m.group(2)}{m.group(3) or 'GB'}", n, gpu_bytes,
                    f"{n}× {m.group(2)} {m.group(3) or 'GB'} (custom)")


# -- weights ------------------------------------------------------------------------------------


def _prod(shape: Iterable[int]) -> int:
    return math.prod(shape)


def tensor_bytes(config: dict[str, Any], recipe: "Recipe | str") -> list[tuple[str, int]]:
    """[(gguf tensor name, bytes)] of the file the recipe makes from this config (quant.planner)."""
    return [(t.name, t.nbytes) for t in planner.plan(config, recipe).tensors]


def tensor_bytes_from_total(config: dict[str, Any], total_bytes: int) -> list[tuple[str, int]]:
    """Spread a known file size over the tensors in proportion to their parameter count."""
    specs = architectures.tensor_specs(config)
    params = sum(_prod(s) for _, s in specs)
    return [(name, total_bytes * _prod(shape) // params) for name, shape in specs]


# -- KV cache -----------------------------------------------------------------------------------


def is_mla(config: dict[str, Any]) -> bool:
    return architectures.gguf_arch(config) in ("deepseek2", "deepseek32") and bool(config.get("kv_lora_rank"))


def kv_elements_per_token(config: dict[str, Any], kv_cache: str = "mla") -> tuple[int, int]:
    """(K, V) cache elements per token per layer."""
    if kv_cache not in KV_MODES:
        raise ValueError(f"kv_cache must be one of {KV_MODES}, got {kv_cache!r}")
    n_head = int(config["num_attention_heads"])
    if is_mla(config):
        rope = int(config["qk_rope_head_dim"])
        if kv_cache == "mla":
            return int(config["kv_lora_rank"]) + rope, 0
        return n_head * (int(config["qk_nope_head_dim"]) + rope), n_head * int(config["v_head_dim"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // n_head)
    return n_head_kv * head_dim, n_head_kv * head_dim


#: DeepSeek-V4's compression ratios (src/llama-kv-cache-dsv4.cpp: DSV4_CSA_RATIO, DSV4_HCA_RATIO).
CSA_RATIO, HCA_RATIO = 4, 128


@dataclass(frozen=True)
class KvCache:
    """One cache llama.cpp allocates: per layer in ``layers``, ``tensors`` tensors of ``cells`` rows of
    ``row_elements`` values of ``cache_type`` (its log line: "size = … MiB (cells, layers …)")."""

    name: str
    layers: tuple[int, ...]
    cells: int
    row_elements: int
    cache_type: str
    tensors: int = 1

    @property
    def layer_bytes(self) -> int:
        return self.tensors * self.cells * cache_row_bytes(self.row_elements, self.cache_type)

    @property
    def total_bytes(self) -> int:
        return self.layer_bytes * len(self.layers)


def kv_caches(config: dict[str, Any], context: int, *, kv_cache: str = "mla", cache_type: str = "f16",
              n_ubatch: int = DEFAULT_UBATCH) -> list[KvCache]:
    """The caches llama.cpp creates for one sequence of ``context`` tokens (see the module docstring)."""
    arch = architectures.gguf_arch(config)
    cells = padded_context(context)
    if arch == "deepseek4":
        return _v4_caches(config, cells, cache_type, n_ubatch)
    k, v = kv_elements_per_token(config, kv_cache)
    layers = tuple(range(trunk_layers(config)))
    caches = [KvCache("k", layers, cells, k, cache_type)]
    if v:
        caches.append(KvCache("v", layers, cells, v, cache_type))
    if arch == "deepseek32":
        caches.append(KvCache("indexer", layers, cells, int(config["index_head_dim"]), cache_type))
    return caches


def _v4_caches(config: dict[str, Any], cells: int, cache_type: str, n_ubatch: int) -> list[KvCache]:
    n_layer = trunk_layers(config)
    ratios = [int(r) for r in config["compress_ratios"][:n_layer]]
    head, index = int(config["head_dim"]), int(config["index_head_dim"])
    every = tuple(range(n_layer))
    csa = tuple(i for i in every if ratios[i] == CSA_RATIO)
    hca = tuple(i for i in every if ratios[i] == HCA_RATIO)
    window = padded_context(min(cells, int(config["sliding_window"]) + n_ubatch))
    csa_cells = padded_context(-(-cells // CSA_RATIO))
    return [
        KvCache("window", every, window, head, cache_type),
        KvCache("csa", csa, csa_cells, head, cache_type),
        KvCache("hca", hca, padded_context(-(-cells // HCA_RATIO)), head, cache_type),
        KvCache("indexer", csa, csa_cells, index, cache_type),
        KvCache("csa state", csa, 2 * CSA_RATIO, 2 * head, "f32", tensors=2),
        KvCache("hca state", hca, HCA_RATIO, head, "f32", tensors=2),
        KvCache("indexer state", csa, 2 * CSA_RATIO, 2 * index, "f32", tensors=2),
    ]


def trunk_layers(config: dict[str, Any]) -> int:
    """Blocks llama.cpp's main context runs: the file's, less the MTP blocks deepseek32 keeps."""
    return int(config["num_hidden_layers"])


def cache_row_bytes(n_elements: int, cache_type: str) -> int:
    """Bytes of one cache row (ggml_row_size)."""
    if cache_type not in CACHE_TYPES:
        raise ValueError(f"cache type must be one of {', '.join(CACHE_TYPES)}, got {cache_type!r}")
    size, per = CACHE_TYPES[cache_type]
    if n_elements % per:
        raise ValueError(f"a {cache_type} cache row needs a multiple of {per} values, got {n_elements}")
    return n_elements // per * size


def padded_context(context: int) -> int:
    return -(-context // CTX_PAD) * CTX_PAD


# -- compute buffers ------------------------------------------------------------------------------


def compute_bytes(config: dict[str, Any], context: int, *, n_ubatch: int = DEFAULT_UBATCH,
                  flash_attn: bool = False, with_logits: bool = False) -> int:
    """Estimated compute buffer of one GPU (see the module docstring)."""
    n_head = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    head_k = (int(config.get("qk_nope_head_dim", 0)) + int(config.get("qk_rope_head_dim", 0))) if is_mla(config) \
        else int(config.get("head_dim") or hidden // n_head)
    experts_ff = int(config.get("num_experts_per_tok") or 0) * int(config.get("moe_intermediate_size") or 0)
    width = max(hidden, n_head * head_k, int(config.get("intermediate_size") or 0), experts_ff)
    scores = 0 if flash_attn else padded_context(context) * n_ubatch * n_head * 4
    logits = int(config["vocab_size"]) * n_ubatch * 4 if with_logits else 0
    return scores + 4 * n_ubatch * width * 4 + logits


# -- the verdict ----------------------------------------------------------------------------------


@dataclass
class GpuUse:
    index: int
    layers: list[int] = field(default_factory=list)
    weights_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0
    reserve_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.reserve_bytes


@dataclass
class Fit:
    hardware: Hardware
    context: int
    kv_cache: str
    cache_type: str
    weights_bytes: int
    host_weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    gpus: list[GpuUse]

    @property
    def per_gpu_bytes(self) -> int:
        """The fullest GPU's need: the number that decides the verdict."""
        return max(g.total_bytes for g in self.gpus)

    @property
    def total_bytes(self) -> int:
        """Everything: weights (host and GPU), KV cache, compute buffers and reserves."""
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + sum(g.reserve_bytes for g in self.gpus)

    @property
    def fits(self) -> bool:
        return all(g.total_bytes <= self.hardware.gpu_bytes for g in self.gpus)

    @property
    def headroom_bytes(self) -> int:
        return self.hardware.gpu_bytes - self.per_gpu_bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "hardware": asdict(self.hardware), "context": self.context, "kv_cache": self.kv_cache,
            "cache_type": self.cache_type, "weights_bytes": self.weights_bytes,
            "host_weights_bytes": self.host_weights_bytes, "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes, "total_bytes": self.total_bytes,
            "per_gpu_bytes": self.per_gpu_bytes, "gpu_bytes": self.hardware.gpu_bytes,
            "headroom_bytes": self.headroom_bytes, "fits": self.fits,
            "gpus": [dict(asdict(g), total_bytes=g.total_bytes) for g in self.gpus],
        }


def gpu_of_layer(layer: int, n_layer: int, n_gpu: int) -> int:
    """llama.cpp's even layer split over n_layer + 1 layers (the output head is the last)."""
    return layer * n_gpu // (n_layer + 1)


def check_question(context: int, n_ubatch: int, kv_cache: str, cache_type: str) -> None:
    """ValueError naming the parameter and its range, for a question outside the bounds above.

    ubatch cannot exceed the context: llama.cpp clamps its batch to n_ctx.
    """
    if not 1 <= context <= MAX_CONTEXT:
        raise ValueError(f"context must be from 1 to {MAX_CONTEXT} tokens (MAX_CONTEXT), got {context}")
    if not 1 <= n_ubatch <= context:
        raise ValueError(f"ubatch must be from 1 to the context ({context}), got {n_ubatch}")
    if kv_cache not in KV_MODES:
        raise ValueError(f"kv_cache must be one of {', '.join(KV_MODES)}, got {kv_cache[:20]!r}")
    if cache_type not in CACHE_TYPES:
        raise ValueError(f"cache_type must be one of {', '.join(CACHE_TYPES)}, got {cache_type[:20]!r}")


def fit(config: dict[str, Any], tensors: list[tuple[str, int]], hardware: Hardware, context: int, *,
        kv_cache: str = "mla", cache_type: str = "f16", n_ubatch: "int | None" = None,
        flash_attn: bool = False) -> Fit:
    """Place weights, KV cache and compute buffers on the GPUs and give the verdict.

    n_ubatch defaults to llama.cpp's 512, or the context if that is shorter.
    """
    n_ubatch = min(DEFAULT_UBATCH, context) if n_ubatch is None else n_ubatch
    check_question(context, n_ubatch, kv_cache, cache_type)
    n_layer = trunk_layers(config)
    gpus = [GpuUse(i, reserve_bytes=hardware.reserve_bytes) for i in range(hardware.n_gpu)]
    host = 0
    tensors = [(name, nbytes) for name, nbytes in tensors if (block_index(name) or 0) < n_layer]  # MTP: not loaded
    for name, nbytes in tensors:
        layer = architectures_layer(name, n_layer)
        if layer is None:
            host += nbytes
        else:
            gpus[gpu_of_layer(layer, n_layer, hardware.n_gpu)].weights_bytes += nbytes
    for layer in range(n_layer):
        gpus[gpu_of_layer(layer, n_layer, hardware.n_gpu)].layers.append(layer)
    for cache in kv_caches(config, context, kv_cache=kv_cache, cache_type=cache_type, n_ubatch=n_ubatch):
        for layer in cache.layers:
            gpus[gpu_of_layer(layer, n_layer, hardware.n_gpu)].kv_bytes += cache.layer_bytes
    last = gpu_of_layer(n_layer, n_layer, hardware.n_gpu)
    for gpu in gpus:
        if gpu.layers or gpu.index == last:
            gpu.compute_bytes = compute_bytes(config, context, n_ubatch=n_ubatch, flash_attn=flash_attn,
                                              with_logits=gpu.index == last)
    return Fit(hardware, context, kv_cache, cache_type, sum(b for _, b in tensors), host,
               sum(g.kv_bytes for g in gpus), sum(g.compute_bytes for g in gpus), gpus)


def architectures_layer(name: str, n_layer: int) -> "int | None":
    """Which llama.cpp layer a tensor belongs to: its block, n_layer for the head, None for host."""
    if (block := block_index(name)) is not None:
        return block
    if name.startswith("token_embd"):
        return None
    return n_layer


def format_bytes(n: int) -> str:
    return f"{n / GiB:,.1f} GiB"
