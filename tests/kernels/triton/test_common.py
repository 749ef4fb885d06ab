"""kernels.triton.common's C arithmetic, element by element, against C's definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

# numpy warns about inf/NaN in lanes whose results are discarded, as a GPU would silently
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from kernels.triton.common import fp16_bits, launch, nearest_int, roundf_small, trunc_i32  # noqa: E402


@triton.jit
def helpers(x_ptr, ni_ptr, tr_ptr, rf_ptr, h_ptr, n, B: tl.constexpr):
    k = tl.arange(0, B)
    m = k < n
    x = tl.load(x_ptr + k, mask=m, other=0.0)
    tl.store(ni_ptr + k, nearest_int(x), mask=m)
    tl.store(tr_ptr + k, trunc_i32(x), mask=m)
    small = tl.abs(x) < 4000000.0
    tl.store(rf_ptr + k, roundf_small(tl.where(small, x, 0.0)), mask=m)
    tl.store(h_ptr + k, fp16_bits(x), mask=m)


@pytest.fixture(scope="module")
def run(triton_codecs):
    """run(x float32 [n]) -> dict of int32 [n]: each helper applied to x in one launch."""

    def go(x: np.ndarray) -> "dict[str, np.ndarray]":
        xt = torch.from_numpy(x)
        outs = {name: torch.empty(len(x), dtype=torch.int32) for name in ("nearest", "trunc", "roundf", "fp16")}
        with np.errstate(all="ignore"):
            launch(helpers, (1,), xt, outs["nearest"], outs["trunc"], outs["roundf"], outs["fp16"], len(x), B=256)
        return {k: v.numpy() for k, v in outs.items()}

    return go


VALUES = np.array(
    [0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997, 3.4999998, 126.5, -127.5,
     1e-30, -1e-30, 4194303.5, 1e7, -1e7, 3e9, -3e9, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 1e5,
     6.1e-5, 5.96e-8, 2.9e-8, -3e-8, 0.1, 7.0, -8.000001],
    dtype=np.float32,
)


def test_nearest_int_is_ggml_bit_trick(run):
    """Round half to even below 2**22, C's garbage above, 0 for NaN (x86's default NaN)."""
    from kernels.arith import nearest_int

    got = run(VALUES)["nearest"]
    want = nearest_int(torch.from_numpy(VALUES), nan_zero=True).numpy()
    assert got.tolist() == want.tolist()
    assert got[2:8].tolist() == [0, 2, 2, 0, -2, -2]  # ties to even


def test_trunc_is_x86_cvttss2si(run):
    def c(v: float) -> int:
        if math.isnan(v) or not (-2**31 < v < 2**31):
            return -2**31
        return int(v)  # toward zero

    assert run(VALUES)["trunc"].tolist() == [c(float(v)) for v in VALUES]


def test_roundf_is_half_away_from_zero(run):
    def c(v: float) -> int:
        if not abs(v) < 4e6:
            return 0
        return int(math.copysign(math.floor(abs(v) + 0.5), v))  # exact in float64 for float32 v

    assert run(VALUES)["roundf"].tolist() == [c(float(v)) for v in VALUES]


def test_fp16_is_round_to_nearest_even(run):
    finite = VALUES[~np.isnan(VALUES)]
    got = run(finite)["fp16"]
    want = finite.astype(np.float16).view(np.uint16).astype(np.int32)
    assert got.tolist() == want.tolist()
