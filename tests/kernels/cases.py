"""Shared data for the codec tests: weight cases, real SmolLM2 weights, imatrices, comparisons.

Every codec test (legacy types, K-quants) draws its inputs from here so all
types face the same hard cases; import with ``from tests.kernels.cases import ...``.
Nothing here needs llama.cpp; the tests that compare against it call
``reference_or_skip()``. The pytest fixtures live in conftest.py beside this file.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from benchmarks.kernels.sample_weights import SMOLLM2_FILE, SMOLLM2_TENSORS, read_tensor, smollm2_path, smollm2_rows  # noqa: F401


def reference_or_skip():
    """benchmarks.kernels.reference with its library loaded; skips the test when llama_cpp is not installed."""
    pytest.importorskip("llama_cpp")
    from benchmarks.kernels import reference

    reference.library()
    return reference


def weight_cases(n: int = 512, rows: int = 8, seed: int = 0) -> Iterator["tuple[str, np.ndarray]"]:
    """(name, float32 [rows, n]) pairs covering the hard cases for block quantizers.

    n must be a multiple of 256 so every type (32- and 256-blocks) accepts the
    same arrays. Each case stresses one branch of ggml-quants.c: outliers pick
    the block scale, zero/constant rows hit the zero-scale guards, tiny values
    hit GROUP_MAX_EPS, signed zeros hit the sign of stored fp16 zeros.
    """
    rng = np.random.default_rng(seed)
    f = np.float32
    yield "gaussian", rng.standard_normal((rows, n)).astype(f)
    yield "gaussian_small", (rng.standard_normal((rows, n)) * 0.02).astype(f)
    yield "student_t3", rng.standard_t(3, (rows, n)).astype(f)
    out = (rng.standard_normal((rows, n)) * 0.05).astype(f)
    out[np.arange(rows), rng.integers(0, n, rows)] = rng.choice([-1, 1], rows) * 40.0
    yield "outlier", out
    yield "zeros", np.zeros((rows, n), f)
    signed = np.zeros((rows, n), f)
    signed[::2] = -0.0
    signed[1::2, ::3] = -0.0
    yield "signed_zeros", signed
    yield "constant", np.full((rows, n), 0.37, f)
    yield "constant_negative", np.full((rows, n), -2.5, f)
    yield "tiny", (rng.standard_normal((rows, n)) * 1e-30).astype(f)
    yield "all_negative", -np.abs(rng.standard_normal((rows, n))).astype(f) - 0.01
    yield "all_positive", np.abs(rng.standard_normal((rows, n))).astype(f)
    sparse = rng.standard_normal((rows, n)).astype(f)
    sparse[rng.random((rows, n)) < 0.7] = 0
    yield "sparse", sparse
    # Small integers and exact halves: rounding ties at every step.
    yield "ties", (rng.integers(-16, 17, (rows, n)) * 0.5).astype(f)
    mixed = rng.standard_normal((rows, n)).astype(f)
    mixed[:, : n // 4] *= 1e-3  # blocks of very different magnitude within one row
    mixed[:, n // 4 : n // 2] = 0
    yield "mixed_scale", mixed


def imatrix_for(n: int, seed: int = 1) -> np.ndarray:
    """A plausible importance matrix: positive, spread over orders of magnitude, some exact zeros."""
    rng = np.random.default_rng(seed)
    im = np.exp(rng.standard_normal(n) * 1.5).astype(np.float32)
    im[rng.random(n) < 0.05] = 0
    return im


def first_mismatch(got: np.ndarray, want: np.ndarray, type_size: int) -> str:
    """Human-readable location of the first differing byte: row, block, byte in block, values."""
    diff = np.argwhere(got != want)
    if diff.size == 0:
        return "identical"
    r, c = diff[0]
    blk, off = divmod(int(c), type_size)
    nbad = int((got != want).sum())
    return (
        f"{nbad} bytes differ; first at row {r}, block {blk}, byte {off}: got {got[r, c]:#04x} want "
        f"{want[r, c]:#04x}; block got {got[r, blk * type_size:(blk + 1) * type_size].tobytes().hex()} "
        f"want {want[r, blk * type_size:(blk + 1) * type_size].tobytes().hex()}"
    )


def assert_quantize_exact(qname: str, x: np.ndarray, imatrix: "np.ndarray | None", label: str = "") -> np.ndarray:
    """kernels.quantize(x) must equal ggml_quantize_chunk(x) byte for byte; returns the bytes.

    The failure message names the first differing row, block and byte.
    """
    import torch

    import kernels
    from benchmarks.kernels import reference
    from kernels.types import qtype

    want = reference.quantize_chunk(x, qname, imatrix)
    im = None if imatrix is None else torch.from_numpy(np.ascontiguousarray(imatrix))
    got = kernels.quantize(torch.from_numpy(np.ascontiguousarray(x)), qname, im).numpy()
    assert got.shape == want.shape, (got.shape, want.shape)
    if not np.array_equal(got, want):
        what = f"{qname} {label} imatrix={'yes' if imatrix is not None else 'no'}"
        raise AssertionError(f"{what}: {first_mismatch(got, want, qtype(qname).type_size)}")
    return want


def assert_dequantize_exact(qname: str, data: np.ndarray, n_per_row: int) -> np.ndarray:
    """kernels.dequantize(data) must equal gguf.quants.dequantize bit for bit; returns the floats."""
    import gguf
    import torch

    import kernels

    got = kernels.dequantize(torch.from_numpy(data), qname, n_per_row).numpy()
    want = gguf.quants.dequantize(data, gguf.GGMLQuantizationType[qname]).reshape(got.shape)
    bad = np.argwhere(got.view(np.uint32) != want.view(np.uint32))
    if bad.size:
        r, c = bad[0]
        raise AssertionError(
            f"{qname} dequantize: {len(bad)} values differ; first at row {r}, col {c}: got {got[r, c]!r} want {want[r, c]!r}"
        )
    return got
