"""The performance-drop report: variants × benchmarks, with quality figures, as JSON, CSV, Markdown.

Average is the plain mean of a row's benchmark scores. Acc. drop is the paper's definition
applied to that average: the relative drop against the baseline row,
    max(0, (baseline average − average) / baseline average) × 100 %,
so a variant at or above the baseline shows 0. The paper computes its drop on a
"weighted average" whose weights it does not publish; published rows therefore carry the
paper's own Average and Acc. drop, labelled as published figures, and are never
recomputed.
"""
from __future__ import annotations

import csv
import io
import json
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
# CI keeps the shared reference folder beside the checkout.
DEFAULT_PUBLISHED_PATH = REPO_ROOT.parent / "shared" / "reference" / "paper-results.json"
PUBLISHED_LABEL = "published (Zhao et al. 2025, arXiv 2505.02390)"


@dataclass(frozen=True)
class Score:
    mean: float
    std: Optional[float] = None  # None: a single run


@dataclass
class ReportRow:
    variant: str
    source: str = "measured"
    scores: dict[str, Score] = field(default_factory=dict)  # benchmark -> score, percent
    size_bytes: Optional[int] = None
    bits_per_weight: Optional[float] = None
    ppl: Optional[float] = None
    kld_mean: Optional[float] = None
    top1_percent: Optional[float] = None
    average: Optional[float] = None  # filled by build_report for measured rows
    acc_drop_percent: Optional[float] = None  # None for the baseline row

    @property
    def published(self) -> bool:
        return self.source != "measured"


@dataclass
class Report:
    checkpoint: str
    baseline: str
    benchmarks: list[str]
    rows: list[ReportRow]

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "baseline": self.baseline, "benchmarks": self.benchmarks,
                "acc_drop_definition": "max(0, (baseline average - average) / baseline average) * 100",
                "rows": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        header = ["variant", "source", "size_bytes", "bits_per_weight", "ppl", "kld_mean", "top1_percent"]
        for b in self.benchmarks:
            header += [f"{b} mean", f"{b} std"]
        writer.writerow(header + ["average", "acc_drop_percent"])
        for r in self.rows:
            line = [r.variant, r.source, r.size_bytes, r.bits_per_weight, r.ppl, r.kld_mean, r.top1_percent]
            for b in self.benchmarks:
                s = r.scores.get(b)
                line += [s.mean if s else None, s.std if s else None]
            writer.writerow(["" if v is None else v for v in line + [r.average, r.acc_drop_percent]])
        return out.getvalue()

    def to_markdown(self) -> str:
        quality = any(r.size_bytes or r.ppl for r in self.rows)
        header = ["Variant", "Source"]
        if quality:
            header += ["Size (MiB)", "BPW", "PPL", "KLD", "Top-1 %"]
        header += self.benchmarks + ["Average", "Acc. drop %"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in self.rows:
            cells = [r.variant, r.source]
            if quality:
                cells += [_fmt(r.size_bytes / 2**20 if r.size_bytes else None, 1), _fmt(r.bits_per_weight, 2),
                          _fmt(r.ppl, 3), _fmt(r.kld_mean, 4), _fmt(r.top1_percent, 1)]
            cells += [_fmt_score(r.scores.get(b)) for b in self.benchmarks]
            is_baseline = (r.variant == self.baseline and not r.published) or (
                r.published and r.acc_drop_percent is None and r.average is not None)
            drop = "baseline" if is_baseline else _fmt(r.acc_drop_percent, 2)
            cells += [_fmt(r.average, 2), drop]
            lines.append("| " + " | ".join(cells) + " |")
        if any(r.published for r in self.rows):
            lines += ["", "Published rows are the study's figures, not ours: its Average, and its Acc. drop "
                      "computed on a weighted average whose weights it does not state."]
        return "\n".join(lines) + "\n"


def _fmt(value: Optional[float], digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _fmt_score(score: Optional[Score]) -> str:
    if score is None:
        return "—"
    return f"{score.mean:.2f}" if score.std is None else f"{score.mean:.2f} ± {score.std:.2f}"


def acc_drop(average: float, baseline_average: float) -> float:
    """The paper's Acc. drop in percent: relative drop below the baseline, 0 at or above it."""
    return max(0.0, (baseline_average - average) / baseline_average * 100.0)


def build_report(checkpoint: str, baseline: str, rows: list[ReportRow],
                 benchmarks: Optional[list[str]] = None) -> Report:
    """Fill Average and Acc. drop of the measured rows; published rows keep the paper's figures."""
    if benchmarks is None:
        benchmarks = []
        for r in rows:
            benchmarks += [b for b in r.scores if b not in benchmarks]
    measured = [r for r in rows if not r.published]
    for r in measured:
        present = [r.scores[b].mean for b in benchmarks if b in r.scores]
        r.average = statistics.fmean(present) if present else None
    base = next((r for r in measured if r.variant == baseline), None)
    if base is None:
        raise ValueError(f"baseline {baseline!r} is not among the measured rows")
    for r in measured:
        if r is not base and r.average is not None and base.average is not None:
            r.acc_drop_percent = acc_drop(r.average, base.average)
    return Report(checkpoint=checkpoint, baseline=baseline, benchmarks=benchmarks, rows=rows)


def published_path() -> Path:
    return Path(os.environ.get("DSQ_PAPER_RESULTS", DEFAULT_PUBLISHED_PATH))


def published_tables(path: "str | Path | None" = None) -> dict:
    """The study's tables by checkpoint ({} where the published figures are not on this machine)."""
    source = Path(path or published_path())
    return json.loads(source.read_text())["tables"] if source.is_file() else {}


def published_rows(checkpoint: str, path: "str | Path | None" = None) -> list[ReportRow]:
    """The study's rows for a checkpoint ("DeepSeek-R1", …), labelled as published figures.

    Average is the paper's plain average; Acc. drop is the paper's own (on its weighted average).
    """
    data = json.loads(Path(path or published_path()).read_text())
    table = data["tables"][checkpoint]
    rows = []
    for variant, scores in table["scores"].items():
        summary = table.get("summary", {}).get(variant, {})
        rows.append(ReportRow(
            variant=variant, source=PUBLISHED_LABEL,
            scores={b: Score(s["mean"], s.get("std")) for b, s in scores.items()},
            average=summary.get("average"),
            acc_drop_percent=summary.get("accuracy_drop_percent")))
    return rows


def published_benchmarks(path: "str | Path | None" = None) -> list[str]:
    return json.loads(Path(path or published_path()).read_text())["benchmarks"]
