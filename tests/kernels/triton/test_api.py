"""kernels.quantize's choice of backend (DSQ_KERNELS_BACKEND) and its checks on the Triton path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kernels
from kernels import api


# numpy warns about inf/NaN in lanes whose results are discarded, as a GPU would silently
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

def test_auto_keeps_cpu_tensors_on_the_reference(monkeypatch):
    monkeypatch.setenv(api.BACKEND_ENV, "auto")
    assert api._triton_codec("Q8_0", torch.zeros(1, 32)) is None


def test_torch_never_takes_triton(monkeypatch):
    monkeypatch.setenv(api.BACKEND_ENV, "torch")
    assert api._triton_codec("Q8_0", torch.zeros(1, 32)) is None


def test_unknown_backend_is_an_error(monkeypatch):
    monkeypatch.setenv(api.BACKEND_ENV, "cuda-please")
    with pytest.raises(ValueError, match="DSQ_KERNELS_BACKEND"):
        kernels.quantize(torch.zeros(1, 32), "Q8_0")


def test_forced_triton_quantizes_through_the_triton_codec(monkeypatch, triton_codecs, reference):
    monkeypatch.setenv(api.BACKEND_ENV, "triton")
    assert api._triton_codec("Q8_0", torch.zeros(1, 32)) is triton_codecs.codec("Q8_0")
    # a type without a Triton codec keeps the reference
    assert api._triton_codec("F16", torch.zeros(1, 32)) is None
    x = (torch.randn(4, 256, generator=torch.Generator().manual_seed(0)) * 3).to(torch.bfloat16)
    got = kernels.quantize(x, "Q8_0").numpy()
    assert np.array_equal(got, reference.quantize_chunk(x.float().numpy(), "Q8_0"))


def test_forced_triton_rejects_non_finite_input(monkeypatch, triton_codecs):
    monkeypatch.setenv(api.BACKEND_ENV, "triton")
    x = torch.zeros(3, 32)
    x[2, 5] = float("nan")
    with pytest.raises(ValueError, match="row 2"):
        kernels.quantize(x, "Q4_0")
