"""kernels.triton.q6_k under Triton's interpreter: the bytes of the PyTorch reference codec
(kernels.q6_k) and of llama.cpp's ggml_quantize_chunk, with and without an imatrix."""
from __future__ import annotations

import pytest

pytest.importorskip("triton")

from tests.kernels.triton.exact import (  # noqa: E402
    assert_same_bytes, imatrix, reference_codec, rows_under_test, split_rows, triton_quantize,
)

Q = "Q6_K"


@pytest.fixture(scope="module", params=[False, True], ids=["ref", "imatrix"])
def quantized(request):
    """(x, imatrix, labels, Triton bytes) of rows_under_test: one launch per imatrix setting."""
    x, labels = rows_under_test()
    im = imatrix(x.shape[1]) if request.param else None
    return x, im, labels, triton_quantize(Q, x, im)


def test_bytes_match_the_reference_codec(quantized):
    x, im, labels, got = quantized
    assert_same_bytes(got, reference_codec(Q, x, im), Q, "vs kernels.q6_k", labels)


def test_bytes_match_llama_cpp(quantized, reference):
    x, im, labels, got = quantized
    assert_same_bytes(got, reference.quantize_chunk(x, Q, im), Q, "vs ggml_quantize_chunk", labels)


def test_programs_split_rows_and_leave_a_partial_last_program(reference, monkeypatch):
    """Two programs, the first ending mid-row, the last half empty: each program finds its
    own super-blocks, masked lanes write nothing. (Which imatrix column a super-block
    takes is tested by the main launch, whose rows hold six super-blocks each.)"""
    from kernels.triton import groups

    monkeypatch.setattr(groups, "INTERPRETER_SUPERBLOCKS", 8)
    x = split_rows()
    assert_same_bytes(triton_quantize(Q, x, None), reference.quantize_chunk(x, Q, None), Q, "split programs")


def test_rows_reach_zero_int8_scales(quantized):
    """A sub-block whose int8 scale rounds to 0 keeps make_qx_quants' codes (C skips it)."""
    got = quantized[3]
    assert (got.reshape(-1, 210)[:, 192:208] == 0).any()
