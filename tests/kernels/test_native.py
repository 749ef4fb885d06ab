"""kernels.native: the C K-quant search gives the eager search's bits (and llama.cpp's bytes), and
the codecs fall back to the compiled twin where it cannot be built."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kernels
from kernels import native
from kernels.search import qkx

# (n, nmax, rmin, rdelta, nstep, use_mad): Q4_K and Q5_K's reference searches, the imatrix
# search of both, Q2_K's two, and a search without trials
SEARCHES = {
    "q4_k": (32, 15, -1.0, 0.1, 20, False),
    "q5_k": (32, 31, -0.5, 0.1, 15, False),
    "imatrix": (32, 15, -0.9, 0.05, 36, False),
    "q2_k": (16, 3, -0.5, 0.1, 15, True),
    "q2_k imatrix": (16, 3, -0.9, 0.05, 36, False),
    "no trials": (32, 15, -1.0, 0.1, 0, False),
}


def _awkward(n: int, groups: int) -> "tuple[torch.Tensor, torch.Tensor]":
    """Position-major x and weights [n, groups] with the groups that break searches: all zero,
    constant, all negative, all positive (min clamped to 0), one outlier, subnormal and huge ranges
    (codes near 2**22, where the compiled twin needs its exact re-run); groups not a multiple of 16."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((groups, n)).astype(np.float32) * 0.02
    x[0] = 0.0
    x[1] = 0.5
    x[2] = -np.abs(x[2])
    x[3] = np.abs(x[3]) + 0.1
    x[4, 7] = 40.0
    x[5] = rng.standard_normal(n).astype(np.float32) * np.float32(1e-39)
    x[6] = rng.standard_normal(n).astype(np.float32) * np.float32(1e30)
    x[7, :3] = [-0.0, 0.0, -0.0]
    xt = torch.from_numpy(np.ascontiguousarray(x.T))
    w = xt.abs() + xt.pow(2).mean(dim=0).sqrt()
    return xt, w


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_the_c_search_gives_the_exact_eager_searchs_bits(search):
    n, nmax, rmin, rdelta, nstep, use_mad = SEARCHES[search]
    x, w = _awkward(n, 16 * 5 + 7)
    got = native.make_qkx2(x, w, nmax, rmin, rdelta, nstep, use_mad)
    assert got is not None, "the C search did not build here (see the kernels.native warning)"
    scale, the_min, L, _ = qkx._make_qkx(x, w, nmax, rmin, rdelta, nstep, use_mad, exact=True)
    for ours, theirs, what in zip(got, (scale, the_min, L), ("scale", "the_min", "L")):
        assert torch.equal(_bits(ours), _bits(theirs)), what


@pytest.mark.parametrize("name", ["Q2_K", "Q4_K", "Q5_K"])
def test_codecs_with_and_without_it_give_llama_cpp_bytes(name, codec_path, reference):
    if codec_path != "compiled":
        pytest.skip("the C search is part of the compiled path")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 1024)).astype(np.float32)
    x[0] = 0.0
    x[1, :40] = -np.abs(x[1, :40])
    x[2, 9] = 300.0
    want = reference.quantize_chunk(x, name, None)
    im = np.abs(rng.standard_normal(1024)).astype(np.float32) + 0.1
    want_im = reference.quantize_chunk(x, name, im)
    for on in (True, False):
        native.set_enabled(on)
        try:
            assert np.array_equal(kernels.quantize(torch.from_numpy(x), name).numpy(), want), on
            assert np.array_equal(kernels.quantize(torch.from_numpy(x), name, torch.from_numpy(im)).numpy(), want_im), on
        finally:
            native.set_enabled(True)


def test_no_compiler_means_the_compiled_twin_with_a_warning(monkeypatch, tmp_path, caplog, reference):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(native, "library_path", lambda: tmp_path / "native" / "libdsq_qkx2.so")
    monkeypatch.setitem(native._state, "tried", False)
    monkeypatch.setitem(native._state, "lib", None)
    x, w = _awkward(32, 40)
    with caplog.at_level("WARNING", logger="kernels.native"):
        assert native.make_qkx2(x, w, 15, -1.0, 0.1, 20, False) is None
    assert "no native K-quant search" in caplog.text and "no C compiler" in caplog.text
    xs = np.random.default_rng(2).standard_normal((4, 512)).astype(np.float32)
    assert np.array_equal(kernels.quantize(torch.from_numpy(xs), "Q4_K").numpy(), reference.quantize_chunk(xs, "Q4_K", None))


def test_a_damaged_build_is_built_again(monkeypatch, tmp_path):
    lib = tmp_path / "native" / "libdsq_qkx2.so"
    lib.parent.mkdir()
    lib.write_bytes(b"not a shared object")
    monkeypatch.setattr(native, "library_path", lambda: lib)
    monkeypatch.setitem(native._state, "tried", False)
    monkeypatch.setitem(native._state, "lib", None)
    x, w = _awkward(32, 40)
    got = native.make_qkx2(x, w, 15, -1.0, 0.1, 20, False)
    assert got is not None and lib.read_bytes()[:4] == b"\x7fELF"
    want = qkx._make_qkx(x, w, 15, -1.0, 0.1, 20, False, exact=True)[:3]
    assert all(torch.equal(_bits(a), _bits(b)) for a, b in zip(got, want))
