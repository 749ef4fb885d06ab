"""JSON-lines log records for web and workers, with the job, worker and host they concern.

A record names its job through `extra={"job_id": ...}` or, for everything logged while a job runs,
through `job_scope(job_id)` (a context variable, so each thread and task keeps its own). Secrets held
by the settings are replaced before a line is written, whatever code logged them.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import socket
from typing import Iterator, Optional

current_job: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar("dsq_current_job", default=None)
HOST = socket.gethostname()


@contextlib.contextmanager
def job_scope(job_id: int) -> Iterator[None]:
    """Every record logged inside carries `job_id`."""
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)


def secrets() -> list[str]:
    from django.conf import settings

    found = [getattr(settings, "HF_TOKEN", ""), getattr(settings, "SECRET_KEY", ""),
             settings.DATABASES.get("default", {}).get("PASSWORD", "")]
    return [s for s in found if s and len(s) >= 4]


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_id, worker, host (and exc)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", None) or current_job.get(),
            "worker": getattr(record, "worker", None) or os.environ.get("DSQ_WORKER_NAME") or None,
            "host": HOST,
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        text = json.dumps(line, default=str)
        for secret in secrets():
            text = text.replace(secret, "[redacted]")
        return text
