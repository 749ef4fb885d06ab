"""kernels.q3_k: its compiled reference path hands what it cannot do exactly to the eager code.

(Bytes against llama.cpp for Q3_K, like the other K-quants: test_kquants.py.)
"""
from __future__ import annotations

import numpy as np
import torch

import kernels
from kernels import fused, q3_k
from tests.kernels.cases import weight_cases


def test_q3_k_falls_back_to_the_eager_search_when_a_quotient_is_out_of_range(monkeypatch, reference):
    """The compiled Q3_K search flags groups where torch.round may differ from C's
    nearest_int (|quotient| >= 2**22); the codec must then redo the slice eagerly."""
    real = q3_k.q3_search
    calls = []

    def flagged(x, groups, nmax):
        calls.append(x.shape[1])
        return (*real(x, groups, nmax)[:3], False)

    monkeypatch.setattr(q3_k, "q3_search", flagged)
    fused.set_enabled(True)
    x = np.random.default_rng(5).standard_normal((8, 1024)).astype(np.float32)
    got = kernels.quantize(torch.from_numpy(x), "Q3_K").numpy()
    assert calls, "the compiled search was not used"
    assert np.array_equal(got, reference.quantize_chunk(x, "Q3_K", None))


def test_q3_k_redoes_blocks_the_packing_kernel_cannot_code(monkeypatch, reference):
    """Sub-blocks whose stored scale is 0 keep the search's codes, which the packing kernel
    leaves to the eager packer (_redo_blocks): the outlier rows have such sub-blocks.
    Forcing every block through the eager packer must give the same bytes."""

    fused.set_enabled(True)
    x = dict(weight_cases(n=1024))["outlier"]
    want = reference.quantize_chunk(x, "Q3_K", None)
    redone = []
    real_redo = q3_k._redo_blocks

    def counting(out, xs, mx, ls, d, redo):
        redone.append(int(redo.any(dim=1).sum()))
        real_redo(out, xs, mx, ls, d, redo)

    monkeypatch.setattr(q3_k, "_redo_blocks", counting)
    assert np.array_equal(kernels.quantize(torch.from_numpy(x), "Q3_K").numpy(), want)
    assert sum(redone) > 0, "no zero-scale sub-block in the outlier rows"

    real_pack = q3_k._fused_pack_c
    monkeypatch.setattr(q3_k, "_fused_pack_c", lambda *a: (real_pack(*a)[0], torch.ones_like(real_pack(*a)[1]), None))
    assert np.array_equal(kernels.quantize(torch.from_numpy(x), "Q3_K").numpy(), want)
