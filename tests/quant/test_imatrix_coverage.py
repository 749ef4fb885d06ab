"""Coverage of a real llama-imatrix file on the trained tiny MoE (16 routed experts, top 2), and the tool's runner.

One chunk of 16 tokens routes 32 token-expert pairs per MoE block: several of the 16 experts get none,
which llama-imatrix itself reports as "partial data" — the figures the coverage must agree with.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from quant.eval.text import calibration_text
from quant.imatrix import coverage, load_imatrix, save_legacy
from quant.llama_imatrix import ImatrixSettings, run_llama_imatrix
from quant.progress import Callbacks, Cancelled

N_CTX, TOP_K = 16, 2


@pytest.fixture(scope="module")
def tiny_moe_gguf(tmp_path_factory) -> Path:
    from quant.convert import convert
    from quant.tiny import TRAINED_DIR

    out = tmp_path_factory.mktemp("tiny-moe")
    return convert(TRAINED_DIR, out, "F16", name="tiny-moe-F16", stats=False).files[0].path


@pytest.fixture(scope="module")
def made(tiny_moe_gguf, llama_tools, tmp_path_factory):
    """(imatrix file, llama-imatrix's log, progress seen) for one chunk of N_CTX tokens."""
    work = tmp_path_factory.mktemp("imatrix")
    text = work / "calibration.txt"
    text.write_text(calibration_text()[:4000])
    seen = []
    run_llama_imatrix(llama_tools / "llama-imatrix", tiny_moe_gguf, text, work / "imatrix.gguf",
                      ImatrixSettings(n_ctx=N_CTX, chunks=1, threads=1), log_path=work / "log.txt",
                      reporter=Callbacks(on_progress=seen.append))
    return work / "imatrix.gguf", (work / "log.txt").read_text(), seen


def partial_data_warnings(log: str) -> dict[str, float]:
    """llama-imatrix's own account: `entry '<name>' has partial data (81.25%)`."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"entry '\s*(\S+)' has partial data \(([0-9.]+)%\)", log)}


def test_it_counts_tokens_per_expert_and_names_the_experts_never_routed(made, tiny_moe_gguf):
    path, log, _ = made
    cov = coverage(path)
    config = json.loads((Path(__file__).resolve().parents[2] / "quant/data/tiny-moe/config.json").read_text())
    n_expert = config["n_routed_experts"]
    assert cov.format == "gguf" and cov.chunk_count == 1 and cov.chunk_size == N_CTX
    experts = cov.experts()
    moe_blocks = [f"blk.{i}" for i in range(config["first_k_dense_replace"], config["num_hidden_layers"])]
    assert list(experts) == moe_blocks
    for block, e in experts.items():
        assert len(e["tokens"]) == n_expert
        assert sum(e["tokens"]) == N_CTX * TOP_K, block  # every token went to exactly TOP_K experts
    never = sum(len(e["never_routed"]) for e in experts.values())
    assert never > 0, "the test needs experts that no token reached"
    # Every expert tensor with a never-routed expert is one llama-imatrix warned about, with its share.
    warned = partial_data_warnings(log)
    for t in cov.tensors:
        if t.is_experts:
            assert t.n_mat == n_expert
            if t.no_data:
                assert warned[t.name] == pytest.approx(100 * (n_expert - len(t.no_data)) / n_expert, abs=0.01)
            else:
                assert t.name not in warned
        else:  # one count per dense tensor: the tokens it multiplied
            assert t.tokens == (N_CTX,), t.name
    assert set(warned) == {t.name for t in cov.tensors if t.no_data}
    d = cov.as_dict()
    assert d["experts_never_routed"] == never and d["tensors_without_data"] == []


def test_never_routed_experts_get_llama_quantizes_uniform_weights(made):
    path, _, _ = made
    cov, im = coverage(path), load_imatrix(path)
    t = next(t for t in cov.tensors if t.is_experts and t.no_data)
    rows = im.data[t.name].numpy().reshape(t.n_mat, -1)
    for e in range(t.n_mat):
        assert (rows[e] == 1.0).all() == (e in t.no_data), e


def test_the_runner_reports_progress_and_finishes_at_one(made):
    _, _, seen = made
    assert seen[-1].step == "imatrix" and seen[-1].fraction == 1.0
    assert all(0.0 <= p.fraction <= 1.0 for p in seen)


def test_a_cancelled_run_stops_the_tool_and_writes_nothing(tiny_moe_gguf, llama_tools, tmp_path):
    text = tmp_path / "calibration.txt"
    text.write_text(calibration_text())
    with pytest.raises(Cancelled):
        run_llama_imatrix(llama_tools / "llama-imatrix", tiny_moe_gguf, text, tmp_path / "imatrix.gguf",
                          ImatrixSettings(n_ctx=64, threads=1), log_path=tmp_path / "log.txt",
                          reporter=Callbacks(stop_when=lambda: True))
    assert not (tmp_path / "imatrix.gguf").exists()


def test_legacy_files_say_ncall_but_not_which_experts(tmp_path):
    path = tmp_path / "old.dat"
    save_legacy(path, {"blk.1.ffn_up_exps.weight": (3, np.full(8, 3.0, np.float32))}, chunk_count=3, dataset="t.txt")
    cov = coverage(path)
    assert cov.format == "dat" and cov.chunk_count == 3 and cov.datasets == ("t.txt",)
    (t,) = cov.tensors
    assert t.ncall == 3 and t.tokens is None and t.no_data is None
    assert cov.experts() == {}
