import pytest

from quant.eval.harness import run_suite
from quant.progress import Callbacks, Cancelled
from quant.eval.server import ServerSettings, local_server
from quant.eval.suites import load_suite


@pytest.mark.slow
def test_the_bundled_smoke_suite_runs_offline_against_the_local_server(smollm2, tmp_path):
    events = []
    with local_server(smollm2, ServerSettings(n_ctx=512, threads=2), log_path=tmp_path / "server.log") as endpoint:
        result = run_suite(load_suite("smoke"), endpoint, tmp_path / "runs", offline=True,
                           reporter=Callbacks(events.append))

    (score,) = result.scores
    assert score.benchmark == "Smoke QA" and score.metric == "exact_match,strip"
    assert len(score.runs) == 2 and all(0.0 <= r <= 100.0 for r in score.runs)
    assert score.runs[0] == score.runs[1] and score.std == 0.0  # greedy decoding repeats exactly
    assert [(e.step, e.fraction, e.index, e.count) for e in events] == [("benchmarks", 0.5, 1, 2),
                                                                          ("benchmarks", 1.0, 2, 2)]


def test_a_cancel_before_the_first_run_stops_the_suite(tmp_path):
    from quant.eval.server import external_server

    endpoint = external_server("http://127.0.0.1:9/v1")
    with pytest.raises(Cancelled):
        run_suite(load_suite("smoke"), endpoint, tmp_path, reporter=Callbacks(stop_when=lambda: True))


@pytest.mark.slow
def test_a_chat_task_samples_with_a_seed_per_repeat_and_keeps_every_output(smollm2, tmp_path):
    """The reasoning-model path on a model that runs here: chat template, sampling, thinking stripped."""
    import json

    from quant.eval.suites import Suite, SuiteTask

    task = SuiteTask("Smoke QA chat", "dsq_smoke_qa", repeats=2, chat=True, strip_thinking=True,
                     sampling={"temperature": 0.6, "top_p": 0.95}, max_tokens=16)
    with local_server(smollm2, ServerSettings(n_ctx=1024, threads=2), log_path=tmp_path / "server.log") as endpoint:
        result = run_suite(Suite("chat", "", (task,)), endpoint, tmp_path / "runs", limit=3, offline=True)

    (score,) = result.scores
    assert len(score.runs) == 2 and score.settings["sampling"] == {"temperature": 0.6, "top_p": 0.95}
    assert score.settings["gen_kwargs"] == "temperature=0.6,top_p=0.95,do_sample=True,max_gen_toks=16"
    for run, seed in zip(score.outputs, (1234, 1235)):
        assert run["n_samples"] == run["n_requests"] == 3 and run["seed"] == seed
        lines = [json.loads(s) for s in (tmp_path / "runs" / run["raw_outputs"]).read_text().splitlines()]
        assert all(line["path"] == "/v1/chat/completions" for line in lines)  # through the chat template
        assert all(line["request"]["seed"] == seed and line["request"]["temperature"] == 0.6 for line in lines)
        assert all(line["request"]["messages"][0]["role"] == "user" for line in lines)
