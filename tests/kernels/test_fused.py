"""kernels.fused: the compiled CPU path is on by default, and off for CUDA or when switched off."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kernels
from kernels import aot, fused
from kernels.codecs import CODECS

COMPILED_TYPES = sorted(name for name, codec in CODECS.items() if codec.compiled)


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
    monkeypatch.setattr(aot.Kernel, "__call__", lambda self, *args: None)  # nor can it build packages
    monkeypatch.setitem(fused._state, "checked", False)
    fused.set_enabled(True)
    x = np.random.default_rng(3).standard_normal((4, 512)).astype(np.float32)
    with caplog.at_level("WARNING", logger="kernels.fused"):
        got = kernels.quantize(torch.from_numpy(x), "Q4_K").numpy()
    assert not fused.active(torch.zeros(2, 256))
    assert "torch.compile unavailable" in caplog.text and "no C++ compiler" in caplog.text
    assert np.array_equal(got, reference.quantize_chunk(x, "Q4_K", None))


@pytest.mark.parametrize("name", COMPILED_TYPES)
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


def test_a_kernel_that_fails_to_build_runs_uncompiled(monkeypatch, caplog, tmp_path):
    """A compiler error for one kernel (here: no such C++ compiler, empty kernel cache)
    costs speed, not the job: the function runs eagerly, with a warning."""
    import torch._inductor.config as inductor_config

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(fused._state, "aot", False)  # torch.compile's own fallback (kernels.aot: test_aot)
    fn = fused.compiled(lambda x, y: x * y - 13.25)
    broken = inductor_config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-c++"))})
    with broken, caplog.at_level("WARNING", logger="kernels.fused"):
        got = fn(torch.ones(700), torch.full((700,), 2.0))
        again = fn(torch.ones(700), torch.full((700,), 3.0))
    assert torch.equal(got, torch.full((700,), -11.25)) and torch.equal(again, torch.full((700,), -10.25))
    assert "running it uncompiled" in caplog.text


def test_compiled_kernels_compile_without_graph_breaks(codec_path, monkeypatch):
    """A graph break splits a kernel into pieces that Python glues together, silently many
    times slower (an int bound in a clamp did it once: Q4_K ran at 0.14x llama.cpp). Every
    compiled type's kernels, traced afresh, with and without an imatrix, must compile whole
    (one trace of all: each afresh costs a minute on two cores)."""
    from torch._dynamo.utils import counters

    if codec_path == "eager":
        pytest.skip("about the compiled path only")
    monkeypatch.setitem(fused._state, "aot", False)  # traced by torch.compile, not loaded from packages
    rng = np.random.default_rng(11)
    x = torch.from_numpy(rng.standard_normal((8, 1024)).astype(np.float32))
    im = torch.from_numpy(np.exp(rng.standard_normal(1024)).astype(np.float32))
    torch._dynamo.reset()
    counters.clear()
    for name in COMPILED_TYPES:
        kernels.quantize(x, name)
        kernels.quantize(x, name, im)
    assert counters["stats"]["unique_graphs"] > 0, "no kernel was compiled"
    assert not counters["graph_break"], dict(counters["graph_break"])
