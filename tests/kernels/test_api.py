"""kernels.quantize / dequantize argument checking: every misuse is a ValueError."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kernels


def _x(rows=2, n=256):
    return torch.from_numpy(np.random.default_rng(0).standard_normal((rows, n)).astype(np.float32))


@pytest.mark.parametrize("bad", ["Q7_0", "IQ2_XXS", "", 42])
def test_unsupported_type(bad):
    with pytest.raises(ValueError):
        kernels.quantize(_x(), bad)
    with pytest.raises(ValueError):
        kernels.dequantize(torch.zeros((1, 34), dtype=torch.uint8), bad, 32)


@pytest.mark.parametrize("shape", [(256,), (1, 2, 256), ()])
def test_wrong_shape(shape):
    with pytest.raises(ValueError):
        kernels.quantize(torch.zeros(shape), "Q8_0")


def test_not_a_float_tensor():
    with pytest.raises(ValueError):
        kernels.quantize(torch.zeros((1, 32), dtype=torch.int32), "Q8_0")
    with pytest.raises(ValueError):
        kernels.quantize(np.zeros((1, 32), np.float32), "Q8_0")


@pytest.mark.parametrize("qname,n", [("Q8_0", 48), ("Q4_0", 16), ("Q6_K", 288), ("Q5_1", 0)])
def test_row_length_not_a_multiple_of_block(qname, n):
    with pytest.raises(ValueError):
        kernels.quantize(torch.zeros((1, n)), qname)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("qname", ["Q8_0", "Q4_1", "Q6_K"])
def test_non_finite_input(qname, bad):
    x = _x()
    x[1, 7] = bad
    with pytest.raises(ValueError, match="row 1"):
        kernels.quantize(x, qname)


def test_bad_imatrix():
    with pytest.raises(ValueError):
        kernels.quantize(_x(), "Q4_0", torch.ones(128))
    im = torch.ones(256)
    im[3] = float("nan")
    with pytest.raises(ValueError):
        kernels.quantize(_x(), "Q4_0", im)


def test_dequantize_wrong_bytes():
    with pytest.raises(ValueError):
        kernels.dequantize(torch.zeros((1, 33), dtype=torch.uint8), "Q8_0", 32)
    with pytest.raises(ValueError):
        kernels.dequantize(torch.zeros((1, 34), dtype=torch.int8), "Q8_0", 32)
    with pytest.raises(ValueError):
        kernels.dequantize(torch.zeros((1, 210), dtype=torch.uint8), "Q6_K", 200)


def test_other_float_dtypes_are_accepted():
    x = _x()
    a = kernels.quantize(x, "Q6_K")
    b = kernels.quantize(x.double(), "Q6_K")
    assert torch.equal(a, b)
    assert a.shape == (2, kernels.row_bytes("Q6_K", 256)) and a.dtype == torch.uint8
