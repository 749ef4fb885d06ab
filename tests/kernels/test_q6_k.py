"""Q6_K: byte-identical to llama.cpp (quantize_row_q6_K_ref / _impl), dequantize equal to gguf."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kernels
from tests.kernels.cases import (
    assert_dequantize_exact,
    assert_quantize_exact,
    imatrix_for,
    weight_cases,
)

CASES = dict(weight_cases(n=512, rows=8))


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bytes_match_llama_cpp(reference, case, use_imatrix):
    x = CASES[case]
    im = imatrix_for(x.shape[1]) if use_imatrix else None
    data = assert_quantize_exact("Q6_K", x, im, case)
    assert_dequantize_exact("Q6_K", data, x.shape[1])


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
def test_real_weights_match_llama_cpp(reference, smollm2_weights, use_imatrix):
    x = smollm2_weights
    im = imatrix_for(x.shape[1], seed=7) if use_imatrix else None
    data = assert_quantize_exact("Q6_K", x, im, "smollm2")
    deq = assert_dequantize_exact("Q6_K", data, x.shape[1])
    assert np.abs(deq - x).max() < 0.05 * np.abs(x).max()


def test_slices_are_invisible(reference, monkeypatch):
    """Super-blocks split across API chunks and codec slices give the same bytes."""
    from kernels import api, q6_k

    monkeypatch.setattr(api, "CHUNK_WEIGHTS", 3 * 512)
    monkeypatch.setattr(q6_k, "_SUB_SUPERBLOCKS", 3)
    for im in (None, imatrix_for(512)):
        assert_quantize_exact("Q6_K", CASES["student_t3"], im, "sliced")


def test_zero_scale_subblock_keeps_search_codes(reference):
    """A sub-block whose int8 scale rounds to 0 keeps make_qx_quants' codes (C skips it)."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((4, 256)) * 1e-4).astype(np.float32)
    x[:, 0] = 50.0  # one huge sub-block: every other scale rounds to 0
    data = assert_quantize_exact("Q6_K", x, None, "zero-scale")
    assert (data[:, 192 + 1 : 208] == 0).any()


def test_roundtrip_error_is_bounded():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 512)).astype(np.float32)
    q = kernels.quantize(torch.from_numpy(x), "Q6_K")
    y = kernels.dequantize(q, "Q6_K", 512).numpy()
    sub = np.abs(x.reshape(-1, 16)).max(1)
    err = np.abs((x - y).reshape(-1, 16)).max(1)
    # half a step of a 6-bit grid, plus the int8 scale's own rounding
    assert (err <= sub / 31 * 1.2 + 1e-6).all()
    assert np.abs(x - y).mean() < 0.02
