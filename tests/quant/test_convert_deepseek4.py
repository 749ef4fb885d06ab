"""DeepSeek-V4 (deepseek4) against llama.cpp itself, on a tiny synthetic checkpoint (quant.tiny_v4).

convert_hf_to_gguf.py's V4 file is not a float file: FP8 linear layers (E8M0 tile scales) become
Q8_0, the MXFP4 routed experts stay as stored, BF16 stays BF16. The tensors it writes are exactly
those quant.architectures plans; dsq's F32 file has the same tensors, shapes and metadata; and
dsq's file for each llama.cpp mix (and BF16/F16) is byte-identical, tensor by tensor, to
llama_model_quantize --allow-requantize of the converter's file (MXFP4_MOE keeps the stored expert blocks, Q8_0 the
converter's Q8_0, the rest is quantized from what that file holds).
"""
from __future__ import annotations

import json
import re

import pytest

from quant import architectures
from quant.tiny_v4 import TinyV4Spec, make_tiny_v4
from quant.convert import convert
from tests.quant.llama_ref import (assert_llama_cpp_runs, assert_written_as_planned, convert_hf_to_gguf,
                                   field, llama_cpp_source, llama_quantize, metadata, mismatches, tensors)

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def v4_dir(tmp_path_factory):
    return make_tiny_v4(tmp_path_factory.mktemp("v4") / "tiny-v4", TinyV4Spec())


@pytest.fixture(scope="module")
def llama_v4(v4_dir, llama_tools, tmp_path_factory):
    return convert_hf_to_gguf(llama_cpp_source(llama_tools), v4_dir, tmp_path_factory.mktemp("llama") / "v4.gguf")


def test_converter_writes_the_planned_tensors(v4_dir, llama_v4):
    cfg = json.loads((v4_dir / "config.json").read_text())
    got = {n: shape for n, (_, shape, _) in tensors(llama_v4).items()}
    assert got == {name: tuple(shape) for name, shape in architectures.tensor_specs(cfg)}
    assert field(llama_v4, "general.architecture") == "deepseek4"
    assert field(llama_v4, "deepseek4.block_count") == cfg["num_hidden_layers"]  # the MTP layer is dropped


def test_converter_keeps_the_stored_types(llama_v4):
    """FP8 weights -> Q8_0 (whatever --outtype), MXFP4 experts as stored, BF16 2-D sources BF16,
    F32 sources F32, the hash table I32: the file is MOSTLY_MXFP4_MOE."""
    types = {}
    for name, (ty, _, _) in tensors(llama_v4).items():
        types.setdefault(re.sub(r"^blk\.\d+\.", "", name), set()).add(ty)
    assert types["ffn_gate_exps.weight"] == types["ffn_down_exps.weight"] == {"MXFP4"}
    for fp8 in ("attn_q_a", "attn_q_b", "attn_kv", "attn_output_a", "attn_output_b", "ffn_gate_shexp",
                "ffn_down_shexp", "ffn_up_shexp", "indexer.attn_q_b"):
        assert types[f"{fp8}.weight"] == {"Q8_0"}, fp8
    for bf16 in ("token_embd", "output", "ffn_gate_inp", "attn_compressor_kv", "attn_compressor_gate",
                 "indexer.proj", "indexer_compressor_kv", "indexer_compressor_gate"):
        assert types[f"{bf16}.weight"] == {"BF16"}, bf16
    assert types["ffn_gate_tid2eid.weight"] == {"I32"}
    assert types["hc_attn_fn.weight"] == types["output_hc_fn.weight"] == {"F32"}
    assert field(llama_v4, "general.file_type") == 38  # LLAMA_FTYPE_MOSTLY_MXFP4_MOE


#: four in every run (as tests/quant/test_convert_deepseek32.py), the rest marked exhaustive
_FAST = ["Q8_0", "Q3_K_M", "Q4_0", "MXFP4_MOE"]
LLAMA_MIXES = [m if m in _FAST else pytest.param(m, marks=pytest.mark.exhaustive)
               for m in ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K",
                         "Q4_0", "Q4_1", "Q5_0", "Q5_1", "MXFP4_MOE", "BF16", "F16"]]


def test_f32_gguf_has_the_converters_tensors_and_metadata(v4_dir, llama_v4, tmp_path):
    ours = convert(v4_dir, tmp_path, "F32", stats=False).files[0].path
    got, want = tensors(ours), tensors(llama_v4)
    assert {n: s for n, (_, s, _) in got.items()} == {n: s for n, (_, s, _) in want.items()}
    # types: F32 but what llama.cpp never quantizes, which keeps the converter's type
    assert {n for n, (t, _, _) in got.items() if t != "F32"} == {
        n for n, (t, s, _) in want.items() if t != "F32" and ("ffn_gate_inp" in n or "tid2eid" in n)}
    assert got["blk.0.ffn_gate_tid2eid.weight"] == want["blk.0.ffn_gate_tid2eid.weight"]  # the I32 table as stored
    assert metadata(ours) == metadata(llama_v4)
    assert field(ours, "general.architecture") == "deepseek4"


@pytest.mark.parametrize("recipe", LLAMA_MIXES)
def test_quantized_files_are_byte_identical_to_llama_quantize(recipe, v4_dir, llama_v4, tmp_path):
    ours = convert(v4_dir, tmp_path / "ours", recipe, stats=False).files[0].path
    theirs = llama_quantize(llama_v4, tmp_path / f"llama-{recipe}.gguf", recipe, allow_requantize=True)
    assert mismatches(ours, theirs) == []
    assert field(ours, "general.file_type") == field(theirs, "general.file_type")


def test_llama_cpp_runs_dsqs_file(v4_dir, tmp_path):
    assert_llama_cpp_runs(v4_dir, tmp_path)


@pytest.mark.slow
def test_dq3_k_m_writes_the_planned_types(v4_dir, tmp_path):
    """DQ3_K_M is dsq's own mix (no llama.cpp twin): what is written is what the planner said."""
    assert_written_as_planned(v4_dir, tmp_path, "DQ3_K_M")
