"""Evaluation texts that ship with Python, so tests and benchmarks download nothing."""
from __future__ import annotations

import hashlib


def topics_text() -> str:
    """CPython's pydoc topic help (`pydoc_data.topics`) as one text, keys in sorted order.

    About 0.5 MB of English prose with code; deterministic for a given Python version.
    """
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return "\n\n".join(f"{key}\n\n{topics[key].strip()}" for key in sorted(topics)) + "\n"


def split_text(text: str, held_out_fraction: float) -> tuple[str, str]:
    """Split at a paragraph boundary into (evaluation part, held-apart part).

    The held-apart tail is for calibration (importance matrix) so that evaluation
    never scores text the quantizer has seen.
    """
    cut = int(len(text) * (1.0 - held_out_fraction))
    boundary = text.rfind("\n\n", 0, cut)
    if boundary <= 0:
        boundary = cut
    return text[:boundary], text[boundary:].lstrip("\n")


#: The share of the pydoc topics held apart for importance matrices: evaluation (workers.benchmark's
#: tier 1) scores the head, calibration (the default imatrix dataset) reads the tail.
CALIBRATION_FRACTION = 0.1


def evaluation_text() -> str:
    """The head of the pydoc topics that tier-1 benchmarks score (never seen by an imatrix)."""
    return split_text(topics_text(), CALIBRATION_FRACTION)[0]


def calibration_text() -> str:
    """The held-apart tail of the pydoc topics: the default calibration dataset (about 50 kB of
    English prose with Python code). For the trained tiny MoE it is training text (quant.train_tiny)."""
    return split_text(topics_text(), CALIBRATION_FRACTION)[1]


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
