"""Template filters for measured figures (registry.figures): {% load figures %} then `x|sig`, `x|pm:unc`."""
from __future__ import annotations

from django import template

from registry import figures

register = template.Library()


@register.filter
def sig(value, digits: int = 4) -> str:
    return figures.sig(value, int(digits))


@register.filter
def pm(value, uncertainty) -> str:
    return figures.plus_minus(value, uncertainty)


@register.filter
def score(value, std) -> str:
    """A task score in percent (or a drop in points): ± its spread, else two decimals."""
    return figures.plus_minus(value, std, 2)


@register.filter
def pct(value, decimals: int = 2) -> str:
    return figures.percent(value, int(decimals))
