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
