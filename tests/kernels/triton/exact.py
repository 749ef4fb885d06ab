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
from tests.kernels.cases import first_mismatch, imatrix_for, weight_cases


def adversarial_rows(n: int = 512, rows_per_case: int = 2) -> "tuple[np.ndarray, list[str]]":
    """Every case of tests.kernels.cases.weight_cases (ties, outliers, 1e-30, all-zero, ...)
    stacked: float32 [cases * rows_per_case, n] and the case name of each row."""
    xs, labels = [], []
    for name, x in weight_cases(n=n, rows=rows_per_case):
        xs.append(x)
        labels += [name] * x.shape[0]
    return np.ascontiguousarray(np.concatenate(xs)), labels


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
