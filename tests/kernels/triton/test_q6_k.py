"""kernels.triton.q6_k under Triton's interpreter: the bytes of the PyTorch reference codec
(kernels.q6_k) and of llama.cpp's ggml_quantize_chunk, with and without an imatrix."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("triton")

from tests.kernels.triton.exact import (  # noqa: E402
    adversarial_rows, assert_same_bytes, imatrix, reference_codec, triton_quantize,
)

Q = "Q6_K"


def _inputs() -> "tuple[np.ndarray, list[str]]":
    x, labels = adversarial_rows(n=512, rows_per_case=2)
    rng = np.random.default_rng(5)
    zs = (rng.standard_normal((2, 512)) * 1e-4).astype(np.float32)
    zs[:, 0] = 50.0  # one huge sub-block: the other int8 scales round to 0, C keeps the search's codes
    return np.concatenate([x, zs]), labels + ["zero-scale"] * 2


@pytest.fixture(scope="module", params=[False, True], ids=["ref", "imatrix"])
def adversarial(request):
    """(x, imatrix, labels, Triton bytes): one launch per module and imatrix setting."""
    x, labels = _inputs()
    im = imatrix(x.shape[1]) if request.param else None
    return x, im, labels, triton_quantize(Q, x, im)


def test_adversarial_rows_match_the_reference_codec(adversarial):
    x, im, labels, got = adversarial
    assert_same_bytes(got, reference_codec(Q, x, im), Q, "vs kernels.q6_k", labels)


def test_adversarial_rows_match_llama_cpp(adversarial, reference):
    x, im, labels, got = adversarial
    assert_same_bytes(got, reference.quantize_chunk(x, Q, im), Q, "vs ggml_quantize_chunk", labels)
    assert (got[-2:, 192 + 1 : 208] == 0).any(), "no zero int8 scale in the zero-scale rows"


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
def test_real_weights_match_llama_cpp(reference, smollm2_weights, use_imatrix):
    x = np.ascontiguousarray(smollm2_weights[:16])
    im = imatrix(x.shape[1], seed=7) if use_imatrix else None
    assert_same_bytes(triton_quantize(Q, x, im), reference.quantize_chunk(x, Q, im), Q, "SmolLM2 rows")


def test_programs_split_rows_and_leave_a_partial_last_program(reference, monkeypatch):
    """Several programs, one ending mid-row and the last one part-empty: the imatrix
    follows each super-block's column, masked lanes write nothing."""
    from kernels.triton import groups

    monkeypatch.setattr(groups, "INTERPRETER_SUPERBLOCKS", 8)
    x = np.random.default_rng(11).standard_t(3, (4, 768)).astype(np.float32)  # 12 super-blocks: 8 + 4
    im = imatrix(768, seed=3)
    assert_same_bytes(triton_quantize(Q, x, im), reference.quantize_chunk(x, Q, im), Q, "split programs")
