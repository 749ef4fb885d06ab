"""The scale searches of ggml-quants.c, vectorised across groups: one module per family.

    qkx  make_qkx2_quants / make_qkx3_quants   (scale, min) per group, codes 0..nmax
    qx   make_qx_quants (rmse_type 1)          symmetric codes -nmax..nmax-1
    q3   make_q3_quants (do_rmse)              Q3_K's reference search
    qp   make_qp_quants                        positive codes for the K-quants' sub-block scales

Each module holds the eager search (CUDA tensors, small tensors, no C++ compiler) and,
where one exists, its compiled twin (CPU, kernels.fused) behind the same public name,
so that codes and scales are bit-identical to llama.cpp's on either path. The rules
that make that possible:

* Every tensor is laid out position-major: ``x[i, g]`` is position ``i`` of group ``g``
  (kernels.blocks). A group is one run of weights that C handles in one call (16 or 32
  weights, or the 8/16 sub-block scales of a super-block). Whole-tensor ops run across
  all groups at once; only the positions inside a group are walked in Python, because C
  sums them one after the other in float32 and a tree reduction would round differently.
* float32 everywhere, one rounding per C operator, in C's order of evaluation
  (``w*x*l`` is ``(w*x)*l``). The reference library is built for plain x86-64 (SSE2,
  no FMA), so no fused multiply-adds: torch's separate mul/add kernels match it.
* C's ``nearest_int`` is round-half-to-even for |v| < 2**22. Where the argument is
  bounded by the construction (``iscale*x`` with iscale derived from the group's max)
  we use ``torch.round``; where it is not (``x*sl2/slx`` in the iterative refinements,
  the final re-quantisation) we reproduce the magic-number trick bit for bit.
* Comparisons keep C's strictness, so the first best candidate wins ties.
* Search loops track the winning inverse scale per group instead of the codes; the
  codes are recomputed once at the end with the very same expression, which gives the
  same integers and saves a full-size select per step.

Imports: kernels.arith, kernels.blocks, kernels.fused; never a codec module.
"""
