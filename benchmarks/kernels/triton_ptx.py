"""`python -m benchmarks.kernels.triton_ptx`: compile the Triton kernels for an H100/H200 (sm_90)
without a GPU and check what exactness needs from the generated code.

For each kernel variant: compile time, registers, spills (local memory), and the PTX
instructions that would break byte-exactness if present: fused multiply-adds (``fma``,
``mad``), approximate division or square root (``div.full``, ``div.approx``, ``sqrt.approx``,
``rcp.approx``) and flush-to-zero (``.ftz``). Every launch uses common.EXACT_OPTIONS, so there
should be none; the correctly rounded ``div.rn``/``sqrt.rn`` counts are printed. This proves on
a CPU what the compiler does with the kernels; the GPU run (gpu_check) proves the bytes.

    python -m benchmarks.kernels.triton_ptx [--only q45_k] [--num-warps 4]
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import time

os.environ.pop("TRITON_INTERPRET", None)  # compile for real, whatever the caller's shell says

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from kernels.triton import legacy, q2_k, q3_k, q6_k, q45_k  # noqa: E402
from kernels.triton.common import EXACT_OPTIONS  # noqa: E402

F, U8, I = "*fp32", "*u8", "i32"

# (label, kernel, signature of the runtime arguments, constexprs) for every variant launched.
VARIANTS = [
    ("Q8_0", legacy._q8_0_kernel, dict(x_ptr=F, out_ptr=U8, nblocks=I), dict(BLOCK=legacy.BLOCK)),
    ("Q4_0", legacy._symmetric_ref_kernel, dict(x_ptr=F, out_ptr=U8, nblocks=I), dict(HALF=8, Q5=False, TS=18, BLOCK=legacy.BLOCK)),
    ("Q5_0", legacy._symmetric_ref_kernel, dict(x_ptr=F, out_ptr=U8, nblocks=I), dict(HALF=16, Q5=True, TS=22, BLOCK=legacy.BLOCK)),
    ("Q4_1", legacy._affine_ref_kernel, dict(x_ptr=F, out_ptr=U8, nblocks=I), dict(NMAX=15, Q5=False, TS=20, BLOCK=legacy.BLOCK)),
    ("Q5_1", legacy._affine_ref_kernel, dict(x_ptr=F, out_ptr=U8, nblocks=I), dict(NMAX=31, Q5=True, TS=24, BLOCK=legacy.BLOCK)),
    ("row sigma2", legacy._row_sigma2_kernel, dict(x_ptr=F, sigma2_ptr=F, rows=I, n=I), dict(ROWS=legacy.ROWS_PER_PROGRAM)),
    ("impl weights", legacy._impl_weights_kernel, dict(x_ptr=F, im_ptr=F, sigma2_ptr=F, w_ptr=F, total=I, n=I),
     dict(BLOCK=legacy.WEIGHTS_PER_PROGRAM)),
    ("Q4_0 imatrix", legacy._symmetric_impl_kernel, dict(x_ptr=F, w_ptr=F, num_ptr=F, out_ptr=U8, nblocks=I),
     dict(NMAX=8, Q5=False, TS=18, BLOCK=legacy.BLOCK)),
    ("Q5_0 imatrix", legacy._symmetric_impl_kernel, dict(x_ptr=F, w_ptr=F, num_ptr=F, out_ptr=U8, nblocks=I),
     dict(NMAX=16, Q5=True, TS=22, BLOCK=legacy.BLOCK)),
    ("Q4_1 imatrix", legacy._affine_impl_kernel, dict(x_ptr=F, w_ptr=F, num_ptr=F, out_ptr=U8, nblocks=I),
     dict(NMAX=15, Q5=False, TS=20, BLOCK=legacy.BLOCK)),
    ("Q5_1 imatrix", legacy._affine_impl_kernel, dict(x_ptr=F, w_ptr=F, num_ptr=F, out_ptr=U8, nblocks=I),
     dict(NMAX=31, Q5=True, TS=24, BLOCK=legacy.BLOCK)),
    ("K imatrix weights", q45_k._imatrix_weights_kernel, dict(x_ptr=F, im_ptr=F, w_ptr=F, sw_ptr=F, nsb=I, blocks_per_row=I),
     dict(BS=q45_k.WBS)),
]
_K = dict(x_ptr=F, w_ptr=F, sw_ptr=F, num_ptr=F, qp_num_ptr=F, out_ptr=U8, nsb=I)
VARIANTS += [
    ("Q4_K", q45_k._q45_k_kernel, _K, dict(NMAX=15, NSTEP=20, IMATRIX=False, Q5=False, TS=144, BS=q45_k.BS)),
    ("Q5_K", q45_k._q45_k_kernel, _K, dict(NMAX=31, NSTEP=15, IMATRIX=False, Q5=True, TS=176, BS=q45_k.BS)),
    ("Q4_K imatrix", q45_k._q45_k_kernel, _K, dict(NMAX=15, NSTEP=36, IMATRIX=True, Q5=False, TS=144, BS=q45_k.BS)),
    ("Q5_K imatrix", q45_k._q45_k_kernel, _K, dict(NMAX=31, NSTEP=36, IMATRIX=True, Q5=True, TS=176, BS=q45_k.BS)),
]
# Q6_K, Q3_K, Q2_K: one lane per sub-block, its 16 weights in registers (kernels.triton.groups)
_SUB = dict(x_ptr=F, qw_ptr=F, out_ptr=U8, n_sb=I, sb_per_row=I)
_Q2 = dict(x_ptr=F, qw_ptr=F, num_ptr=F, qp_num_ptr=F, out_ptr=U8, n_sb=I, sb_per_row=I)
VARIANTS += [
    ("Q6_K", q6_k._q6_k_kernel, _SUB, dict(HAS_QW=False, SB=q6_k.SB)),
    ("Q6_K imatrix", q6_k._q6_k_kernel, _SUB, dict(HAS_QW=True, SB=q6_k.SB)),
    ("Q3_K", q3_k._q3_k_kernel, _SUB, dict(HAS_QW=False, SB=q3_k.SB)),
    ("Q3_K imatrix", q3_k._q3_k_kernel, _SUB, dict(HAS_QW=True, SB=q3_k.SB)),
    ("Q2_K", q2_k._q2_k_kernel, _Q2, dict(HAS_QW=False, SB=q2_k.SB)),
    ("Q2_K imatrix", q2_k._q2_k_kernel, _Q2, dict(HAS_QW=True, SB=q2_k.SB)),
]

# PTX opcodes (prefixes) that would make results differ from C's float32 arithmetic
INEXACT = ("fma", "mad.f", "div.full", "div.approx", "sqrt.approx", "rcp.approx", "ex2.approx", "lg2.approx")


def report(label: str, kernel, signature: dict, constexprs: dict, num_warps: int) -> bool:
    sig = dict(signature, **{k: "constexpr" for k in constexprs})
    t0 = time.monotonic()
    c = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constexprs), target=GPUTarget("cuda", 90, 32),
                       options={**EXACT_OPTIONS, "num_warps": num_warps})
    dt = time.monotonic() - t0
    ptx = c.asm["ptx"]
    ops = collections.Counter(
        line.split()[0] for line in ptx.splitlines()
        if line.startswith("\t") and line.split() and not line.split()[0].startswith(("//", ".", "$", "{", "}", "@"))
    )
    bad = {k: v for k, v in ops.items() if k.startswith(INEXACT) or ".ftz" in k}
    exact = {k: v for k, v in ops.items() if k.startswith(("div.rn", "sqrt.rn", "cvt.rn.f16"))}
    nregs, local = _cubin_usage(c.asm["cubin"])
    ok = not bad
    print(f"{label:18s} {dt:6.1f}s  regs {nregs:>4}  local (spill) bytes {local:>4}  "
          f"{'OK' if ok else 'INEXACT ' + str(bad)}  {dict(sorted(exact.items()))}", flush=True)
    return ok


def _cubin_usage(cubin: bytes) -> "tuple[str, str]":
    """(registers, local memory bytes) per thread, from the cuobjdump shipped with triton."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    if not os.path.exists(tool):
        return "?", "?"
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    regs, local = re.search(r"REG:(\d+)", out), re.search(r"LOCAL:(\d+)", out)
    return (regs.group(1) if regs else "?"), (local.group(1) if local else "?")


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernels.triton_ptx", description=__doc__.split("\n")[0])
    p.add_argument("--only", help="compile the variants whose label contains this text")
    p.add_argument("--num-warps", type=int, default=4)
    a = p.parse_args(argv)
    print(f"triton {triton.__version__}; target sm_90; options {EXACT_OPTIONS}", flush=True)
    ok = True
    for label, kernel, signature, constexprs in VARIANTS:
        if a.only and a.only not in label:
            continue
        try:
            ok &= report(label, kernel, signature, constexprs, a.num_warps)
        except Exception as e:  # report every variant
            ok = False
            print(f"{label:18s} FAILED to compile: {type(e).__name__}: {str(e)[:300]}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
