"""kernels.triton.q3_k under Triton's interpreter: the bytes of the PyTorch reference codec
(kernels.q3_k) and of llama.cpp's ggml_quantize_chunk, with and without an imatrix."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from tests.kernels.triton.exact import (  # noqa: E402
    adversarial_rows, assert_same_bytes, imatrix, reference_codec, triton_quantize,
)

Q = "Q3_K"


@pytest.fixture(scope="module", params=[False, True], ids=["ref", "imatrix"])
def adversarial(request):
    """(x, imatrix, labels, Triton bytes): one launch per module and imatrix setting."""
    x, labels = adversarial_rows(n=512, rows_per_case=2)
    im = imatrix(x.shape[1]) if request.param else None
    return x, im, labels, triton_quantize(Q, x, im)


def test_adversarial_rows_match_the_reference_codec(adversarial):
    x, im, labels, got = adversarial
    assert_same_bytes(got, reference_codec(Q, x, im), Q, "vs kernels.q3_k", labels)


def test_adversarial_rows_match_llama_cpp(adversarial, reference):
    x, im, labels, got = adversarial
    assert_same_bytes(got, reference.quantize_chunk(x, Q, im), Q, "vs ggml_quantize_chunk", labels)


def test_adversarial_rows_have_zero_scale_subblocks(adversarial):
    """Sub-blocks whose 6-bit scale is 0 keep the search's codes in C: the rows cover them."""
    from kernels.q3_k import unpack_scales

    got = adversarial[3]
    sc = unpack_scales(torch.from_numpy(got.reshape(-1, 110)[:, 96:108].copy()))
    assert bool((sc == 0).any())


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
def test_real_weights_match_llama_cpp(reference, smollm2_weights, use_imatrix):
    x = np.ascontiguousarray(smollm2_weights[:16])
    im = imatrix(x.shape[1], seed=7) if use_imatrix else None
    assert_same_bytes(triton_quantize(Q, x, im), reference.quantize_chunk(x, Q, im), Q, "SmolLM2 rows")


def test_programs_split_rows_and_leave_a_partial_last_program(reference, monkeypatch):
    """Several programs, one ending mid-row and the last one part-empty: the imatrix
    follows each super-block's column, sigma2 each super-block's own weights."""
    from kernels.triton import groups

    monkeypatch.setattr(groups, "INTERPRETER_SUPERBLOCKS", 8)
    x = np.random.default_rng(11).standard_t(3, (4, 768)).astype(np.float32)  # 12 super-blocks: 8 + 4
    for im in (None, imatrix(768, seed=3)):
        assert_same_bytes(triton_quantize(Q, x, im), reference.quantize_chunk(x, Q, im), Q, "split programs")
