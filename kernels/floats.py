"""F32 / F16 / BF16 pass-through, with ggml's rounding (fp16 and bf16 round to nearest even)."""
from __future__ import annotations

import torch


def _as_bytes(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.uint8).reshape(x.shape[0], -1)


def quantize_f32(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    return _as_bytes(x)


def _narrowed(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x cast to a narrower float type; a finite value that rounds to Inf (above 65504 for
    F16) is a ValueError, as NaN/Inf input is: a silent Inf weight would poison the model."""
    y = x.to(dtype)
    if not bool(torch.isfinite(y).all()):
        big = float(x.abs().max())
        raise ValueError(f"value {big:g} overflows {str(dtype).removeprefix('torch.')} (largest finite {torch.finfo(dtype).max:g})")
    return y


def quantize_f16(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    return _as_bytes(_narrowed(x, torch.float16))


def quantize_bf16(x: torch.Tensor, imatrix: "torch.Tensor | None") -> torch.Tensor:
    # ggml_fp32_to_bf16 rounds to nearest even, and NaN never reaches here (validated).
    return _as_bytes(_narrowed(x, torch.bfloat16))


def dequantize_f32(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    return data.contiguous().view(torch.float32).reshape(data.shape[0], n_per_row)


def dequantize_f16(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    return data.contiguous().view(torch.float16).reshape(data.shape[0], n_per_row).float()


def dequantize_bf16(data: torch.Tensor, n_per_row: int) -> torch.Tensor:
    return data.contiguous().view(torch.bfloat16).reshape(data.shape[0], n_per_row).float()
