"""Perplexity the way llama.cpp's llama-perplexity computes it (see quant.eval.model).

PPL = exp(mean NLL) over all scored tokens. The `±` is llama-perplexity's: the
standard error of the mean NLL, sqrt((E[nll²] − E[nll]²) / (N − 1)), carried to PPL
by the first-order rule d(exp x) = exp(x) dx.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quant.eval.model import EvalSettings, load_model, log_softmax, make_windows, scored_logits
from quant.progress import Reporter


@dataclass
class NllAccumulator:
    """Running sums of the negative log-likelihood, as llama-perplexity keeps them."""

    nll: float = 0.0
    nll2: float = 0.0
    count: int = 0
    running_ppl: list[float] = field(default_factory=list)  # after each window, like its [1]x,[2]y… line

    def add_window(self, target_logprobs: np.ndarray) -> None:
        values = -target_logprobs.astype(np.float64)
        self.nll += float(values.sum())
        self.nll2 += float((values * values).sum())
        self.count += len(values)
        self.running_ppl.append(math.exp(self.nll / self.count))

    def result(self) -> "PerplexityResult":
        mean = self.nll / self.count
        var = self.nll2 / self.count - mean * mean
        stderr = math.sqrt(var / (self.count - 1)) if var > 0 and self.count > 1 else float("nan")
        ppl = math.exp(mean)
        return PerplexityResult(ppl=ppl, uncertainty=stderr * ppl, mean_nll=mean, n_tokens=self.count,
                                n_windows=len(self.running_ppl), running_ppl=list(self.running_ppl))


@dataclass(frozen=True)
class PerplexityResult:
    ppl: float
    uncertainty: float  # llama-perplexity's "±"
    mean_nll: float
    n_tokens: int  # scored tokens
    n_windows: int
    running_ppl: list[float]


def target_logprobs(logprobs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return logprobs[np.arange(len(targets)), targets]


def perplexity(
    model_path: "str | Path",
    text: str,
    settings: EvalSettings = EvalSettings(),
    reporter: "Reporter | None" = None,
) -> PerplexityResult:
    """Perplexity of a GGUF on a text; progress per window, cancellation between windows."""
    llm = load_model(model_path, settings)
    try:
        windows = make_windows(llm, text, settings.n_ctx, settings.max_windows)
        acc = NllAccumulator()
        for _, logits, targets in scored_logits(llm, windows, "perplexity", reporter):
            acc.add_window(target_logprobs(log_softmax(logits), targets))
        return acc.result()
    finally:
        llm.close()
