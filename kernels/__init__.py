"""GGUF quantization codecs in PyTorch, byte-identical to llama.cpp's ggml-quants.c.

Never imports Django. Public API: quantize, dequantize, row_bytes, block_size.

OpenMP waits passively unless the environment says otherwise (set here, before torch
loads libgomp; quant/__init__.py and dsq/__init__.py do the same, since either may be
imported first). Why: libgomp's default lets a team's idle threads spin for about 3 ms
at every barrier, and the eager codecs run thousands of small intra-op parallel ops on
the calling thread. On a machine whose cores are shared (other jobs, a second worker,
the tests) the spinning thread takes the core the thread it waits for needs: a whole
conversion (scripts/time_convert.py's model, 2 of its 6 layers) took 49-98 s with the
default and 5-10 s passive on the 2-core CI machine, measured interleaved. The
pipeline's reader thread, a second OpenMP team, had hidden this by making libgomp
throttle its spinning (more threads than cores), which is why the pipeline merge and
main timed so differently: load, not the overlap, decided both numbers.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp (see above)

from kernels.api import dequantize, quantize
from kernels.types import TYPES, QType, block_size, qtype, row_bytes

__all__ = ["quantize", "dequantize", "row_bytes", "block_size", "qtype", "QType", "TYPES"]
