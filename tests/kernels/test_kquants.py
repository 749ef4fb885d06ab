"""Q2_K, Q3_K, Q4_K and Q5_K: byte-exact against llama.cpp's ggml_quantize_chunk, with and without imatrix.

Each check runs our codec through the public API (kernels.quantize / dequantize) and
llama.cpp's ggml_quantize_chunk on the same float32 data and asserts equal bytes; the
failure message names the first differing row, block and byte.  Dequantization is
compared with gguf-py bit for bit (float32 bit patterns, so -0.0 and 0.0 differ).
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kernels
from kernels.types import qtype
from tests.kernels.cases import first_mismatch, imatrix_for, weight_cases

N_PER_ROW = 1024  # four super-blocks per row
ROWS = 64

CASE_NAMES = [name for name, _ in weight_cases(n=256, rows=1)]


def case(name: str, rows: int = ROWS, n: int = N_PER_ROW) -> np.ndarray:
    """The named case of tests.kernels.cases.weight_cases, rows x n float32."""
    return dict(weight_cases(n=n, rows=rows))[name]


def data_imatrix(x: np.ndarray) -> np.ndarray:
    """An imatrix as llama-imatrix makes them: mean squared activation per column.

    Stand-in activations: the weights themselves (so the importance follows the data).
    """
    return np.mean(x.astype(np.float64) ** 2, axis=0).astype(np.float32)


def ours(x: np.ndarray, t: str, imatrix: "np.ndarray | None") -> np.ndarray:
    im = None if imatrix is None else torch.from_numpy(imatrix)
    return kernels.quantize(torch.from_numpy(x), t, im).numpy()


def assert_quantize_exact(reference, x: np.ndarray, t: str, imatrix: "np.ndarray | None") -> np.ndarray:
    """Our bytes == llama.cpp's bytes for x (and imatrix); returns the bytes."""
    want = reference.quantize_chunk(x, t, imatrix)
    got = ours(x, t, imatrix)
    assert got.shape == want.shape and got.dtype == np.uint8
    assert np.array_equal(got, want), f"{t} quantize: " + first_mismatch(got, want, qtype(t).type_size)
    return want


def assert_dequantize_exact(data: np.ndarray, t: str, n_per_row: int) -> None:
    """Our dequantization == gguf.quants.dequantize, bit for bit (NaNs: both NaN)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf scales (huge weights) give inf*0
        want = gguf.quants.dequantize(data, gguf.GGMLQuantizationType[t]).reshape(data.shape[0], n_per_row)
    want = want.astype(np.float32)
    got = kernels.dequantize(torch.from_numpy(data), t, n_per_row).numpy()
    assert got.dtype == np.float32
    # bit patterns, except that any NaN equals any NaN (payloads are the FPU's business)
    differ = got.view(np.uint32) != want.view(np.uint32)
    differ &= ~(np.isnan(got) & np.isnan(want))
    bad = np.argwhere(differ)
    assert bad.size == 0, (
        f"{t} dequantize: {len(bad)} values differ; first at row {bad[0][0]}, column {bad[0][1]}: "
        f"got {got[tuple(bad[0])]!r} want {want[tuple(bad[0])]!r}"
    )


def random_blocks(t: str, rows: int, n_per_row: int, seed: int) -> np.ndarray:
    """Random block bytes whose fp16 fields are finite (NaN payloads are not worth comparing)."""
    rng = np.random.default_rng(seed)
    tt = qtype(t)
    data = rng.integers(0, 256, (rows, n_per_row // tt.block_size, tt.type_size), dtype=np.uint8)
    halves = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2)}[t]
    for off in halves:  # clear the top exponent bit of each fp16: |value| < 2
        data[:, :, off + 1] &= 0xBF
    return data.reshape(rows, -1)


def check_all_cases(reference, t: str, name: str, with_imatrix: bool) -> None:
    x = case(name)
    im = imatrix_for(x.shape[1]) if with_imatrix else None
    data = assert_quantize_exact(reference, x, t, im)
    assert_dequantize_exact(data, t, x.shape[1])


# --------------------------------------------------------------------------------------
# Tests: every K-quant faces the same checks.
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["Q2_K", "Q3_K", "Q4_K", "Q5_K"])
def ktype(request) -> str:
    return request.param


@pytest.mark.parametrize("with_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_cases_match_llama_cpp(reference, ktype, name, with_imatrix):
    check_all_cases(reference, ktype, name, with_imatrix)


@pytest.mark.parametrize("imatrix_kind", ["none", "synthetic", "from_data", "ones", "zeros"])
def test_smollm2_weights_match_llama_cpp(reference, smollm2_weights, ktype, imatrix_kind):
    x = smollm2_weights
    n = x.shape[1]
    im = {
        "none": None,
        "synthetic": imatrix_for(n, seed=7),
        "from_data": data_imatrix(x),
        "ones": np.ones(n, np.float32),
        "zeros": np.zeros(n, np.float32),
    }[imatrix_kind]
    data = assert_quantize_exact(reference, x, ktype, im)
    assert_dequantize_exact(data, ktype, n)


@pytest.mark.parametrize("rows,n", [(1, 256), (3, 768), (5, 2048)])
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["ref", "imatrix"])
def test_shapes_match_llama_cpp(reference, ktype, rows, n, with_imatrix):
    x = (np.random.default_rng(rows * n).standard_normal((rows, n)) * 0.1).astype(np.float32)
    im = imatrix_for(n, seed=n) if with_imatrix else None
    assert_quantize_exact(reference, x, ktype, im)


def test_row_chunking_is_invisible(reference, ktype, monkeypatch):
    """kernels.api splits big tensors into row chunks; the bytes must not depend on it."""
    import kernels.api

    x = case("student_t3", rows=24, n=1024)
    im = imatrix_for(1024, seed=3)
    monkeypatch.setattr(kernels.api, "CHUNK_WEIGHTS", 5 * 1024)  # 5 rows per chunk, last one short
    for imatrix in (None, im):
        assert_quantize_exact(reference, x, ktype, imatrix)


@pytest.mark.parametrize("scale", [1e13, 1e20, 3e37])
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["ref", "imatrix"])
def test_extreme_magnitudes_match_llama_cpp(reference, ktype, scale, with_imatrix):
    """Weights so large that x*x*x or sums of squares overflow to inf (and NaN appears
    inside the searches): C's comparisons quietly skip NaN, and so must we."""
    x = (case("gaussian", rows=8, n=512) * np.float32(scale / 4)).astype(np.float32)
    im = imatrix_for(512, seed=5) if with_imatrix else None
    assert_quantize_exact(reference, x, ktype, im)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dequantize_random_blocks_matches_gguf(ktype, seed):
    """Every bit pattern decodes like gguf-py, not only the ones our quantizer writes."""
    data = random_blocks(ktype, rows=16, n_per_row=512, seed=seed)
    assert_dequantize_exact(data, ktype, 512)


def test_quantize_is_deterministic_and_shaped(ktype):
    x = torch.from_numpy(case("gaussian", rows=4, n=512))
    a = kernels.quantize(x, ktype)
    b = kernels.quantize(x.clone(), ktype)
    assert a.dtype == torch.uint8 and tuple(a.shape) == (4, kernels.row_bytes(ktype, 512))
    assert torch.equal(a, b)


def test_round_trip_error_is_small(ktype):
    """Sanity on what the bytes mean: the reconstruction error shrinks with more bits."""
    x = torch.from_numpy(case("gaussian", rows=16, n=1024))
    y = kernels.dequantize(kernels.quantize(x, ktype), ktype, 1024)
    rel = float(((y - x) ** 2).mean() / (x**2).mean())
    bound = {"Q2_K": 0.15, "Q3_K": 0.06, "Q4_K": 0.015, "Q5_K": 0.004}[ktype]
    assert rel < bound, f"{ktype}: relative squared error {rel:.4f} >= {bound}"


_MAGNITUDES = [1e-30, 1e-6, 1e-2, 1.0, 300.0, 1e20]


@st.composite
def float_rows(draw):
    """Small [rows, 256*k] float32 arrays: random values times one magnitude, with some
    exact zeros, repeated values and sign patterns that hit ties and zero-scale guards."""
    rows = draw(st.integers(1, 3))
    nblk = draw(st.integers(1, 2))
    base = draw(
        hnp.arrays(
            np.float32,
            (rows, 256 * nblk),
            elements=st.floats(-8, 8, width=32, allow_subnormal=False),
        )
    )
    scale = np.float32(draw(st.sampled_from(_MAGNITUDES)))
    x = (base * scale).astype(np.float32)
    if draw(st.booleans()):
        x = np.abs(x) * np.float32(draw(st.sampled_from([1.0, -1.0])))
    return np.ascontiguousarray(x)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(x=float_rows(), use_imatrix=st.booleans(), im_seed=st.integers(0, 2**16))
def test_property_matches_llama_cpp(reference, ktype, x, use_imatrix, im_seed):
    im = imatrix_for(x.shape[1], seed=im_seed) if use_imatrix else None
    data = assert_quantize_exact(reference, x, ktype, im)
    assert_dequantize_exact(data, ktype, x.shape[1])
