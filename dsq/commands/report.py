"""dsq report: the performance-drop table (variants × benchmarks), with the study's published rows."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

help = "Render the performance-drop report from measured rows (JSON) and/or the study's published rows."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help='e.g. "DeepSeek-R1" (a table of the published results)')
    parser.add_argument("--rows", type=Path, help="JSON list of measured rows (fields of quant.eval.report.ReportRow)")
    parser.add_argument("--baseline", help="the measured row to compute Acc. drop against")
    parser.add_argument("--published", action="store_true", help="add the study's published rows")
    parser.add_argument("--published-path", type=Path, default=None,
                        help="paper-results.json (default: ../shared/reference/ beside the checkout, or $DSQ_PAPER_RESULTS)")
    parser.add_argument("--format", choices=["markdown", "csv", "json"], default="markdown")


def run(args: argparse.Namespace) -> int:
    from quant.eval.report import Report, ReportRow, Score, build_report, published_benchmarks, published_rows

    rows = []
    if args.rows:
        for entry in json.loads(args.rows.read_text()):
            scores = {b: Score(**s) for b, s in entry.pop("scores", {}).items()}
            rows.append(ReportRow(scores=scores, **entry))
    benchmarks = published_benchmarks(args.published_path) if args.published else None
    if args.published:
        rows += published_rows(args.checkpoint, args.published_path)
    if args.baseline:
        report = build_report(args.checkpoint, args.baseline, rows, benchmarks)
    else:
        report = Report(args.checkpoint, baseline="", benchmarks=benchmarks or [], rows=rows)
    print({"markdown": report.to_markdown, "csv": report.to_csv, "json": report.to_json}[args.format](), end="")
    return 0
