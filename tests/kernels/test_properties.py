"""Property-based checks (hypothesis) for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q6_K.

Random small tensors: bytes equal llama.cpp's, with and without imatrix, and
the round trip stays within the quantization step.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kernels
from tests.kernels.cases import assert_quantize_exact

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q6_K"]

# Magnitudes from 1e-6 to 1e4 with exact zeros, signed zeros and repeats mixed in.
_values = st.one_of(
    st.floats(-1e4, 1e4, width=32, allow_subnormal=False),
    st.floats(-0.0009765625, 0.0009765625, width=32, allow_subnormal=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -2.5]),
)


@st.composite
def tensors(draw, n=256):
    rows = draw(st.integers(1, 3))
    x = draw(hnp.arrays(np.float32, (rows, n), elements=_values))
    scale = draw(st.sampled_from([1.0, 1e-20, 1e20]))
    return (x * np.float32(scale)).astype(np.float32)


@st.composite
def imatrices(draw, n=256):
    return draw(hnp.arrays(np.float32, (n,), elements=st.floats(0, 100, width=32, allow_subnormal=False)))


_settings = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("qname", TYPES)
@_settings
@given(x=tensors(), im=st.one_of(st.none(), imatrices()))
def test_random_bytes_match_llama_cpp(reference, qname, x, im):
    assert_quantize_exact(qname, x, im, "hypothesis")


@pytest.mark.parametrize("qname", TYPES)
@_settings
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.just(256)), elements=_values))
def test_random_roundtrip_error_bounded(qname, x):
    """Within fp16's range for the block scale, every value comes back within a quarter of
    its block's range, plus the absolute error of an fp16-subnormal scale times the largest code."""
    q = kernels.quantize(torch.from_numpy(x), qname)
    y = kernels.dequantize(q, qname, x.shape[1]).numpy()
    block = 16 if qname == "Q6_K" else 32
    xb = x.reshape(-1, block).astype(np.float64)
    err = np.abs(xb - y.reshape(-1, block)).max(1)
    span = np.abs(xb).max(1) if qname != "Q6_K" else np.abs(x.reshape(-1, 256)).max(1).repeat(16)
    fp16_floor = 2.0**-25 * 128 * (128 if qname == "Q6_K" else 1)
    assert (err <= 0.25 * span + fp16_floor).all()
