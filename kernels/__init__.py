"""GGUF quantization codecs in PyTorch, byte-identical to llama.cpp's ggml-quants.c.

Never imports Django. Public API: quantize, dequantize, row_bytes, block_size.
"""
from kernels.api import dequantize, quantize
from kernels.types import TYPES, QType, block_size, qtype, row_bytes

__all__ = ["quantize", "dequantize", "row_bytes", "block_size", "qtype", "QType", "TYPES"]
