"""MXFP4: byte-identical to llama.cpp's ggml_quantize_chunk, dequantized bit for bit as gguf-py does."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

import kernels
from kernels import mxfp4
from tests.kernels.cases import assert_dequantize_exact, assert_quantize_exact, imatrix_for, weight_cases

CASES = dict(weight_cases(n=512, rows=8))


def _one_value_blocks(values: np.ndarray) -> np.ndarray:
    """float32 [len(values), 32]: block i holds values[i], -0.3 * values[i] and 0.77 * values[i]
    among zeros, so values[i] is the block's amax and decides its exponent."""
    x = np.zeros((len(values), 32), np.float32)
    x[:, 5] = values
    x[:, 7] = -values * np.float32(0.3)
    x[:, 20] = values * np.float32(0.77)
    return x


@pytest.mark.parametrize("use_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bytes_match_llama_cpp(reference, case, use_imatrix):
    x = CASES[case]
    im = imatrix_for(x.shape[1]) if use_imatrix else None
    data = assert_quantize_exact("MXFP4", x, im, case)
    assert_dequantize_exact("MXFP4", data, x.shape[1])


def test_real_weights_match_llama_cpp(reference, smollm2_weights):
    x = smollm2_weights
    data = assert_quantize_exact("MXFP4", x, None, "smollm2")
    deq = assert_dequantize_exact("MXFP4", data, x.shape[1])
    assert np.abs(deq - x).mean() < 0.2 * np.abs(x).mean()  # a real quantizer, not an all-zero one


def test_exponent_near_every_power_of_two_matches_llama_cpp(reference):
    """floorf(log2f(amax)): log2f rounds up to the integer for amax a few ulps below a power of
    two (up to about 90 ulps); every float from 256 ulps below to 8 above each of 2**-149 ..
    2**127, subnormals and the wrapped exponents of amax < 2**-125 included."""
    powers = np.ldexp(np.float32(1), np.arange(-149, 128)).astype(np.float32).view(np.int32)
    bits = (powers[:, None] + np.arange(-256, 9, dtype=np.int32)[None, :]).ravel()
    bits = np.unique(bits[(bits > 0) & (bits < 0x7F800000)])
    assert_quantize_exact("MXFP4", _one_value_blocks(bits.view(np.float32)), None, "powers of two")


def test_ties_and_neighbours_match_llama_cpp(reference):
    """Weights on every level and every midpoint between levels (ties keep the earlier code),
    one ulp either side, both signs, under several exponents."""
    half_levels = np.arange(0, 25, dtype=np.float32) / 2  # 0, 0.5, ..., 12 (the doubled e2m1 grid)
    rows = []
    for scale in (2.0**-130, 2.0**-128, 2.0**-20, 0.25, 1.0, 3.0, 2.0**124):
        d = np.float32(scale)
        v = half_levels * d
        v = np.concatenate([v, np.nextafter(v, np.float32(np.inf)), np.nextafter(v, np.float32(-np.inf))])
        v = np.concatenate([v, -v]).astype(np.float32)
        v = np.resize(v, -(-len(v) // 31) * 31).reshape(-1, 31)
        # each block's amax is 12 * d, the top level: for d a power of two the block's scale is d
        rows.append(np.concatenate([np.full((len(v), 1), np.float32(12) * d), v], axis=1))
    x = np.concatenate(rows).astype(np.float32)
    assert_quantize_exact("MXFP4", x, None, "ties")


def test_tiny_blocks_wrap_the_exponent_as_c_does(reference):
    """amax below 2**-125 gives a negative exponent that C's (uint8_t) cast wraps to 232..255."""
    # floor(log2(amax)) = -126, -149, -133 (1e-40), -125: e = 125 + that, modulo 256
    x = _one_value_blocks(np.array([2.0**-126, 2.0**-149, 1e-40, 2.0**-125], np.float32))
    data = assert_quantize_exact("MXFP4", x, None, "tiny")
    assert data[:, 0].tolist() == [255, 232, 248, 0]
    assert (data[:3, 1:] == 0).all()  # the huge scale rounds every weight to code 0


def test_imatrix_is_ignored(reference):
    x = torch.from_numpy(CASES["student_t3"])
    a = kernels.quantize(x, "MXFP4")
    b = kernels.quantize(x, gguf.GGMLQuantizationType.MXFP4, torch.from_numpy(imatrix_for(512)))
    assert torch.equal(a, b)


def test_chunking_is_invisible(reference, monkeypatch):
    from kernels import api

    monkeypatch.setattr(api, "CHUNK_WEIGHTS", 3 * 512)
    monkeypatch.setattr(mxfp4, "_SUB_BLOCKS", 5)
    assert_quantize_exact("MXFP4", CASES["gaussian"], None, "chunked")


@pytest.mark.filterwarnings("ignore:overflow encountered in multiply:RuntimeWarning")  # gguf-py at e >= 253
def test_dequantize_every_exponent_and_code_matches_gguf_py():
    """All 256 exponent bytes (255 and the overflowing scales of 253..255 included) with all 16 codes."""
    blocks = np.zeros((256, 17), np.uint8)
    blocks[:, 0] = np.arange(256)
    codes = np.arange(32) % 16
    blocks[:, 1:] = (codes[:16] | (codes[16:] << 4)).astype(np.uint8)
    got = assert_dequantize_exact("MXFP4", blocks.reshape(8, 32 * 17), 32 * 32)
    # 2**(e - 128) times the doubled e2m1 value: e = 128 is d = 1
    assert got.reshape(256, 32)[128].tolist() == list(mxfp4.KVALUES) * 2


def test_api_geometry():
    assert kernels.row_bytes("MXFP4", 4096) == 128 * 17
    assert kernels.block_size(gguf.GGMLQuantizationType.MXFP4) == 32
    assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.MXFP4] == (32, 17)
    with pytest.raises(ValueError):
        kernels.quantize(torch.zeros(1, 48), "MXFP4")


def test_levels_round_trip_exactly():
    """A block whose weights are already on its grid comes back unchanged."""
    d = np.float32(2.0**-7)
    x = (np.array(mxfp4.KVALUES * 2, np.float32) * d).reshape(1, 32)
    q = kernels.quantize(torch.from_numpy(x), "MXFP4")
    assert q[0, 0].item() == 128 - 7
    assert torch.equal(kernels.dequantize(q, "MXFP4", 32), torch.from_numpy(x))
