"""The Triton codec tests run Triton's interpreter (numpy on the CPU): no GPU needed.

TRITON_INTERPRET must be set before any @triton.jit kernel is defined (the decorator
reads it), so here, before pytest imports the test modules of this directory.
"""
from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture
def codec_path():
    """The Triton tests call their kernels directly: one run each, not the compiled and
    eager runs that tests/kernels/conftest.py gives the PyTorch codecs."""
    return "triton"
