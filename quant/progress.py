"""Progress and cancellation of long work: one small protocol from quant/ up to the job row and the terminal.

A conversion or an evaluation takes a Reporter, calls `report(Progress(...))` as it goes and
`cancelled()` between units of work (a tensor, a window, a task run), and raises Cancelled when
asked to stop. It never knows who listens: a worker writes the job row (workers.context), the
command line prints a line, a test collects the values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol


@dataclass(frozen=True)
class Progress:
    step: str  # what is running and how far through its units: "quantize 3/291", "perplexity", "kld"
    fraction: float  # of the step, in [0, 1]
    message: str = ""  # a line for the log, when a unit of work finished; "" for an update part-way
    eta_s: "float | None" = None  # seconds left in the step, when known
    index: int = 0  # the unit of work this is about (1-based), 0 when the step has no units
    count: int = 0  # units in the step
    item: str = ""  # what the unit is, e.g. "blk.0.attn_q.weight Q4_K"


class Reporter(Protocol):
    def report(self, progress: Progress) -> None: ...

    def cancelled(self) -> bool: ...


class Cancelled(Exception):
    """Raised between units of work once the reporter's cancelled() returned True."""


@dataclass
class Callbacks:
    """A Reporter made of two plain functions, either of which may be left out."""

    on_progress: "Optional[Callable[[Progress], None]]" = None
    stop_when: "Optional[Callable[[], bool]]" = None

    def report(self, progress: Progress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def cancelled(self) -> bool:
        return self.stop_when is not None and bool(self.stop_when())


def report(reporter: "Reporter | None", step: str, fraction: float, message: str = "", **fields) -> None:
    """Send a Progress (fraction clamped to [0, 1]) when there is a reporter."""
    if reporter is not None:
        reporter.report(Progress(step, min(max(fraction, 0.0), 1.0), message, **fields))


def check_cancelled(reporter: "Reporter | None", message: str, error: type[Cancelled] = Cancelled) -> None:
    """Raise `error(message)` if the reporter asks to stop; called between units of work."""
    if reporter is not None and reporter.cancelled():
        raise error(message)


class Printer:
    """A Reporter for the command line: a line per update; it never cancels (Ctrl-C does)."""

    def report(self, progress: Progress) -> None:
        print(f"[{progress.step}] {progress.fraction * 100:5.1f}% {progress.message}", flush=True)

    def cancelled(self) -> bool:
        return False
