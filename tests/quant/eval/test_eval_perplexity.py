import re
import subprocess

import pytest

from quant.eval.model import EvalSettings
from quant.eval.perplexity import perplexity
from quant.progress import Callbacks, Cancelled

N_CTX = 128
WINDOWS = 6


def llama_perplexity(tools, model, text_file, flash_attn: bool) -> tuple[float, float]:
    # -b n_ctx: one sequence per batch, as we evaluate; -fa: the same attention kernel.
    out = subprocess.run(
        [str(tools / "llama-perplexity"), "-m", str(model), "-f", str(text_file), "-c", str(N_CTX),
         "-b", str(N_CTX), "--chunks", str(WINDOWS), "-t", "2", "-fa", "on" if flash_attn else "off"],
        check=True, capture_output=True, text=True)
    match = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", out.stdout + out.stderr)
    assert match, out.stderr[-2000:]
    return float(match.group(1)), float(match.group(2))


@pytest.mark.slow
@pytest.mark.parametrize("flash_attn", [False, True])
def test_it_matches_llama_perplexity(smollm2, eval_text, llama_tools, tmp_path, flash_attn):
    text_file = tmp_path / "text.txt"
    text_file.write_text(eval_text)
    expected_ppl, expected_pm = llama_perplexity(llama_tools, smollm2, text_file, flash_attn)

    ours = perplexity(smollm2, eval_text,
                      EvalSettings(n_ctx=N_CTX, max_windows=WINDOWS, threads=2, flash_attn=flash_attn))

    assert ours.n_windows == WINDOWS
    assert ours.n_tokens == WINDOWS * (N_CTX - 1 - N_CTX // 2)
    assert ours.ppl == pytest.approx(expected_ppl, rel=0.005)
    assert ours.uncertainty == pytest.approx(expected_pm, rel=0.005)


def test_it_reports_each_window_and_stops_when_cancelled(smollm2, eval_text):
    seen = []
    settings = EvalSettings(n_ctx=64, max_windows=3, threads=2)

    result = perplexity(smollm2, eval_text, settings, reporter=Callbacks(seen.append))

    assert [round(p.fraction, 3) for p in seen] == [0.333, 0.667, 1.0]
    assert {p.step for p in seen} == {"perplexity"} and [p.message for p in seen][-1] == "window 3/3"
    assert len(result.running_ppl) == 3 and result.running_ppl[-1] == result.ppl

    with pytest.raises(Cancelled):
        perplexity(smollm2, eval_text, settings, reporter=Callbacks(seen.append, lambda: len(seen) >= 4))
    assert len(seen) == 4  # stopped after the first window of the second run


def test_it_refuses_a_text_shorter_than_two_windows(smollm2):
    with pytest.raises(ValueError, match="at least 256 tokens"):
        perplexity(smollm2, "too short", EvalSettings(n_ctx=128, threads=2))
