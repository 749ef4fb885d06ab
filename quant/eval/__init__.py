"""Evaluation of quantized GGUF variants: perplexity, KL divergence, task suites, reports.

A pure library (no Django) so that a Celery task, the `dsq` command line and the
`bench_quality` script all call the same code. Long-running entry points take a
quant.progress.Reporter (progress reports and a cancel check).
"""
