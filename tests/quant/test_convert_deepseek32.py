"""DeepSeek-V3.2 (deepseek32) against llama.cpp itself, on a tiny synthetic checkpoint.

The checkpoint (quant.tiny with the lightning indexer) stores its linear layers in FP8 with
power-of-two (UE8M0) tile scales, as V3.2's release does, so FP8 x scale is exact in BF16 and
dsq's FP8 path (which rounds to BF16, as DeepSeek's own cast) and llama.cpp's (float32) agree.
llama.cpp's convert_hf_to_gguf.py writes the F32 reference; dsq's F32 file must have the same
tensors (names, shapes, types, bytes) and the same architecture and tokenizer metadata, and
dsq's file for each llama.cpp mix must be byte-identical, tensor by tensor, to
llama_model_quantize (what llama-quantize runs) of that reference.
"""
from __future__ import annotations

import gguf
import pytest

from quant.convert import convert
from quant.tiny import TinySpec, make_tiny
from tests.quant.llama_ref import (assert_llama_cpp_runs, assert_written_as_planned, convert_hf_to_gguf,
                                   field, llama_cpp_source, llama_quantize, metadata, mismatches, tensors)

pytest.importorskip("llama_cpp")

#: As small as the K-quants allow (rows of 256): 2 blocks (the first dense) + the MTP block, 3 routed
#: experts (not 8: llama.cpp's Mixtral bumps), indexer 2 heads x 128. The eager K-quant searches are
#: what a test here spends its time on, so every weight counts.
V32_SPEC = TinySpec(
    vocab_size=384, num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=2, n_routed_experts=3,
    num_experts_per_tok=2, n_group=1, topk_group=1, n_merges=100, index_n_heads=2, index_head_dim=128,
    index_topk=64, ue8m0=True,
)

#: The built-in mixes that are llama.cpp ftypes (DQ3_K_M is dsq's own; F16/BF16 are not quantizations):
#: four in every run (Q3_K_M writes Q3_K, Q4_K and Q5_K tensors; Q4_0 a legacy type; MXFP4_MOE MXFP4), the
#: rest marked exhaustive (`make test-exhaustive`; `make test` skips them): the eager Q4_K/Q2_K searches
#: take most of a run on two cores (deepseek2 runs Q8_0, Q4_K_M, Q3_K_M and Q2_K in test_convert_deepseek.py).
_FAST = ["Q8_0", "Q3_K_M", "Q4_0", "MXFP4_MOE"]
LLAMA_MIXES = [m if m in _FAST else pytest.param(m, marks=pytest.mark.exhaustive)
               for m in ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K",
                         "Q4_0", "Q4_1", "Q5_0", "Q5_1", "MXFP4_MOE"]]


@pytest.fixture(scope="module")
def v32_dir(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("v32") / "tiny-v32", V32_SPEC, fp8=True)


@pytest.fixture(scope="module")
def llama_f32(v32_dir, llama_tools, tmp_path_factory):
    """convert_hf_to_gguf.py --outtype f32 of the tiny V3.2."""
    return convert_hf_to_gguf(llama_cpp_source(llama_tools), v32_dir, tmp_path_factory.mktemp("llama") / "v32-f32.gguf")


@pytest.fixture(scope="module")
def ours_f32(v32_dir, tmp_path_factory):
    return convert(v32_dir, tmp_path_factory.mktemp("ours"), "F32", stats=False).files[0].path


def test_the_checkpoint_is_v32_in_fp8_with_ue8m0_scales(v32_dir):
    from quant.sources import HFSource

    src = HFSource(v32_dir)
    assert src.config["architectures"] == ["DeepseekV32ForCausalLM"]
    assert src.tensors["model.layers.0.self_attn.indexer.wq_b.weight"].dtype == "F8_E4M3"
    scale = src.raw("model.layers.0.self_attn.indexer.wq_b.weight_scale_inv")
    assert (scale.log2() == scale.log2().round()).all()  # powers of two
    assert "model.layers.2.eh_proj.weight" in src.tensors  # the MTP block


def test_f32_gguf_equals_convert_hf_to_gguf(ours_f32, llama_f32):
    assert mismatches(ours_f32, llama_f32) == []
    ours, theirs = metadata(ours_f32), metadata(llama_f32)
    assert {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)} == {}
    for key in ("general.architecture", "general.file_type"):
        assert field(ours_f32, key) == field(llama_f32, key)
    assert field(ours_f32, "general.architecture") == "deepseek32"
    assert field(ours_f32, "deepseek32.block_count") == V32_SPEC.num_hidden_layers + 1  # the MTP block is kept


@pytest.mark.slow
def test_bf16_gguf_equals_convert_hf_to_gguf(v32_dir, llama_tools, tmp_path):
    """--outtype bf16: the converter keeps indexer.proj F32 (so does dsq's BF16 recipe)."""
    theirs = convert_hf_to_gguf(llama_cpp_source(llama_tools), v32_dir, tmp_path / "v32-bf16.gguf", "bf16")
    ours = convert(v32_dir, tmp_path / "ours", "BF16", stats=False).files[0].path
    assert mismatches(ours, theirs) == []
    assert metadata(ours) == metadata(theirs)
    assert field(ours, "general.file_type") == field(theirs, "general.file_type")
    assert tensors(ours)["blk.0.indexer.proj.weight"][0] == "F32"


def test_tensors_are_the_planners(ours_f32, v32_dir):
    import json

    from quant import architectures

    cfg = json.loads((v32_dir / "config.json").read_text())
    got = {n: shape for n, (_, shape, _) in tensors(ours_f32).items()}
    assert got == {name: tuple(shape) for name, shape in architectures.tensor_specs(cfg)}


@pytest.mark.parametrize("recipe", LLAMA_MIXES)
def test_quantized_files_are_byte_identical_to_llama_quantize(recipe, v32_dir, llama_f32, tmp_path):
    ours = convert(v32_dir, tmp_path / "ours", recipe, stats=False).files[0].path
    theirs = llama_quantize(llama_f32, tmp_path / f"llama-{recipe}.gguf", recipe)
    assert mismatches(ours, theirs) == []
    assert field(ours, "general.file_type") == field(theirs, "general.file_type")


def test_llama_cpp_runs_dsqs_file(v32_dir, tmp_path):
    assert_llama_cpp_runs(v32_dir, tmp_path)


@pytest.mark.slow
def test_dq3_k_m_writes_the_planned_types(v32_dir, tmp_path):
    """DQ3_K_M is dsq's own mix (no llama.cpp twin): what is written is what the planner said."""
    assert_written_as_planned(v32_dir, tmp_path, "DQ3_K_M")
