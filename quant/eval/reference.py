"""The reference variant's next-token distributions, stored compactly for KL divergence.

Storing full distributions costs n_vocab floats per scored token (0.5 MB per token for
DeepSeek's 129k vocabulary). We keep, per scored position:

    top_ids       int32   [N, k]  the reference's k most likely tokens, most likely first
    top_logprobs  float32 [N, k]  their log-probabilities
    rest_logprob  float32 [N]     log of the probability of all other tokens together
                                  (log-sum-exp of the rest, normalised)
    targets       int32   [N]     the token that actually follows (for the reference PPL)
    target_logprob float32 [N]    its log-probability under the reference

Log-probabilities are float32, not float16: a float16 rounding error of ~2.5e-4 on the
top token's log-probability is as large as the whole KL divergence of a Q8_0 variant.

A file is keyed by (reference GGUF sha256, text sha256, n_ctx, windows, k), so it can
be reused for every variant of the same checkpoint evaluated on the same text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from quant.eval.model import EvalSettings, load_model, log_softmax, make_windows, scored_logits
from quant.eval.perplexity import NllAccumulator, PerplexityResult, target_logprobs
from quant.progress import Reporter
from quant.eval.text import text_sha256
from quant.hashing import file_sha256

FORMAT_VERSION = 1
DEFAULT_TOP_K = 48


@dataclass(frozen=True)
class ReferenceKey:
    model_sha256: str
    text_sha256: str
    n_ctx: int
    max_windows: Optional[int]  # as requested; None: every full window of the text
    top_k: int

    def filename(self) -> str:
        windows = "all" if self.max_windows is None else self.max_windows
        return (f"ref-{self.model_sha256[:16]}-{self.text_sha256[:16]}"
                f"-ctx{self.n_ctx}-w{windows}-k{self.top_k}.npz")


@dataclass
class ReferenceLogits:
    key: ReferenceKey
    top_ids: np.ndarray
    top_logprobs: np.ndarray
    rest_logprob: np.ndarray
    targets: np.ndarray
    target_logprob: np.ndarray
    perplexity: PerplexityResult

    def save(self, path: "str | Path") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT_VERSION, "key": vars(self.key), "perplexity": vars(self.perplexity)}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), top_ids=self.top_ids,
                            top_logprobs=self.top_logprobs, rest_logprob=self.rest_logprob,
                            targets=self.targets, target_logprob=self.target_logprob)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: "str | Path") -> "ReferenceLogits":
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if meta["format"] != FORMAT_VERSION:
                raise ValueError(f"{path}: reference format {meta['format']}, expected {FORMAT_VERSION}")
            return cls(key=ReferenceKey(**meta["key"]), top_ids=data["top_ids"],
                       top_logprobs=data["top_logprobs"], rest_logprob=data["rest_logprob"],
                       targets=data["targets"], target_logprob=data["target_logprob"],
                       perplexity=PerplexityResult(**meta["perplexity"]))


def top_k_compact(logprobs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids [N,k] most likely first, their log-probs [N,k], log of the remaining mass [N])."""
    part = np.argpartition(-logprobs, k - 1, axis=-1)[:, :k]
    part_lp = np.take_along_axis(logprobs, part, axis=-1)
    order = np.argsort(-part_lp, axis=-1, kind="stable")
    ids = np.take_along_axis(part, order, axis=-1)
    top_lp = np.take_along_axis(part_lp, order, axis=-1)
    rest = logprobs.copy()
    np.put_along_axis(rest, ids, -np.inf, axis=-1)
    peak = rest.max(axis=-1, keepdims=True)
    rest_lp = (peak + np.log(np.exp(rest - peak).sum(axis=-1, keepdims=True)))[:, 0]
    return ids.astype(np.int32), top_lp, rest_lp


def reference_key(model_path: "str | Path", text: str, settings: EvalSettings, top_k: int,
                  model_sha256: Optional[str] = None) -> ReferenceKey:
    """What a reference is of: the model file's bytes, the text, the windows and k."""
    return ReferenceKey(model_sha256 or file_sha256(model_path), text_sha256(text), settings.n_ctx,
                        settings.max_windows, top_k)


def compute_reference(
    model_path: "str | Path",
    text: str,
    settings: EvalSettings = EvalSettings(),
    top_k: int = DEFAULT_TOP_K,
    model_sha256: Optional[str] = None,
    reporter: "Reporter | None" = None,
) -> ReferenceLogits:
    """Run the reference model once over the scored positions and keep the compact form."""
    key = reference_key(model_path, text, settings, top_k, model_sha256)
    llm = load_model(model_path, settings)
    try:
        windows = make_windows(llm, text, settings.n_ctx, settings.max_windows)
        acc = NllAccumulator()
        ids, top_lps, rests, targets, target_lps = [], [], [], [], []
        for _, logits, window_targets in scored_logits(llm, windows, "reference", reporter):
            logprobs = log_softmax(logits)
            i, lp, rest = top_k_compact(logprobs, top_k)
            tlp = target_logprobs(logprobs, window_targets)
            acc.add_window(tlp)
            ids.append(i), top_lps.append(lp), rests.append(rest)
            targets.append(window_targets), target_lps.append(tlp)
    finally:
        llm.close()
    return ReferenceLogits(key=key, top_ids=np.concatenate(ids),
                           top_logprobs=np.concatenate(top_lps).astype(np.float32),
                           rest_logprob=np.concatenate(rests).astype(np.float32),
                           targets=np.concatenate(targets).astype(np.int32),
                           target_logprob=np.concatenate(target_lps).astype(np.float32),
                           perplexity=acc.result())


def cached_reference(
    model_path: "str | Path",
    text: str,
    cache_dir: "str | Path",
    settings: EvalSettings = EvalSettings(),
    top_k: int = DEFAULT_TOP_K,
    model_sha256: Optional[str] = None,
    reporter: "Reporter | None" = None,
) -> ReferenceLogits:
    """Load the reference from cache_dir when this (model, text, n_ctx, k) was computed before."""
    key = reference_key(model_path, text, settings, top_k, model_sha256)
    path = Path(cache_dir) / key.filename()
    if path.exists():
        ref = ReferenceLogits.load(path)
        if ref.key == key:
            return ref
    ref = compute_reference(model_path, text, settings, top_k, key.model_sha256, reporter)
    ref.save(path)
    return ref
