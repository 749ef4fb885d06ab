"""kernels.quantize on several CPU threads: row ranges on a thread pool give the same bytes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kernels
from kernels import api


def _x(rows: int, n: int) -> torch.Tensor:
    return torch.from_numpy((np.random.default_rng(3).standard_normal((rows, n)) * 0.02).astype(np.float32))


@pytest.fixture
def two_threads(monkeypatch):
    """Two torch threads and small chunks, so a small tensor takes the threaded path."""
    monkeypatch.setattr(api, "PARALLEL_MIN_WEIGHTS", 1)
    monkeypatch.setattr(api, "CHUNK_WEIGHTS", 1024)
    torch.set_num_threads(2)  # the conftest fixture restores the count


@pytest.mark.parametrize("qname", ["Q8_0", "Q4_K", "Q6_K"])
def test_threaded_equals_serial(two_threads, qname):
    x = _x(37, 512)
    threaded = kernels.quantize(x, qname)
    assert torch.get_num_threads() == 2  # restored after the pool
    torch.set_num_threads(1)
    assert torch.equal(threaded, kernels.quantize(x, qname))


def test_threaded_error_names_first_bad_row(two_threads):
    x = _x(37, 512)
    x[30, 5] = float("nan")
    x[11, 0] = float("inf")
    with pytest.raises(ValueError, match="row 11"):
        kernels.quantize(x, "Q8_0")
    assert torch.get_num_threads() == 2


def test_row_ranges_cover_all_rows_evenly():
    for rows, n, workers in [(1024, 14336, 2), (5, 4096, 2), (1, 1 << 23, 4), (300, 14336, 3)]:
        r = api._row_ranges(rows, n, workers)
        assert r[0][0] == 0 and r[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(r, r[1:]))
        assert all((b - a) * n <= max(api.CHUNK_WEIGHTS, n) for a, b in r)
        if rows >= workers:
            assert len(r) % workers == 0


def test_many_threads_do_not_race_torch_compile_into_eager(monkeypatch):
    """Threads calling a compiled kernel for the first time at once made torch.compile
    recompile it once per thread, hit its recompile limit and run eager code from then on
    (Q6_K 25x slower on 16 threads). A type's first threaded quantize runs one range alone,
    so each of Q6_K's three kernels compiles once (twice at most, for a new kind of input)."""
    from torch._dynamo.utils import counters

    from kernels import fused

    fused.set_enabled(True)
    monkeypatch.setitem(fused._state, "aot", False)  # torch.compile's race (packages: kernels.aot builds one at a time)
    monkeypatch.setattr(fused, "MIN_WEIGHTS", 512)
    monkeypatch.setattr(api, "_WARMED", set())
    torch._dynamo.reset()  # as in a fresh process: every kernel compiles again on first call
    counters.clear()
    before = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        x = torch.randn(64, 16384) * 0.02
        got = kernels.quantize(x, "Q6_K")
    finally:
        torch.set_num_threads(before)
    assert 0 < counters["stats"]["unique_graphs"] <= 6, dict(counters["stats"])
    fused.set_enabled(False)
    assert torch.equal(got, kernels.quantize(x, "Q6_K"))


def test_an_error_in_one_chunk_leaves_no_chunk_running(two_threads, monkeypatch):
    """A chunk that fails must not leave others running (writing into a discarded output,
    with torch's thread count still lowered) after quantize has raised: the ones already
    started finish first, the rest never start."""
    import time

    from kernels import codecs

    real = codecs.CODECS["Q8_0"]
    started, finished = [], []
    x = _x(37, 512)
    second = api._row_ranges(37, 512, 2)[1][0]

    def second_fails(chunk, imatrix):
        if torch.equal(chunk[0], x[second]):
            time.sleep(0.01)
            raise RuntimeError("boom")
        started.append(1)
        time.sleep(0.05)
        finished.append(1)
        return real.quantize(chunk, imatrix)

    monkeypatch.setitem(codecs.CODECS, "Q8_0", codecs.Codec(second_fails, real.dequantize, real.compiled))
    with pytest.raises(RuntimeError, match="boom"):
        kernels.quantize(x, "Q8_0")
    assert started and len(finished) == len(started)
