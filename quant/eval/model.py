"""Opening a GGUF with llama-cpp-python and cutting a text into llama-perplexity's windows.

Windows follow llama.cpp's `tools/perplexity/perplexity.cpp` (`perplexity()`):
the whole text is tokenized once with the model's BOS, cut into consecutive
non-overlapping windows of n_ctx tokens (the tail that does not fill a window is
dropped), the first token of each window is replaced by BOS when the vocabulary
adds one, and only the second half of each window is scored, so every scored token
has at least n_ctx/2 tokens of context.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from quant.progress import Reporter, check_cancelled, report


@dataclass(frozen=True)
class EvalSettings:
    """How to run the model. Defaults match llama-perplexity except n_ctx (512 there)."""

    n_ctx: int = 512
    n_batch: int = 2048  # clipped to n_ctx, as llama-perplexity does
    threads: Optional[int] = None  # None: all cores
    n_gpu_layers: int = 0
    # llama-perplexity turns flash attention on by default ("auto"); llama-cpp-python leaves
    # it off. On CPU the two differ by ~0.5 % in PPL on small models, so compare like with like.
    flash_attn: bool = False
    max_windows: Optional[int] = None  # llama-perplexity --chunks


def load_model(path: "str | Path", settings: EvalSettings):
    """A llama_cpp.Llama that keeps the logits of every position (logits_all)."""
    import llama_cpp

    threads = settings.threads or os.cpu_count() or 1
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=settings.n_ctx,
        n_batch=min(settings.n_batch, settings.n_ctx),
        n_ubatch=min(settings.n_batch, settings.n_ctx),
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=settings.n_gpu_layers,
        flash_attn=settings.flash_attn,
        logits_all=True,
        verbose=False,
    )


@dataclass(frozen=True)
class Windows:
    """The tokenized text and the window geometry; positions are indices into `tokens`."""

    tokens: np.ndarray  # int32 [n_tokens], with BOS first when the vocabulary adds one
    n_ctx: int
    n_windows: int
    bos: Optional[int]  # replaces each window's first token; None when the model adds no BOS

    @property
    def first(self) -> int:
        """Index inside a window of the first position whose logits are scored."""
        return self.n_ctx // 2

    @property
    def scored_per_window(self) -> int:
        return self.n_ctx - 1 - self.first

    @property
    def n_scored(self) -> int:
        return self.n_windows * self.scored_per_window

    def window_input(self, i: int) -> list[int]:
        start = i * self.n_ctx
        window = self.tokens[start:start + self.n_ctx].tolist()
        if self.bos is not None:
            window[0] = self.bos
        return window

    def window_targets(self, i: int) -> np.ndarray:
        """The tokens predicted by the scored positions first .. n_ctx-2 of window i."""
        start = i * self.n_ctx
        return self.tokens[start + self.first + 1:start + self.n_ctx]


def make_windows(llm, text: str, n_ctx: int, max_windows: Optional[int] = None) -> Windows:
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    tokens = np.asarray(llm.tokenize(text.encode("utf-8"), add_bos=True, special=False), dtype=np.int32)
    if len(tokens) < 2 * n_ctx:
        raise ValueError(f"need at least {2 * n_ctx} tokens for n_ctx={n_ctx}, the text has {len(tokens)}")
    n_windows = len(tokens) // n_ctx
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
    return Windows(tokens=tokens, n_ctx=n_ctx, n_windows=n_windows, bos=llm.token_bos() if add_bos else None)


def scored_logits(
    llm,
    windows: Windows,
    step: str,
    reporter: "Reporter | None" = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (window index, logits float32 [scored, n_vocab], targets int32 [scored]) per window.

    The KV cache is cleared before each window; the cancel check runs between windows.
    """
    for i in range(windows.n_windows):
        check_cancelled(reporter, f"evaluation cancelled during {step}")
        llm.reset()
        llm.eval(windows.window_input(i))
        logits = np.array(llm.scores[windows.first:windows.n_ctx - 1], dtype=np.float32)
        yield i, logits, windows.window_targets(i)
        report(reporter, step, (i + 1) / windows.n_windows, f"window {i + 1}/{windows.n_windows}",
               index=i + 1, count=windows.n_windows)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities in float64 (llama-perplexity sums exp in double too)."""
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
