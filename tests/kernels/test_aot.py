"""kernels.aot: the compiled twins as ahead-of-time packages, loaded without a dynamo trace."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import kernels
from kernels import aot, fused

# A quantize big enough for the compiled path without lowering fused.MIN_WEIGHTS (as a
# fresh process does), with an imatrix: Q4_K's weights, search, scales and packing kernels.
_PROBE = """
import json, sys
import numpy as np, torch
import kernels
from torch._dynamo.utils import counters
x = torch.from_numpy(np.random.default_rng(5).standard_normal((512, 2048)).astype(np.float32) * 0.02)
im = torch.from_numpy(np.exp(np.random.default_rng(6).standard_normal(2048)).astype(np.float32))
out = kernels.quantize(x, "Q4_K", im)
out2 = kernels.quantize(x, "Q4_K")
json.dump({"frames": counters["stats"].get("unique_graphs", 0), "bytes": out.numpy().tobytes().hex()[:4096],
           "sum": int(out.sum()) + int(out2.sum())}, sys.stdout)
"""


def _fresh_process(env: dict) -> dict:
    result = subprocess.run([sys.executable, "-c", _PROBE], env={**os.environ, **env}, capture_output=True,
                            text=True, timeout=900, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture
def package_dir(tmp_path, monkeypatch):
    """An empty package cache for this test (and the processes it starts)."""
    monkeypatch.setenv(aot.DIR_ENV, str(tmp_path))
    aot.cache_dir.cache_clear()
    yield tmp_path
    aot.cache_dir.cache_clear()


@pytest.mark.slow
def test_a_second_process_loads_the_packages_without_tracing(package_dir, codec_path):
    """The point of the packages: the first process builds them, the next one traces
    nothing (no dynamo frame) and gets the bytes torch.compile gives."""
    if codec_path == "eager":
        pytest.skip("about the compiled path only")
    first = _fresh_process({})
    assert list(package_dir.glob("*/kernels.q45_k._fused_pack/*/*.pt2")), "no package was built"
    second = _fresh_process({})
    assert second["frames"] == 0, "the second process traced with dynamo"
    compiled = _fresh_process({"DSQ_KERNELS_AOT": "0"})
    assert compiled["frames"] > 0  # the comparison is with torch.compile, not with itself
    assert first == second and second["bytes"] == compiled["bytes"] and second["sum"] == compiled["sum"]


def _affine(x, y, c):
    return x * y - c


def _positions(x, n: int):
    return x.reshape(-1, n).t().contiguous() / x.new_ones(())


def test_a_package_serves_every_group_count_and_rebuilds_for_a_new_static_size(package_dir, codec_path):
    """Free dimensions stay free (one package for any number of groups); a dimension the
    trace fixed (a Python int, a specialised size) gets its own package, never a wrong one."""
    if codec_path == "eager":
        pytest.skip("about the compiled path only")
    k = aot.Kernel(_positions, {})
    for rows in (4, 7, 1000):
        x = torch.arange(rows * 32, dtype=torch.float32).reshape(rows, 32)
        assert torch.equal(k(x, 16), _positions(x, 16))
    assert len(list(package_dir.rglob("*.pt2"))) == 1
    x = torch.ones(6, 32)
    assert torch.equal(k(x, 8), _positions(x, 8))
    assert len(list(package_dir.rglob("*.pt2"))) == 2
    meta = [json.loads(p.read_text()) for p in package_dir.rglob("*.json")]
    assert all(any(isinstance(d, str) for s in m["shapes"] for d in s) for m in meta), meta


def test_a_package_built_from_aliased_arguments_reads_each_one(package_dir, codec_path):
    """make_qkx's first step passes the same tensor twice; traced as given, the package
    would read one input for both (Q2_K's bytes differed on an outlier)."""
    if codec_path == "eager":
        pytest.skip("about the compiled path only")
    k = aot.Kernel(_affine, {})
    x = torch.arange(8.0)
    assert torch.equal(k(x, x, torch.tensor(1.0)), x * x - 1)
    y = torch.full((8,), 3.0)
    assert torch.equal(k(x, y, torch.tensor(1.0)), x * 3 - 1)


def test_calls_no_package_can_serve_answer_none(package_dir):
    k = aot.Kernel(_affine, {})
    x = torch.ones(8, 8)
    assert k(x.t(), x, torch.tensor(1.0)) is None  # not contiguous
    assert k(x, x, object()) is None
    assert not list(package_dir.rglob("*.pt2"))


def test_a_package_that_cannot_be_built_falls_back_to_torch_compile(package_dir, monkeypatch, caplog, codec_path):
    if codec_path == "eager":
        pytest.skip("about the compiled path only")

    def broken(*args, **kwargs):
        raise RuntimeError("no AOTInductor here")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", broken)
    fn = fused.compiled(_affine)
    a, b = torch.full((700,), 3.0), torch.full((700,), 2.0)
    with caplog.at_level("WARNING", logger="kernels.aot"):
        got = fn(a, b, torch.tensor(0.75))
        again = fn(a, b, torch.tensor(0.5))
    assert torch.equal(got, torch.full((700,), 5.25)) and torch.equal(again, torch.full((700,), 5.5))
    assert caplog.text.count("no ahead-of-time package") == 1 and "no AOTInductor here" in caplog.text


def test_switching_packages_off_uses_torch_compile(package_dir, monkeypatch, codec_path):
    if codec_path == "eager":
        pytest.skip("about the compiled path only")
    monkeypatch.setitem(fused._state, "aot", False)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((4, 512)).astype(np.float32))
    kernels.quantize(x, "Q8_0")
    assert not list(package_dir.rglob("*.pt2"))
