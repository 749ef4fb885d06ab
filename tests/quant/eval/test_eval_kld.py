import numpy as np
import pytest

from quant.eval.kld import evaluate_variant, kld_from_compact
from quant.eval.model import EvalSettings, log_softmax
from quant.eval.reference import compute_reference, top_k_compact

SETTINGS = EvalSettings(n_ctx=128, max_windows=3, threads=2)


def full_kl(p_lp: np.ndarray, q_lp: np.ndarray) -> np.ndarray:
    return (np.exp(p_lp) * (p_lp - q_lp)).sum(axis=-1)


def random_logprobs(rng, n: int, vocab: int, scale: float) -> np.ndarray:
    return log_softmax(rng.normal(scale=scale, size=(n, vocab)).astype(np.float32))


def test_bucketed_kld_is_a_lower_bound_that_becomes_exact_when_k_covers_the_vocabulary():
    rng = np.random.default_rng(0)
    p = random_logprobs(rng, 50, 200, 3.0)
    q = log_softmax(np.log(np.exp(p)) + rng.normal(scale=0.5, size=p.shape))
    exact = full_kl(p, q)

    for k in (1, 8, 32):
        ids, top_lp, rest_lp = top_k_compact(p, k)
        bucketed = kld_from_compact(ids, top_lp, rest_lp, q)
        assert np.all(bucketed <= exact + 1e-6)
        assert np.all(bucketed >= -1e-6)
    ids, top_lp, rest_lp = top_k_compact(p, 199)  # the rest bucket is one token
    assert kld_from_compact(ids, top_lp, rest_lp, q) == pytest.approx(exact, rel=1e-5)


def test_top_k_compact_keeps_the_most_likely_tokens_first_and_the_rest_mass():
    rng = np.random.default_rng(1)
    p = random_logprobs(rng, 4, 100, 2.0)
    ids, top_lp, rest_lp = top_k_compact(p, 10)

    assert np.array_equal(ids[:, 0], p.argmax(axis=-1))
    assert np.all(np.diff(top_lp, axis=-1) <= 0)
    total = np.exp(top_lp).sum(axis=-1) + np.exp(rest_lp)
    assert total == pytest.approx(np.ones(4), abs=1e-9)


@pytest.fixture(scope="module")
def reference(smollm2, eval_text):
    return compute_reference(smollm2, eval_text, SETTINGS, top_k=32)


def test_the_reference_model_against_itself_has_no_divergence(smollm2, eval_text, reference):
    quality = evaluate_variant(smollm2, eval_text, reference, SETTINGS)

    assert quality.n_positions == 3 * 63
    assert abs(quality.kld_mean) < 1e-6 and quality.kld_max < 1e-5
    assert quality.top1_agreement == 1.0
    assert quality.rms_dp < 1e-5
    assert quality.ppl_ratio == pytest.approx(1.0, abs=1e-9)


@pytest.mark.slow
def test_a_coarser_variant_diverges(q2k_variant, eval_text, reference):
    quality = evaluate_variant(q2k_variant, eval_text, reference, SETTINGS)

    assert quality.kld_mean > 0.01
    assert quality.kld_median <= quality.kld_p99 <= quality.kld_max
    assert quality.top1_agreement < 1.0
    assert quality.ppl_ratio > 1.0
    assert quality.rms_dp > 0.0


def test_a_reference_from_another_text_is_refused(smollm2, eval_text, reference):
    with pytest.raises(ValueError, match="another text"):
        evaluate_variant(smollm2, eval_text[:-10], reference, SETTINGS)
