"""Every Triton codec of kernels.triton, with and without an importance matrix, equals llama.cpp's
ggml_quantize_chunk and the PyTorch reference byte for byte, on the adversarial rows of
tests/kernels/cases.py and real SmolLM2 rows.

All rows of a type go through one launch (the interpreter's cost is per operation, whatever
the tile's size), so each test is one kernel run.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tests.kernels.cases import first_mismatch, imatrix_for, smollm2_path, smollm2_rows, weight_cases

N = 512
# Q2_K, Q3_K and Q6_K have their own test modules beside this one.
TRITON_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K"]


def _rows() -> "tuple[np.ndarray, list[str]]":
    """Two rows of every adversarial case, then SmolLM2 rows cut to N columns; the label of each row."""
    parts, labels = [], []
    for name, x in weight_cases(n=N, rows=2):
        parts.append(x)
        labels += [name] * len(x)
    if smollm2_path() is not None:
        real = smollm2_rows(rows=8, cols=1536).reshape(-1, N)
        parts.append(real)
        labels += ["smollm2"] * len(real)
    return np.ascontiguousarray(np.concatenate(parts)), labels


ROWS, LABELS = _rows()


@pytest.mark.parametrize("imatrix", [False, True], ids=["plain", "imatrix"])
@pytest.mark.parametrize("qname", TRITON_TYPES)
def test_triton_codec_matches_llama_cpp_and_reference(triton_codecs, reference, qname, imatrix):
    from kernels.codecs import CODECS
    from kernels.types import qtype

    if qname not in triton_codecs.TRITON_CODECS:
        pytest.skip(f"no Triton codec for {qname} on this branch")
    im = imatrix_for(N) if imatrix else None
    x = torch.from_numpy(ROWS)
    imt = None if im is None else torch.from_numpy(im)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's divide-by-zero in discarded lanes
        got = triton_codecs.codec(qname)(x, imt).numpy()
    size = qtype(qname).type_size
    want = reference.quantize_chunk(ROWS, qname, im)
    if not np.array_equal(got, want):
        r = int(np.argwhere(got != want)[0][0])
        pytest.fail(f"{qname} vs llama.cpp ({LABELS[r]} rows): {first_mismatch(got, want, size)}")
    spec = CODECS[qname].quantize(x, imt).numpy()
    assert np.array_equal(got, spec), f"{qname} vs reference codec: {first_mismatch(got, spec, size)}"
