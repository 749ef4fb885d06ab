"""kernels.fused: the compiled CPU path is on by default, and off for CUDA or when switched off."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kernels
from kernels import codecs, fused


def test_compiled_path_is_taken_on_cpu(codec_path):
    x = torch.zeros(2, 256)
    assert fused.active(x) == (codec_path == "compiled")
    assert not fused.active(torch.zeros(1, 256))  # below the threshold (lowered for tests)


def test_switching_off_falls_back_to_eager():
    fused.set_enabled(False)
    assert not fused.active(torch.zeros(2, 256))


def test_a_machine_that_cannot_compile_gets_the_eager_codecs(monkeypatch, caplog, reference):
    """No C++ compiler (or a broken one): a warning, then llama.cpp's bytes from the eager path."""

    def broken(fn):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_compile", broken)
    monkeypatch.setitem(fused._state, "checked", False)
    fused.set_enabled(True)
    x = np.random.default_rng(3).standard_normal((4, 512)).astype(np.float32)
    with caplog.at_level("WARNING", logger="kernels.fused"):
        got = kernels.quantize(torch.from_numpy(x), "Q4_K").numpy()
    assert not fused.active(torch.zeros(2, 256))
    assert "torch.compile unavailable" in caplog.text and "no C++ compiler" in caplog.text
    assert np.array_equal(got, reference.quantize_chunk(x, "Q4_K", None))


@pytest.mark.parametrize("name", sorted(codecs.COMPILED))
def test_both_paths_give_the_same_bytes(name):
    """Direct comparison of the two paths on one tensor with awkward content
    (zeros, a negative-max group, a huge outlier), independent of llama.cpp."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 512)).astype(np.float32)
    x[0] = 0.0
    x[1, :16] = -np.abs(x[1, :16])
    x[2, 5] = 1e4
    t = torch.from_numpy(x)
    fused.set_enabled(True)
    compiled = kernels.quantize(t, name)
    fused.set_enabled(False)
    eager = kernels.quantize(t, name)
    assert torch.equal(compiled, eager)


def test_seq_sum_from_zero_turns_negative_zero_positive_when_compiled():
    """C's ``float s = 0; s += -0.0f`` is +0.0; Inductor must not fold the zero away."""
    t = torch.tensor([-0.0, 0.0, -1.0, 1e-45])
    got = torch.compile(lambda v, z: fused.seq_sum([v], z), dynamic=True)(t, fused.f32_const(0.0))
    assert got.view(torch.int32).tolist() == torch.tensor([0.0, 0.0, -1.0, 1e-45]).view(torch.int32).tolist()


def test_parts_of_a_tensor_follow_the_decision_made_for_the_whole(codec_path, monkeypatch):
    """kernels.api decides per tensor; the codecs' slices below the size threshold must
    not drop back to eager halfway (that cost Q6_K and Q3_K half their speed once)."""
    monkeypatch.setattr(fused, "MIN_WEIGHTS", 4096)
    part = torch.zeros(16, 32)  # 512 weights: under the threshold on its own
    assert not fused.use(part)
    with fused.decided_for(torch.zeros(4, 1024)) as on:
        assert on == (codec_path == "compiled")
        assert fused.use(part) == on
        assert not fused.use(torch.zeros(16, 1))  # one group: always eager
    assert not fused.use(part)


def test_q3_k_falls_back_to_the_eager_search_when_a_quotient_is_out_of_range(monkeypatch, reference):
    """The compiled Q3_K search flags groups where torch.round may differ from C's
    nearest_int (|quotient| >= 2**22); the codec must then redo the slice eagerly."""
    real = fused.q3_search
    calls = []

    def flagged(x, groups, nmax):
        calls.append(x.shape[1])
        return (*real(x, groups, nmax)[:3], False)

    monkeypatch.setattr(fused, "q3_search", flagged)
    fused.set_enabled(True)
    x = np.random.default_rng(5).standard_normal((8, 1024)).astype(np.float32)
    got = kernels.quantize(torch.from_numpy(x), "Q3_K").numpy()
    assert calls, "the compiled search was not used"
    assert np.array_equal(got, reference.quantize_chunk(x, "Q3_K", None))


def test_q3_search_stops_where_c_stops_after_five_passes(monkeypatch):
    """make_q3_quants refines at most five passes; these Gaussian rows hold a group that
    would still change in a sixth. The round-based compiled search must stop there too,
    matching the eager search (itself checked against llama.cpp's bytes) code for code,
    and must differ from it when allowed more passes (so the rows do exercise the limit)."""
    from kernels.kquant_search import make_q3_quants

    fused.set_enabled(True)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1024, 4096)).astype(np.float32)[990:998])
    xt = x.reshape(-1, 16).t().contiguous()
    want_scale, _ = make_q3_quants(xt, 4)

    def compiled_search():
        mx, sumlx, suml2, exact = fused.q3_search(xt, x.reshape(-1, 16), 4)
        assert exact
        return torch.where(suml2 > 0, sumlx / suml2, 0.0)

    assert torch.equal(compiled_search(), want_scale)
    monkeypatch.setattr(fused, "Q3_PASSES", 20)
    assert not torch.equal(compiled_search(), want_scale)


def test_q3_k_redoes_blocks_the_packing_kernel_cannot_code(monkeypatch, reference):
    """Sub-blocks whose stored scale is 0 keep the search's codes, which the packing kernel
    leaves to the eager packer (_redo_blocks): the outlier rows have such sub-blocks.
    Forcing every block through the eager packer must give the same bytes."""
    from kernels import q3_k
    from tests.kernels.cases import weight_cases

    fused.set_enabled(True)
    x = dict(weight_cases(n=1024))["outlier"]
    want = reference.quantize_chunk(x, "Q3_K", None)
    redone = []
    real_redo = q3_k._redo_blocks

    def counting(out, xs, mx, ls, d, redo):
        redone.append(int(redo.any(dim=1).sum()))
        real_redo(out, xs, mx, ls, d, redo)

    monkeypatch.setattr(q3_k, "_redo_blocks", counting)
    assert np.array_equal(kernels.quantize(torch.from_numpy(x), "Q3_K").numpy(), want)
    assert sum(redone) > 0, "no zero-scale sub-block in the outlier rows"

    real_pack = q3_k._fused_pack_c
    monkeypatch.setattr(q3_k, "_fused_pack_c", lambda *a: (real_pack(*a)[0], torch.ones_like(real_pack(*a)[1]), None))
    assert np.array_equal(kernels.quantize(torch.from_numpy(x), "Q3_K").numpy(), want)


def test_a_kernel_that_fails_to_build_runs_uncompiled(monkeypatch, caplog, tmp_path):
    """A compiler error for one kernel (here: no such C++ compiler, empty kernel cache)
    costs speed, not the job: the function runs eagerly, with a warning."""
    import torch._inductor.config as inductor_config

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    fn = fused.compiled(lambda x, y: x * y - 13.25)
    broken = inductor_config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-c++"))})
    with broken, caplog.at_level("WARNING", logger="kernels.fused"):
        got = fn(torch.ones(700), torch.full((700,), 2.0))
        again = fn(torch.ones(700), torch.full((700,), 3.0))
    assert torch.equal(got, torch.full((700,), -11.25)) and torch.equal(again, torch.full((700,), -10.25))
    assert "running it uncompiled" in caplog.text


@pytest.mark.parametrize("imatrix", [False, True])
def test_compiled_kernels_compile_without_graph_breaks(codec_path, imatrix):
    """A graph break splits a kernel into pieces that Python glues together, silently many
    times slower (an int bound in a clamp did it once: Q4_K ran at 0.14x llama.cpp). Every
    compiled type's kernels, traced afresh, must compile whole."""
    from torch._dynamo.utils import counters

    if codec_path == "eager":
        pytest.skip("about the compiled path only")
    rng = np.random.default_rng(11)
    x = torch.from_numpy(rng.standard_normal((8, 1024)).astype(np.float32))
    im = torch.from_numpy(np.exp(rng.standard_normal(1024)).astype(np.float32)) if imatrix else None
    torch._dynamo.reset()
    counters.clear()
    for name in sorted(codecs.COMPILED):
        kernels.quantize(x, name, im)
    assert counters["stats"]["unique_graphs"] > 0, "no kernel was compiled"
    assert not counters["graph_break"], dict(counters["graph_break"])
