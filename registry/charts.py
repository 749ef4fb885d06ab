"""Size-versus-quality chart as inline SVG, drawn on the server (the dashboard works offline)."""
from __future__ import annotations

from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

POINT_COLOUR = "#1f77b4"
FRONT_COLOUR = "#ff7f0e"


@dataclass(frozen=True)
class Point:
    label: str
    size: float  # in the chart's size unit
    loss: float  # lower is better: accuracy drop %, or KLD


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both size and loss, from smallest to largest."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.size, p.loss)):
        if not front or p.loss < front[-1].loss:
            front.append(p)
    return front


def size_quality_svg(points: list[Point], y_label: str, x_label: str = "size (GiB)", width: int = 640,
                     height: int = 360) -> SafeString:
    """Scatter of every variant, the Pareto front as a line; axes labelled, nothing fetched."""
    left, right, top, bottom = 64, 16, 16, 48
    w, h = width - left - right, height - top - bottom
    xs, ys = [p.size for p in points], [p.loss for p in points]
    x0, x1 = 0.0, max(xs) * 1.08 if xs else 1.0
    y0, y1 = 0.0, max(max(ys) * 1.15 if ys else 1.0, 1e-6)

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * w

    def sy(v: float) -> float:
        return top + h - (v - y0) / (y1 - y0) * h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="pareto-chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="size versus {escape(y_label)}">',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#ffffff" stroke="#444444"/>']
    for i in range(5):
        gx, gy = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{sx(gx):.1f}" y="{top + h + 16}" font-size="11" text-anchor="middle">{gx:.0f}</text>')
        parts.append(f'<text x="{left - 6}" y="{sy(gy) + 4:.1f}" font-size="11" text-anchor="end">{gy:.3g}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{height - 8}" font-size="12" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{top + h / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + h / 2})">{escape(y_label)}</text>')
    front = pareto_front(points)
    if len(front) > 1:
        path = " ".join(f"{sx(p.size):.1f},{sy(p.loss):.1f}" for p in front)
        parts.append(f'<polyline class="front" points="{path}" fill="none" stroke="{FRONT_COLOUR}" stroke-width="4"/>')
    for p in points:
        colour = FRONT_COLOUR if p in front else POINT_COLOUR
        parts.append(f'<circle class="variant" cx="{sx(p.size):.1f}" cy="{sy(p.loss):.1f}" r="9" '
                     f'fill="{colour}"><title>{escape(p.label)}: {p.size:.1f}, {p.loss:.3g}</title></circle>')
        parts.append(f'<text x="{sx(p.size) + 11:.1f}" y="{sy(p.loss) - 9:.1f}" font-size="11">{escape(p.label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))
