"""The time plan of a queued quantization job, for its page: quant.estimate over the planner's tensor list.

Planned from the checkpoint's stored config.json and the job's recipe (no weights are read), for the
devices a quantization job runs on today, one per job: one GPU, and a CPU at the largest thread count
with measured rows. Disk rates are quant.estimate's stated defaults. A page must never fail because an
estimate cannot be made: any error becomes the reason shown instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from quant import estimate as quant_estimate
from quant import planner

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One device's estimate as the page shows it."""

    device: str
    estimate: quant_estimate.Estimate

    @property
    def stages(self) -> list[tuple[str, str, bool]]:
        """(stage, duration, whether it bounds the job) for read, codec and write."""
        bound = self.estimate.bound.name
        return [(s.name, quant_estimate.duration(s.seconds), s.name == bound) for s in self.estimate.stages]

    @property
    def summary(self) -> str:
        return self.estimate.summary()


@dataclass
class JobEstimate:
    """Estimates by device, or the reason there is none."""

    rows: list[Row] = field(default_factory=list)
    reason: str = ""
    imatrix: bool = False

    @property
    def disk(self) -> "quant_estimate.DiskNeeds | None":
        return self.rows[0].estimate.disk if self.rows else None

    @property
    def source_note(self) -> str:
        return self.rows[0].estimate.source_note if self.rows else ""

    def _gb(self, attr: str) -> str:
        return f"{getattr(self.disk, attr) / 1e9:,.1f} GB" if self.disk else ""

    @property
    def source_gb(self) -> str:
        return self._gb("source_bytes")

    @property
    def output_gb(self) -> str:
        return self._gb("output_bytes")

    @property
    def free_gb(self) -> str:
        return self._gb("free_bytes")

    @property
    def read_rate_gib(self) -> float:
        return quant_estimate.DEFAULT_READ_RATE / 2**30

    @property
    def write_rate_gib(self) -> float:
        return quant_estimate.DEFAULT_WRITE_RATE / 2**30


def for_job(job) -> JobEstimate:
    """The time plan of a quantization job, or JobEstimate(reason=…) when it cannot be made."""
    imatrix = bool(job.imatrix or job.imatrix_artifact_id)
    config = job.checkpoint.config
    if not config:
        return JobEstimate(reason="the checkpoint has no config.json stored", imatrix=imatrix)
    try:
        plan = planner.plan(config, job.recipe.parsed())
        read, note = quant_estimate.source_bytes(config, job.checkpoint.source_dtype)
        table = quant_estimate.ThroughputTable.load()
        hosts = [("one GPU", quant_estimate.Host(device="cuda"))]
        threads = table.cpu_threads()
        if threads:
            hosts.append((f"CPU, {threads[-1]} threads", quant_estimate.Host(device="cpu", threads=threads[-1])))
        rows = [Row(label, quant_estimate.estimate_plan(plan, read, host, table, source_note=note))
                for label, host in hosts]
    except Exception as exc:  # a display aid: whatever the stored config or recipe holds, the page still renders
        log.info("no estimate for quantization job %s: %s", job.pk, exc)
        return JobEstimate(reason=f"{type(exc).__name__}: {exc}", imatrix=imatrix)
    return JobEstimate(rows=rows, imatrix=imatrix)
