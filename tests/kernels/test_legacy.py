"""Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: byte-identical to llama.cpp, with and without imatrix."""
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

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
CASES = dict(weight_cases(n=512, rows=8))


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("qname", TYPES)
def test_bytes_match_llama_cpp(reference, qname, case, use_imatrix):
    x = CASES[case]
    im = imatrix_for(x.shape[1]) if use_imatrix else None
    data = assert_quantize_exact(qname, x, im, case)
    assert_dequantize_exact(qname, data, x.shape[1])


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("qname", TYPES)
def test_real_weights_match_llama_cpp(reference, smollm2_weights, qname, use_imatrix):
    x = smollm2_weights
    im = imatrix_for(x.shape[1], seed=7) if use_imatrix else None
    data = assert_quantize_exact(qname, x, im, "smollm2")
    deq = assert_dequantize_exact(qname, data, x.shape[1])
    # sanity: a real quantizer, not an all-zero one
    assert np.abs(deq - x).mean() < 0.2 * np.abs(x).mean()


@pytest.mark.parametrize("qname", TYPES)
def test_q8_0_and_friends_chunking_is_invisible(reference, monkeypatch, qname):
    """Rows split across API chunks and codec slices give the same bytes as one call."""
    from kernels import api, legacy

    monkeypatch.setattr(api, "CHUNK_WEIGHTS", 3 * 512)
    monkeypatch.setattr(legacy, "_SUB_BLOCKS", 5)
    x = CASES["student_t3"]
    assert_quantize_exact(qname, x, None, "chunked")
    assert_quantize_exact(qname, x, imatrix_for(512), "chunked")


def test_q8_0_ignores_imatrix(reference):
    x = CASES["gaussian"]
    a = kernels.quantize(torch.from_numpy(x), "Q8_0")
    b = kernels.quantize(torch.from_numpy(x), "Q8_0", torch.from_numpy(imatrix_for(512)))
    assert torch.equal(a, b)


def test_q8_0_rounds_half_away_from_zero():
    """x * (1/d) landing on .5 must round away from zero (roundf), not to even."""
    x = np.zeros((1, 32), np.float32)
    x[0, 0] = 127.0  # d = 1, id = 1
    x[0, 1:5] = [2.5, -2.5, 0.5, -3.5]
    q = kernels.quantize(torch.from_numpy(x), "Q8_0").numpy()[0]
    codes = q[2:].view(np.int8)
    assert codes[:5].tolist() == [127, 3, -3, 1, -4]


@pytest.mark.parametrize("qname", TYPES)
def test_roundtrip_error_is_bounded(qname):
    """|x - deq(q(x))| stays within one quantization step of each block."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 256)).astype(np.float32)
    q = kernels.quantize(torch.from_numpy(x), qname)
    y = kernels.dequantize(q, qname, 256).numpy()
    levels = {"Q4_0": 8, "Q4_1": 15, "Q5_0": 16, "Q5_1": 31, "Q8_0": 127}[qname]
    blocks = np.abs(x.reshape(-1, 32))
    span = blocks.max(1) if qname in ("Q4_0", "Q5_0", "Q8_0") else np.ptp(x.reshape(-1, 32), 1)
    err = np.abs((x - y).reshape(-1, 32)).max(1)
    assert (err <= span / levels * 1.01 + 1e-6).all()
