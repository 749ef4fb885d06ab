"""kernels.arith: the C idioms keep the bits C gives, eagerly and compiled."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernels import arith


def test_seq_sum_from_zero_turns_negative_zero_positive_when_compiled():
    """C's ``float s = 0; s += -0.0f`` is +0.0; Inductor must not fold the zero away."""
    t = torch.tensor([-0.0, 0.0, -1.0, 1e-45])
    got = torch.compile(lambda v, z: arith.seq_sum_traced([v], z), dynamic=True)(t, arith.f32_tensor(0.0))
    assert got.view(torch.int32).tolist() == torch.tensor([0.0, 0.0, -1.0, 1e-45]).view(torch.int32).tolist()


def _c_first_abs_max(col: "list[float]") -> "tuple[float, float]":
    """C's scan, literally: ``if (fabsf(v) > amax) { amax = fabsf(v); max = v; }`` from 0."""
    amax = mx = 0.0
    for v in col:
        if abs(v) > amax:  # False for NaN, as in C
            amax, mx = abs(v), v
    return amax, mx


@pytest.mark.parametrize("dim", [0, 1])
def test_first_abs_max_is_cs_scan(dim):
    """Ties of +a and -a (the first wins), all-zero groups of either sign (+0.0), NaN (skipped)."""
    cols = [
        [1.0, -3.0, 3.0, 2.0],
        [3.0, -3.0, 0.0, 1.0],
        [-0.0, -0.0, -0.0, -0.0],
        [float("nan"), -2.0, 2.0, float("nan")],
        [0.5, float("nan"), -0.25, 0.0],
        [-7.0, 1.0, 2.0, 7.0],
    ]
    x = torch.tensor(cols, dtype=torch.float32)  # [groups, positions]
    if dim == 0:
        x = x.t().contiguous()
    amax, mx = arith.first_abs_max(x, dim)
    for g, col in enumerate(cols):
        want_amax, want_mx = _c_first_abs_max([float(np.float32(v)) for v in col])
        assert amax[g].item() == want_amax
        assert torch.tensor(want_mx).view(torch.int32) == mx[g].view(torch.int32), (g, mx[g].item(), want_mx)


def test_first_abs_max_traced_is_cs_scan():
    x = torch.tensor([[1.0, -3.0, float("nan"), 0.0], [-1.0, 3.0, 2.0, -0.0]])
    got = arith.first_abs_max_traced(list(x.unbind(0)))
    assert got.view(torch.int32).tolist() == torch.tensor([1.0, -3.0, 2.0, 0.0]).view(torch.int32).tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int32, torch.uint8, torch.int64])
def test_select_is_where_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 8, generator=g).to(dtype)
    b = torch.randn(64, 8, generator=g).to(dtype)
    if dtype.is_floating_point:
        a[0, 0], b[1, 1], a[2, 2] = -0.0, float("nan"), float("-inf")
    mask = torch.rand(64, 8, generator=g) < 0.5
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]

    def same(got, want):
        return torch.equal(got.view(bits), want.view(bits))

    assert same(arith.select(mask, a, b), torch.where(mask, a, b))
    assert same(arith.select(mask[:, :1], a, b), torch.where(mask[:, :1], a, b))  # mask broadcast
    assert same(arith.select(mask, a[:1], b), torch.where(mask, a[:1], b))  # values broadcast
    assert same(arith.select(mask, a, 0), torch.where(mask, a, torch.zeros_like(a)))
    assert same(arith.select(mask, 0, b), torch.where(mask, torch.zeros_like(b), b))


def test_nearest_int_rounds_half_to_even_and_pins_nan_on_request():
    v = torch.tensor([0.5, 1.5, -0.5, -2.5, 2.4999998, 4194303.0, float("nan")])
    got = arith.nearest_int(v, nan_zero=True).tolist()
    assert got == [0, 2, 0, -2, 2, 4194303, 0]
    weird_nan = torch.tensor([0x7FC12345], dtype=torch.int32).view(torch.float32)  # not x86's default NaN
    assert arith.nearest_int(weird_nan, nan_zero=True).item() == 0
    assert arith.nearest_int(weird_nan).item() != 0  # the raw bit trick: what C would give for that NaN


def test_div_rounds_once_where_a_reciprocal_would_not():
    """3 / 7 as a true division; multiplying by a rounded 1/7 is one ulp off for some values."""
    b = torch.arange(1, 4097, dtype=torch.float32)
    want = torch.from_numpy(np.float32(3.0) / b.numpy())
    assert torch.equal(arith.div(3.0, b), want)
    assert torch.equal(arith.div(b, 7.0), torch.from_numpy(b.numpy() / np.float32(7.0)))
