"""llama.cpp's own quantizer, through ctypes: the yardstick for tests and benchmarks.

Never used by kernels (this package is outside its import path). Loads libggml-base from the llama-cpp-python install.
"""
from __future__ import annotations

import ctypes
import functools
import pathlib

import numpy as np

from kernels.types import qtype, row_bytes


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The libggml-base shared library shipped inside llama_cpp; ImportError if absent."""
    import llama_cpp  # noqa: F401  (ImportError tells callers to skip)

    lib_dir = pathlib.Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        path = lib_dir / name
        if path.exists():
            lib = ctypes.CDLL(str(path))
            break
    else:
        raise ImportError(f"libggml-base not found in {lib_dir}")
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
    ]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    return lib


def quantize_chunk(x: np.ndarray, q: str, imatrix: "np.ndarray | None" = None) -> np.ndarray:
    """ggml_quantize_chunk on float32 [rows, n] -> uint8 [rows, row_bytes]."""
    t = qtype(q)
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, n = x.shape
    out = np.empty((rows, row_bytes(t, n)), dtype=np.uint8)
    imp = None
    if imatrix is not None:
        imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
        imp = imatrix.ctypes.data
    written = library().ggml_quantize_chunk(int(t.ggml_type), x.ctypes.data, out.ctypes.data, 0, rows, n, imp)
    assert written == out.nbytes, (written, out.nbytes)
    return out
