"""The dashboard page's server side: what the chart plots when no task suite has run yet."""
from __future__ import annotations

import pytest

from registry.models import Variant
from tests import factories

pytestmark = pytest.mark.django_db


def test_without_task_scores_the_chart_plots_kld_in_mib_for_small_models(client):
    ckpt = factories.checkpoint("tiny-v3")
    made = {name: Variant.objects.create(checkpoint=ckpt, recipe=factories.recipe(name), status=Variant.Status.READY,
                                         total_bytes=size, bits_per_weight=8 * size / 14e6)
            for name, size in (("F16", 28_000_000), ("Q4_K_M", 8_600_000), ("DQ3_K_M", 6_700_000))}
    for name, kld in (("Q4_K_M", 0.036), ("DQ3_K_M", 0.080)):
        factories.measured(made[name], made["F16"], ppl=1700.0 + 1000 * kld, reference_ppl=1700.0, kld_mean=kld)
    page = client.get("/").content.decode()
    chart = page[page.index('<svg'):page.index('</svg>')]
    assert "mean KLD vs reference" in chart and "size (MiB)" in chart
    assert chart.count('class="variant"') == 3  # every variant is plotted, not only the baseline
    assert "8.2\xa0MB" in page  # sizes in a unit that fits, not "0.0 GiB"


def test_with_task_scores_the_chart_plots_the_accuracy_drop_in_gib(client):
    ckpt = factories.checkpoint("deepseek-r1")
    for name, size, score, baseline in (("Q8_0", 713 * 2**30, 83.0, True), ("DQ3_K_M", 279 * 2**30, 82.7, False)):
        v = Variant.objects.create(checkpoint=ckpt, recipe=factories.recipe(name), status=Variant.Status.READY,
                                   total_bytes=size, bits_per_weight=8.5 if baseline else 3.57)
        factories.scored(v, {"MMLU": [score]})
    page = client.get("/").content.decode()
    chart = page[page.index('<svg'):page.index('</svg>')]
    assert "accuracy drop (%)" in chart and "size (GiB)" in chart and chart.count('class="variant"') == 2
