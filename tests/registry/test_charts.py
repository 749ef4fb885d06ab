"""The Pareto front and the SVG it is drawn into."""
from __future__ import annotations

from registry.charts import Point, pareto_front, size_quality_svg


def test_it_keeps_only_points_nothing_beats_on_size_and_loss():
    points = [Point("Q8_0", 665, 0.0), Point("Q4_K_M", 377, 0.6), Point("Q3_K_M", 298, 1.8),
              Point("DQ3_K_M", 281, 1.0), Point("Q2_K", 228, 7.5)]
    assert [p.label for p in pareto_front(points)] == ["Q2_K", "DQ3_K_M", "Q4_K_M", "Q8_0"]


def test_the_svg_escapes_labels_and_draws_every_point():
    svg = size_quality_svg([Point("<b>x</b>", 10, 1.0), Point("y", 20, 0.5)], "drop")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and svg.count('class="variant"') == 2
