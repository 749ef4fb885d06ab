import csv
import io
import json

import pytest

from quant.eval.report import (
    DEFAULT_PUBLISHED_PATH,
    PUBLISHED_LABEL,
    ReportRow,
    Score,
    acc_drop,
    build_report,
    published_rows,
)


def measured_rows() -> list[ReportRow]:
    return [
        ReportRow("F16", scores={"A": Score(80.0, 2.0), "B": Score(60.0)}, size_bytes=2 * 2**20,
                  bits_per_weight=16.0, ppl=10.0, kld_mean=0.0, top1_percent=100.0),
        ReportRow("Q4_K_M", scores={"A": Score(78.0, 1.0), "B": Score(58.0)}, ppl=10.5, kld_mean=0.02),
        ReportRow("Q8_0", scores={"A": Score(81.0), "B": Score(60.0)}),
    ]


def test_it_computes_average_and_accuracy_drop_against_the_baseline():
    report = build_report("SmolLM2", "F16", measured_rows())
    f16, q4, q8 = report.rows

    assert report.benchmarks == ["A", "B"]
    assert f16.average == 70.0 and f16.acc_drop_percent is None
    assert q4.average == 68.0
    assert q4.acc_drop_percent == pytest.approx(2.0 / 70.0 * 100)  # 2.857 %
    assert q8.average == 70.5 and q8.acc_drop_percent == 0.0  # above the baseline: no drop


def test_the_drop_matches_the_papers_figure_on_its_own_averages():
    # DeepSeek-R1, Q4_K_M vs FP8 (official API): weighted averages 85.24 vs 85.82 -> 0.68 %.
    assert round(acc_drop(85.24, 85.82), 2) == 0.68


def test_it_renders_markdown_csv_and_json():
    report = build_report("SmolLM2", "F16", measured_rows())

    md = report.to_markdown()
    assert "| Q4_K_M | measured | — | — | 10.500 | 0.0200 | — | 78.00 ± 1.00 | 58.00 | 68.00 | 2.86 |" in md
    assert "| F16 | measured | 2.0 | 16.00 | 10.000 | 0.0000 | 100.0 | 80.00 ± 2.00 | 60.00 | 70.00 | baseline |" in md

    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert rows[1]["variant"] == "Q4_K_M" and float(rows[1]["acc_drop_percent"]) == pytest.approx(2.857, abs=1e-3)
    assert rows[0]["A std"] == "2.0" and rows[0]["B std"] == ""

    data = json.loads(report.to_json())
    assert data["rows"][2]["acc_drop_percent"] == 0.0


@pytest.mark.skipif(not DEFAULT_PUBLISHED_PATH.exists(), reason="shared/reference/ is not beside the checkout")
def test_published_rows_are_loaded_and_labelled():
    published = published_rows("DeepSeek-R1")
    by_name = {r.variant: r for r in published}

    assert all(r.source == PUBLISHED_LABEL and r.published for r in published)
    assert by_name["Q4_K_M"].scores["AIME 2024"] == Score(75.43, 3.07)
    assert by_name["Q4_K_M"].scores["MMLU"] == Score(90.14, None)
    assert by_name["Q4_K_M"].acc_drop_percent == 0.68  # the paper's figure, not recomputed

    report = build_report("DeepSeek-R1", "F16", measured_rows()[:1] + published)
    md = report.to_markdown()
    assert f"| DQ3_K_M | {PUBLISHED_LABEL} |" in md
    assert "Published rows are the study's figures, not ours" in md
    assert by_name["DQ3_K_M"].acc_drop_percent == 0.34  # build_report left it alone
