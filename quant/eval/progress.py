"""Progress reporting and cancellation shared by every long-running evaluation step.

The runner never knows who is listening: a Celery task passes callables that write
to the job row, the command line passes one that prints.
"""
from __future__ import annotations

from typing import Callable, Optional

# progress(step, fraction_done, message); fraction is in [0, 1] for that step.
ProgressFn = Callable[[str, float, str], None]
# cancelled() -> True when the caller wants the work to stop.
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """Raised between chunks of work when the caller's cancel check returned True."""


def report(progress: Optional[ProgressFn], step: str, fraction: float, message: str = "") -> None:
    if progress is not None:
        progress(step, min(max(fraction, 0.0), 1.0), message)


def check_cancelled(cancelled: Optional[CancelFn], step: str) -> None:
    """Raise Cancelled if the caller asked to stop; called between windows/tasks."""
    if cancelled is not None and cancelled():
        raise Cancelled(f"evaluation cancelled during {step}")


def print_progress(step: str, fraction: float, message: str) -> None:
    """A ProgressFn for the command line."""
    print(f"[{step}] {fraction * 100:5.1f}% {message}", flush=True)
