"""Triton codec tests run the kernels in Triton's interpreter (numpy on the CPU).

TRITON_INTERPRET must be set before kernels.triton's modules are imported (triton.jit
decides at decoration time), hence at this conftest's import. Under the interpreter every
op is an IEEE float32 numpy op, so these tests prove the kernels' logic -- C's order of
operations, rounding, packing -- exactly as the GPU runs it with fp fusion off.
"""
from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(autouse=True)
def codec_path():
    """Overrides tests/kernels' compiled/eager parametrisation: the reference codecs are the
    spec here, and each Triton test runs once."""
    yield "triton"


@pytest.fixture(scope="session")
def triton_codecs():
    """kernels.triton with triton importable, skipping the test otherwise."""
    pytest.importorskip("triton")
    import kernels.triton as kt

    from kernels.triton.common import INTERPRETED

    assert INTERPRETED, "kernels.triton was imported before TRITON_INTERPRET=1 was set"
    return kt
