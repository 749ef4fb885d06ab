"""llama.cpp's llama-server as the evaluation engine: its command line, a real server on SmolLM2, no orphans."""
from __future__ import annotations

import os

import pytest

from quant.eval.harness import run_suite
from quant.eval.llama_server import LlamaServerSettings, llama_server, settings_for
from quant.eval.suites import load_suite
from quant.progress import Callbacks, Cancelled


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_an_eight_gpu_host_gets_every_layer_on_the_gpus_split_evenly():
    argv = settings_for(8, n_ctx=8192, parallel=4).argv("llama-server", "/m/DQ3_K_M-00001-of-00007.gguf", 8080, "r1")
    assert flag(argv, "--n-gpu-layers") == "999" and flag(argv, "--flash-attn") == "on"
    assert flag(argv, "--split-mode") == "layer" and flag(argv, "--tensor-split") == "1,1,1,1,1,1,1,1"
    # -c is shared by the slots: 4 slots of 8192 tokens each
    assert flag(argv, "--ctx-size") == "32768" and flag(argv, "--parallel") == "4"
    assert flag(argv, "--fit") == "off" and flag(argv, "--reasoning-format") == "none" and "--jinja" in argv


def test_one_gpu_has_no_split_and_a_cpu_offloads_nothing():
    one = settings_for(1).argv("llama-server", "m.gguf", 1, "m")
    assert flag(one, "--n-gpu-layers") == "999" and "--tensor-split" not in one and "--split-mode" not in one
    cpu = settings_for(0).argv("llama-server", "m.gguf", 1, "m")
    assert flag(cpu, "--n-gpu-layers") == "0" and flag(cpu, "--flash-attn") == "auto"


def test_a_jobs_options_win_and_bad_ones_are_refused():
    s = settings_for(4, flash_attn="off", tensor_split="3,1,1,1", split_mode="row", n_gpu_layers=None)
    assert (s.flash_attn, s.tensor_split, s.split_mode, s.n_gpu_layers) == ("off", (3.0, 1.0, 1.0, 1.0), "row", 999)
    for bad in ({"split_mode": "diagonal"}, {"flash_attn": "yes"}, {"tensor_split": (0, 0)}, {"parallel": 0}):
        with pytest.raises(ValueError):
            LlamaServerSettings(**bad)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_the_server_runs_as_asked_and_is_gone_after_the_block(smollm2, llama_tools, tmp_path):
    settings = settings_for(0, n_ctx=1024, parallel=2, threads=2)
    with llama_server(llama_tools / "llama-server", smollm2, settings, log_path=tmp_path / "server.log") as server:
        facts = server.record()["props"]
        pid = server.pid
        assert alive(pid)
    assert facts["n_ctx"] == 1024 and facts["total_slots"] == 2 and facts["chat_template"]
    assert facts["model_path"] == str(smollm2)
    assert not alive(pid)


@pytest.mark.slow
def test_the_smoke_suite_runs_through_llama_server_with_repeats(smollm2, llama_tools, tmp_path):
    settings = settings_for(0, n_ctx=512, parallel=2, threads=2)
    with llama_server(llama_tools / "llama-server", smollm2, settings, log_path=tmp_path / "server.log") as server:
        result = run_suite(load_suite("smoke"), server.endpoint, tmp_path / "runs", offline=True, concurrency=2)

    (score,) = result.scores
    assert len(score.runs) == 2 and score.std == 0.0  # greedy decoding repeats exactly
    assert score.settings["sampling"] == "task default (greedy)" and score.settings["repeats"] == 2
    first = score.outputs[0]
    assert first["seed"] == 1234 and score.outputs[1]["seed"] == 1235
    assert first["n_samples"] == 10 and first["n_requests"] == 10  # one scored sample, one raw output per question
    assert (tmp_path / "runs" / first["raw_outputs"]).exists()


@pytest.mark.slow
def test_a_cancel_while_the_server_loads_stops_it(smollm2, llama_tools, tmp_path):
    started = []
    with pytest.raises(Cancelled):
        with llama_server(llama_tools / "llama-server", smollm2, settings_for(0, n_ctx=512),
                          reporter=Callbacks(stop_when=lambda: bool(started)),
                          on_start=lambda pid, argv: started.append(pid)):
            pass
    assert started and not alive(started[0])


def test_a_missing_binary_is_named(tmp_path, smollm2):
    with pytest.raises(FileNotFoundError, match="DSQ_LLAMA_SERVER"):
        with llama_server(tmp_path / "llama-server", smollm2, settings_for(0)):
            pass
