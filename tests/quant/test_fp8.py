"""DeepSeek FP8 checkpoints: dequantized exactly as DeepSeek's fp8_cast_bf16 does, slab by slab."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from quant.sources import HFSource, fp8_dequant
from quant.tiny import fp8_quantize


def _deepseek_cast(w: torch.Tensor, s: torch.Tensor, block: int = 128) -> torch.Tensor:
    """The semantics of DeepSeek-V3's weight_dequant kernel, tile by tile: y = x * s, edge tiles cropped, to bf16."""
    out = torch.empty(w.shape, dtype=torch.bfloat16)
    for i in range(0, w.shape[0], block):
        for j in range(0, w.shape[1], block):
            tile = w[i : i + block, j : j + block].to(torch.float32) * s[i // block, j // block]
            out[i : i + block, j : j + block] = tile.to(torch.bfloat16)
    return out


@pytest.mark.parametrize("shape", [(320, 256), (130, 200), (128, 128), (7, 300)])
def test_fp8_dequant_is_deepseeks_cast(shape):
    g = torch.Generator().manual_seed(0)
    q, s = fp8_quantize(torch.randn(shape, generator=g) * 0.05)
    assert s.shape == (-(-shape[0] // 128), -(-shape[1] // 128))
    assert torch.equal(fp8_dequant(q, s), _deepseek_cast(q, s).float())


def test_row_slabs_of_an_fp8_weight_use_their_own_tiles(tmp_path):
    g = torch.Generator().manual_seed(1)
    q, s = fp8_quantize(torch.randn(300, 256, generator=g))
    save_file({"model.layers.0.mlp.up_proj.weight": q, "model.layers.0.mlp.up_proj.weight_scale_inv": s},
              str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"weight_block_size": [128, 128]}}))
    src = HFSource(tmp_path)
    name = "model.layers.0.mlp.up_proj.weight"
    full = src.read(name)
    assert torch.equal(full, fp8_dequant(q, s))
    for r0, r1 in [(0, 1), (100, 200), (127, 129), (250, 300)]:
        assert torch.equal(src.read(name, (r0, r1)), full[r0:r1])
    assert src.is_scale(name + "_scale_inv")
