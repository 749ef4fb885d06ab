"""Built-in recipes, as data.

The llama.cpp mixes reproduce ``llama_tensor_get_type_impl`` in llama.cpp's
src/llama-quant.cpp (llama-cpp-python 0.3.36's vendored tree) for the
architectures dsq serves: deepseek2 (V3, R1, V3.1, Kimi-K2), deepseek32 (V3.2),
deepseek4 (V4), llama and qwen2, quantized without an importance matrix. The
rules match names as llama.cpp's categories do, so the new architectures need
no rules of their own: V4's ``attn_output_a``/``_b`` and ``attn_kv`` are not
attn_output or attn_v-like, its ``ffn_down_exps``/``_shexp`` are ffn_down; the
``n_layer`` the layer conditions see is the file's block count (llama-quant.cpp's
``n_layer_all``: V3.2's includes its MTP block). Branches that cannot fire for them are left out: Falcon,
the IQ mixes, and the imatrix-only Q4_0/Q5_0
ffn_down guard. Rule order encodes the C++ control flow (first match wins):

* a model with exactly 8 experts (llama.cpp tests ``hparams.n_expert == 8``
  whatever the architecture: Mixtral's rule, which also fires for a DeepSeek
  checkpoint cut to 8 routed experts) gets attn_v-like and attn_k tensors in
  Q8_0 in every mix, and attn_output in Q5_K in the Q2_K, Q3_K_S, Q3_K_M,
  Q4_K_S and Q4_K_M mixes (the mix's default type in the others: the plain
  attn_output upgrades do not apply to it);
* output.weight, and token_embd.weight when the embeddings are tied, take
  Q6_K (Q8_0 in the Q8_0 mix); a row the K-quant block does not divide falls
  back to Q8_0, as llama.cpp's ``nx % qk_k`` check does.
* attn_v-like tensors (attn_v, attn_qkv, attn_kv_b) and ffn_down get the
  per-mix upgrades; the 70B bump (an 80-layer llama with GQA: Q3_K/Q4_K attn_v
  become Q5_K) is written before the plain rule it overrides.
* attn_output gets Q3_K/Q4_K/Q5_K in Q2_K/Q3_K_M/Q3_K_L.
* MXFP4_MOE: every 3-D tensor (``ne[2] > 1``) MXFP4, everything else and the
  output Q8_0. Our 3-D tensors are the routed experts and, in deepseek2/32,
  MLA's ``attn_k_b``/``attn_v_b`` (llama.cpp only tells them apart for
  bailingmoe3). kernels/mxfp4.py writes them (byte-identical to ggml_quantize_chunk).

DQ3_K_M is the study's dynamic 3-bit mix: Q3_K_M, except the routed-expert
down projections. Of DeepSeek-V3/R1's 58 MoE layers (blk 3..60) the first two
get Q6_K, twelve spread every fourth block from 8 to 52 get Q4_K, the other
44 Q3_K (a 2/12/44 split). DQ3_K_M-dense applies the same proportions to a
dense model's ffn_down, scaled to its layer count n (integer rounding):
Q6_K for the first max(1, round(2n/58)) blocks, Q4_K for round(12n/58)
blocks spread evenly from round(5n/58) to round(49n/58), Q3_K elsewhere. For
n = 58 this is exactly the MoE pattern shifted to start at block 0.

The DQ3_K_M rules name block indices, so on the newer MoE models they apply as
written: Kimi-K2 (MoE from blk 1) and V3.1/V3.2 (from blk 3; V3.2's MTP block 61
is Q3_K) get the same 2/12 blocks; V4 has no dense blocks and routes blk 0-2 by
token hash, so blk 0-2 stay Q3_K like the other MoE blocks, blk 3-4 get Q6_K and
blk 8, 12, ... up to 52 Q4_K (V4-Flash, 43 blocks: 2/9/32; V4-Pro, 61 blocks:
2/12/47).
"""
from __future__ import annotations

from typing import Any

ATTN_V = r"attn_v\.weight|attn_qkv\.weight|attn_kv_b\.weight"
FFN_DOWN = r"ffn_down"
ATTN_OUTPUT = r"attn_output\.weight"
ATTN_K = r"attn_k\.weight"
OUTPUT = r"^output\.weight$"
TOKEN_EMBD = r"^token_embd\.weight$"


def _head(out_type: str = "Q6_K") -> list[dict[str, Any]]:
    """output.weight (and a tied token_embd) rules shared by every llama.cpp mix."""
    return [
        {"match": OUTPUT, "type": out_type},
        {"match": TOKEN_EMBD, "when": {"model": "tied_embeddings"}, "type": out_type},
    ]


#: llama-quant.cpp's MXFP4_MOE test is ``ne[2] > 1``; these are the 3-D tensors our architectures write.
THREE_D = r"_exps\.weight$|attn_k_b\.weight$|attn_v_b\.weight$"

#: What convert_hf_to_gguf.py keeps F32 in its F16/BF16 files although llama-quantize would quantize it
#: (base.py prepare_tensors: "DSA indexer weights should be F32"): V3.2's indexer.proj. The float
#: references are the converter's files, so they keep it too (v2 of BF16/F16).
_CONVERTER_F32 = {"match": r"indexer\.proj\.weight$", "when": {"model": "deepseek32"}, "type": "F32"}

_V70 = {"match": ATTN_V, "when": {"model": "llama_70b"}, "type": "Q5_K"}

# llama.cpp's attn_output upgrade for 8-expert models, by mix (the others keep their default type)
_MOE8_ATTN_OUTPUT = {"Q2_K": "Q5_K", "Q3_K_S": "Q5_K", "Q3_K_M": "Q5_K", "Q4_K_S": "Q5_K", "Q4_K_M": "Q5_K"}


def _moe8(name: str, default: str) -> list[dict[str, Any]]:
    """The `n_expert == 8` rules, ahead of the mix's own (they override the 70B bump too)."""
    when = {"model": "n_expert_8"}
    return [
        {"match": ATTN_V, "when": when, "type": "Q8_0"},
        {"match": ATTN_K, "when": when, "type": "Q8_0"},
        {"match": ATTN_OUTPUT, "when": when, "type": _MOE8_ATTN_OUTPUT.get(name, default)},
    ]


def _mix(name: str, default: str, rules: list[dict[str, Any]], description: str, out: str = "Q6_K") -> dict[str, Any]:
    # version 2: the `n_expert == 8` rules (_moe8)
    return {"name": name, "version": 2, "description": description, "default_type": default,
            "rules": _head(out) + _moe8(name, default) + rules}


RECIPES: list[dict[str, Any]] = [
    # Unquantized references (llama.cpp's F16/BF16 ftypes): the baseline every drop is measured against.
    {"name": "BF16", "version": 2, "description": "Every quantizable tensor BF16; the reference for BF16 checkpoints.",
     "default_type": "BF16", "rules": [_CONVERTER_F32]},
    {"name": "F16", "version": 2, "description": "Every quantizable tensor F16; the reference for small models.",
     "default_type": "F16", "rules": [_CONVERTER_F32]},
    _mix("Q8_0", "Q8_0", [], "llama.cpp Q8_0: everything Q8_0.", out="Q8_0"),
    _mix("Q6_K", "Q6_K", [], "llama.cpp Q6_K: everything Q6_K."),
    _mix("Q5_K_M", "Q5_K", [
        {"match": ATTN_V, "when": {"layers": "use_more_bits"}, "type": "Q6_K"},
        {"match": FFN_DOWN, "when": {"layers": "use_more_bits"}, "type": "Q6_K"},
    ], "llama.cpp Q5_K_M: Q5_K, attn_v and ffn_down Q6_K on use_more_bits layers."),
    _mix("Q5_K_S", "Q5_K", [], "llama.cpp Q5_K_S: everything Q5_K."),
    _mix("Q4_K_M", "Q4_K", [
        {"match": ATTN_V, "when": {"layers": "use_more_bits"}, "type": "Q6_K"},
        _V70,
        {"match": FFN_DOWN, "when": {"layers": "use_more_bits"}, "type": "Q6_K"},
    ], "llama.cpp Q4_K_M: Q4_K, attn_v and ffn_down Q6_K on use_more_bits layers."),
    _mix("Q4_K_S", "Q4_K", [
        {"match": ATTN_V, "when": {"layer_lt": 4}, "type": "Q5_K"},
        _V70,
        {"match": FFN_DOWN, "when": {"layer_lt": "n_layer/8"}, "type": "Q5_K"},
    ], "llama.cpp Q4_K_S: Q4_K, the first attn_v and first eighth of ffn_down Q5_K."),
    _mix("Q3_K_L", "Q3_K", [
        {"match": ATTN_V, "type": "Q5_K"},
        {"match": FFN_DOWN, "type": "Q5_K"},
        {"match": ATTN_OUTPUT, "type": "Q5_K"},
    ], "llama.cpp Q3_K_L: Q3_K, attn_v, ffn_down and attn_output Q5_K."),
    _mix("Q3_K_M", "Q3_K", [
        _V70,
        {"match": ATTN_V, "when": {"layer_lt": 2}, "type": "Q5_K"},
        {"match": ATTN_V, "type": "Q4_K"},
        {"match": FFN_DOWN, "when": {"layer_lt": "n_layer/16"}, "type": "Q5_K"},
        {"match": FFN_DOWN, "type": "Q4_K"},
        {"match": ATTN_OUTPUT, "type": "Q4_K"},
    ], "llama.cpp Q3_K_M: Q3_K; attn_v Q5_K/Q4_K, ffn_down Q5_K (first 1/16)/Q4_K, attn_output Q4_K."),
    _mix("Q3_K_S", "Q3_K", [_V70], "llama.cpp Q3_K_S: everything Q3_K."),
    _mix("Q2_K", "Q2_K", [
        _V70,
        {"match": ATTN_V, "when": {"model": "gqa_ge_4"}, "type": "Q4_K"},
        {"match": ATTN_V, "type": "Q3_K"},
        {"match": FFN_DOWN, "type": "Q3_K"},
        {"match": ATTN_OUTPUT, "type": "Q3_K"},
    ], "llama.cpp Q2_K: Q2_K; attn_v Q4_K (GQA >= 4) or Q3_K, ffn_down and attn_output Q3_K."),
    _mix("MXFP4_MOE", "Q8_0", [{"match": THREE_D, "type": "MXFP4"}],
         "llama.cpp MXFP4_MOE: 3-D tensors (routed experts; MLA's k_b/v_b) MXFP4, the rest Q8_0.", out="Q8_0"),
    _mix("Q4_0", "Q4_0", [], "llama.cpp Q4_0 (legacy): everything Q4_0."),
    _mix("Q4_1", "Q4_1", [], "llama.cpp Q4_1 (legacy): everything Q4_1."),
    _mix("Q5_0", "Q5_0", [], "llama.cpp Q5_0 (legacy): everything Q5_0."),
    _mix("Q5_1", "Q5_1", [], "llama.cpp Q5_1 (legacy): everything Q5_1."),
    {
        "name": "DQ3_K_M",
        "version": 2,  # 2: Q3_K_M's `n_expert == 8` rules
        "description": "Dynamic 3-bit: Q3_K_M with routed-expert ffn_down split Q6_K/Q4_K/Q3_K 2/12/44.",
        "extends": "Q3_K_M",
        "rules": [
            {"match": r"ffn_down_exps\.weight$", "when": {"layers": [3, 4]}, "type": "Q6_K"},
            {"match": r"ffn_down_exps\.weight$", "when": {"layers": list(range(8, 53, 4))}, "type": "Q4_K"},
            {"match": r"ffn_down_exps\.weight$", "type": "Q3_K"},
        ],
    },
    {
        "name": "DQ3_K_M-dense",
        "version": 2,  # 2: Q3_K_M's `n_expert == 8` rules
        "description": "DQ3_K_M's ffn_down pattern on a dense model, scaled to its layer count.",
        "extends": "Q3_K_M",
        "rules": [
            {"match": r"ffn_down\.weight$", "when": {"layer_lt": "max(1, (2*n_layer + 29)/58)"}, "type": "Q6_K"},
            {"match": r"ffn_down\.weight$",
             "when": {"layers_spread": {"count": "(12*n_layer + 29)/58",
                                        "first": "(5*n_layer + 29)/58",
                                        "last": "(49*n_layer + 29)/58"}},
             "type": "Q4_K"},
            {"match": r"ffn_down\.weight$", "type": "Q3_K"},
        ],
    },
]
