"""How measured figures are printed (review page, dashboard, model card): a value with its ± at the
uncertainty's precision, otherwise a few significant digits; never a float's seventeen."""
from __future__ import annotations

import math
from typing import Optional


def _number(value) -> bool:
    """A figure to print (templates hand over "" for a missing attribute)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sig(value: Optional[float], digits: int = 4) -> str:
    """A value to `digits` significant digits, without an exponent for ordinary magnitudes ("—" for None)."""
    if not _number(value):
        return "—"
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    if -4 <= magnitude < 9:
        decimals = max(0, digits - 1 - magnitude)
        return f"{value:.{decimals}f}"
    return f"{value:.{digits - 1}e}"


def plus_minus(value: Optional[float], uncertainty: Optional[float], decimals: Optional[int] = None) -> str:
    """`14.06 ± 0.85`: the uncertainty to two significant digits, the value to the same decimal place.

    Without an uncertainty: `decimals` places (task scores in percent: 2), else four significant digits."""
    if not _number(value):
        return "—"
    if not _number(uncertainty) or not math.isfinite(uncertainty) or uncertainty <= 0:
        return f"{value:.{decimals}f}" if decimals is not None else sig(value)
    decimals = max(0, 1 - math.floor(math.log10(uncertainty)))
    return f"{value:.{decimals}f} ± {uncertainty:.{decimals}f}"


def percent(value: Optional[float], decimals: int = 2, signed: bool = False) -> str:
    if not _number(value):
        return "—"
    return f"{value:+.{decimals}f} %" if signed else f"{value:.{decimals}f} %"
