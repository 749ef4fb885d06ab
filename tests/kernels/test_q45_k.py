"""Q4_K and Q5_K: byte-exact against llama.cpp's ggml_quantize_chunk, with and without imatrix.

The test bodies live in tests/kernels/kquant_exact.py (shared by all K-quants); this
module picks the type through the `ktype` fixture.
"""
from __future__ import annotations

import pytest

from tests.kernels.kquant_exact import (  # noqa: F401  (collected by pytest)
    test_cases_match_llama_cpp,
    test_dequantize_random_blocks_matches_gguf,
    test_extreme_magnitudes_match_llama_cpp,
    test_property_matches_llama_cpp,
    test_quantize_is_deterministic_and_shaped,
    test_round_trip_error_is_small,
    test_row_chunking_is_invisible,
    test_shapes_match_llama_cpp,
    test_smollm2_weights_match_llama_cpp,
)


@pytest.fixture(scope="module", params=["Q4_K", "Q5_K"])
def ktype(request) -> str:
    return request.param
