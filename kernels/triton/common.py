"""C's float32 arithmetic in Triton, bit for bit: the helpers every Triton codec uses.

The PyTorch codecs (kernels/) are the specification and llama.cpp's ggml-quants.c, built
for plain x86-64 (SSE2, no FMA), is what they match. On a GPU four things break that
unless asked for, and each has its answer here:

* Fused multiply-add: the compiler contracts ``a*b + c`` into one rounding. Every kernel
  is launched through :func:`launch`, which compiles with ``enable_fp_fusion=False``
  (and ``enable_reflect_ftz=False``: no flush-to-zero in libdevice either).
* Division and square root: Triton lowers ``/`` on float32 to ``div.full.f32`` and
  ``tl.sqrt`` to ``sqrt.approx.f32``, both off by ulps. :func:`div_rn` / :func:`sqrt_rn`
  are the correctly rounded ``div.rn.f32`` / ``sqrt.rn.f32``, as C's ``/`` and sqrtf.
* Sums: ``tl.sum`` is a tree. C adds one term after another, so codecs walk positions
  with ``tl.static_range`` and keep running sums in C's order (never ``tl.sum`` on floats).
* Rounding: :func:`nearest_int` is ggml's magic-number trick itself (round half to even,
  the same garbage out of range), :func:`roundf_small` is C's roundf (half away from zero),
  :func:`trunc_i32` is the x86 truncating cast, and fp16 stores round to nearest even.

Under the interpreter (``TRITON_INTERPRET=1``) every op is a numpy float32 op, which is
IEEE-exact, so the same kernels prove their logic on a CPU; div_rn and sqrt_rn map to
np.divide and np.sqrt there, and the launch options are ignored.

Imports nothing from kernels.
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

# Whether kernels run in Triton's interpreter (numpy on the CPU): it must be set before
# triton is imported. Wrappers use it to pick tile sizes, never to change the arithmetic.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"

# 1.5 * 2**23: v + MAGIC leaves round-half-even(v) in the low 23 bits for |v| < 2**22.
NEAREST_INT_MAGIC = 12582912.0

# ggml-quants.c: a group whose largest magnitude is below this is all zeros (float32 1e-15).
GROUP_MAX_EPS = tl.constexpr(1.0000000036274937e-15)

# Compile options of every launch (see the module docstring): no FMA contraction, no FTZ.
EXACT_OPTIONS = {"enable_fp_fusion": False, "enable_reflect_ftz": False}


def _supported(options: dict) -> dict:
    """The options this triton's CUDA backend knows (an older one rejects unknown launch keywords)."""
    try:
        from triton.backends.nvidia.compiler import CUDAOptions

        fields = CUDAOptions.__dataclass_fields__
    except Exception:  # no CUDA backend (interpreter-only install): the options are ignored anyway
        return options
    return {k: v for k, v in options.items() if k in fields}


_OPTIONS = _supported(EXACT_OPTIONS)


def launch(kernel, grid, *args, **meta) -> None:
    """kernel[grid](*args, **meta) compiled for C's float32 semantics (EXACT_OPTIONS)."""
    kernel[grid](*args, **_OPTIONS, **meta)


@triton.jit
def div_rn(a, b):
    """IEEE a / b, one rounding (``div.rn.f32``), as C's float division."""
    return tl.math.div_rn(a, b)


@triton.jit
def sqrt_rn(x):
    """IEEE sqrtf, correctly rounded (``sqrt.rn.f32``)."""
    return tl.math.sqrt_rn(x)


@triton.jit
def nearest_int(v):
    """ggml's ``nearest_int(float)`` -> int32, bit for bit.

    Round half to even for |v| < 2**22 (the C trick: add 1.5*2**23, keep the low 23
    bits); out-of-range input gives C's garbage, and NaN gives 0, what x86's default
    NaN gives (a GPU's canonical NaN has other bits, so it is pinned here).
    """
    bits = (v + 12582912.0).to(tl.int32, bitcast=True)
    out = (bits & 0x007FFFFF) - 0x00400000
    return tl.where(v != v, 0, out)


@triton.jit
def trunc_i32(v):
    """C's float -> int conversion as x86 does it (cvttss2si): toward zero, and INT_MIN
    (low byte 0) for NaN or out-of-range values, where a GPU would saturate."""
    ok = (v > -2147483648.0) & (v < 2147483648.0)
    return tl.where(ok, tl.where(ok, v, 0.0).to(tl.int32), -2147483648)


@triton.jit
def roundf_small(v):
    """C's roundf (half away from zero) -> int32, for |v| < 2**22: the truncation plus
    twice the exact remainder, truncated (-1, 0 or 1 exactly at fractions of +-0.5)."""
    t = v.to(tl.int32)
    r = v - t.to(tl.float32)
    return t + (r * 2.0).to(tl.int32)


@triton.jit
def fp16_round(v):
    """GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(v)): float32 -> fp16 (nearest even) -> float32."""
    return v.to(tl.float16).to(tl.float32)


@triton.jit
def fp16_bits(v):
    """The fp16 (round to nearest even) of float32 v as an int32 0..65535, for byte stores."""
    return v.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF


@triton.jit
def store_u16(ptr, bits, mask):
    """Store int32 bits (0..65535) little-endian as two bytes at ptr, ptr + 1."""
    tl.store(ptr, (bits & 0xFF).to(tl.uint8), mask=mask)
    tl.store(ptr + 1, ((bits >> 8) & 0xFF).to(tl.uint8), mask=mask)


@triton.jit
def first_abs_max_step(v, amax, mx):
    """One step of C's ``if (fabsf(v) > amax) { amax = fabsf(v); max = v; }``: first value of
    the largest magnitude wins ties; NaN never passes ``>``. Start from amax = mx = 0."""
    av = tl.abs(v)
    gt = av > amax
    return tl.where(gt, av, amax), tl.where(gt, v, mx)
