"""KL divergence of a variant's next-token distributions from the reference's.

From the compact reference (see quant.eval.reference) each position has k+1 buckets:
the reference's top-k tokens, each on its own, and one "rest" bucket holding every
other token. With P the reference and Q the variant,

    KLD = sum_{b in top-k} P(b) (log P(b) - log Q(b))  +  P(rest) (log P(rest) - log Q(rest))

where Q(b) is the variant's probability of the same token id and Q(rest) is the variant's
total probability of the tokens outside the reference's top-k. Merging tokens into one
bucket never increases a KL divergence (log-sum inequality), so this is a lower bound of
the full-vocabulary KLD; with k≈48 the missing part is the divergence *inside* the rest
bucket, weighted by the small rest mass.

Other figures, all over the positions perplexity scores:
  top-1 agreement: the variant's most likely token equals the reference's;
  RMS Δp: root mean square of Q(t) − P(t) for t the reference's most likely token
          (llama.cpp's `--kl-divergence` uses the actual next token instead);
  PPL ratio: variant PPL / reference PPL on the same tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quant.eval.model import EvalSettings, load_model, log_softmax, make_windows, scored_logits
from quant.eval.perplexity import NllAccumulator, PerplexityResult, target_logprobs
from quant.progress import Reporter
from quant.eval.reference import ReferenceLogits
from quant.eval.text import text_sha256


def kld_from_compact(top_ids: np.ndarray, top_logprobs: np.ndarray, rest_logprob: np.ndarray,
                     variant_logprobs: np.ndarray) -> np.ndarray:
    """Per-position bucketed KL(P_ref || Q_variant) in nats.

    top_ids int [N,k], top_logprobs float [N,k], rest_logprob float [N] (reference);
    variant_logprobs float64 [N, n_vocab] (normalised log-probabilities).
    """
    p_lp = top_logprobs.astype(np.float64)
    rest_p_lp = rest_logprob.astype(np.float64)
    q_lp = np.take_along_axis(variant_logprobs, top_ids.astype(np.int64), axis=-1)
    q_rest = variant_logprobs.copy()
    np.put_along_axis(q_rest, top_ids.astype(np.int64), -np.inf, axis=-1)
    peak = q_rest.max(axis=-1, keepdims=True)
    q_rest_lp = (peak + np.log(np.exp(q_rest - peak).sum(axis=-1, keepdims=True)))[:, 0]
    kl = (np.exp(p_lp) * (p_lp - q_lp)).sum(axis=-1)
    rest_p = np.exp(rest_p_lp)
    rest_term = np.where(rest_p > 0, rest_p * (rest_p_lp - q_rest_lp), 0.0)
    return kl + rest_term


@dataclass(frozen=True)
class VariantQuality:
    perplexity: PerplexityResult
    reference_ppl: float
    ppl_ratio: float
    kld_mean: float
    kld_mean_uncertainty: float  # standard error of the mean
    kld_median: float
    kld_p99: float
    kld_max: float
    top1_agreement: float  # fraction in [0, 1]
    rms_dp: float  # fraction of probability, in [0, 1]
    n_positions: int

    def as_dict(self) -> dict:
        d = dict(vars(self))
        d["perplexity"] = {k: v for k, v in vars(self.perplexity).items() if k != "running_ppl"}
        return d


def summarize(kld: np.ndarray, top1_same: np.ndarray, dp: np.ndarray,
              variant_ppl: PerplexityResult, reference_ppl: float) -> VariantQuality:
    n = len(kld)
    return VariantQuality(
        perplexity=variant_ppl, reference_ppl=reference_ppl, ppl_ratio=variant_ppl.ppl / reference_ppl,
        kld_mean=float(kld.mean()),
        kld_mean_uncertainty=float(kld.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        kld_median=float(np.median(kld)), kld_p99=float(np.percentile(kld, 99)), kld_max=float(kld.max()),
        top1_agreement=float(top1_same.mean()), rms_dp=float(np.sqrt(np.mean(dp * dp))), n_positions=n)


def evaluate_variant(
    model_path: "str | Path",
    text: str,
    reference: ReferenceLogits,
    settings: EvalSettings = EvalSettings(),
    reporter: "Reporter | None" = None,
) -> VariantQuality:
    """PPL and KLD of one variant against the reference, in one pass over the same windows."""
    if text_sha256(text) != reference.key.text_sha256 or settings.n_ctx != reference.key.n_ctx:
        raise ValueError("the reference was computed on another text or n_ctx")
    settings = EvalSettings(**{**vars(settings), "max_windows": reference.key.max_windows})
    llm = load_model(model_path, settings)
    try:
        windows = make_windows(llm, text, settings.n_ctx, settings.max_windows)
        if windows.n_scored != len(reference.targets):
            raise ValueError("the variant tokenizes the text differently from the reference")
        acc = NllAccumulator()
        klds, same, dps = [], [], []
        per = windows.scored_per_window
        for i, logits, targets in scored_logits(llm, windows, "kld", reporter):
            rows = slice(i * per, (i + 1) * per)
            if not np.array_equal(targets, reference.targets[rows]):
                raise ValueError("the variant tokenizes the text differently from the reference")
            lq = log_softmax(logits)
            acc.add_window(target_logprobs(lq, targets))
            ids = reference.top_ids[rows]
            klds.append(kld_from_compact(ids, reference.top_logprobs[rows], reference.rest_logprob[rows], lq))
            same.append(lq.argmax(axis=-1) == ids[:, 0])
            q_top = np.exp(lq[np.arange(per), ids[:, 0]])
            dps.append(q_top - np.exp(reference.top_logprobs[rows, 0].astype(np.float64)))
    finally:
        llm.close()
    return summarize(np.concatenate(klds), np.concatenate(same), np.concatenate(dps),
                     acc.result(), reference.perplexity.ppl)
