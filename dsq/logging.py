"""JSON-lines log records for web and workers, with the job, worker and host they concern.

A record names its job through `extra={"job_id": ...}`, `job_scope(job_id)`, or, inside a Celery job
task, `tag_celery_tasks()` (context variables, so each thread and task keeps its own). Secrets held
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
current_worker: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("dsq_current_worker", default=None)
# Celery tasks whose first argument is a job id (workers/tasks.py).
JOB_TASKS = ("dsq.quantize", "dsq.benchmark")
HOST = socket.gethostname()


@contextlib.contextmanager
def job_scope(job_id: int) -> Iterator[None]:
    """Every record logged inside carries `job_id`."""
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)


def _task_started(task_id=None, task=None, args=None, **_) -> None:
    # The name the job row records as its worker (workers.hosts.worker_name, in the pool process).
    current_worker.set(os.environ.get("DSQ_WORKER_NAME") or f"{HOST}:{os.getpid()}")
    current_job.set(args[0] if task is not None and task.name in JOB_TASKS and args else None)


def _task_finished(**_) -> None:
    current_job.set(None)


def tag_celery_tasks() -> None:
    """Make every line a job task logs carry its job id and worker (call once where the Celery app is made)."""
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_task_started, weak=False, dispatch_uid="dsq-logging-prerun")
    task_postrun.connect(_task_finished, weak=False, dispatch_uid="dsq-logging-postrun")


def secrets() -> list[str]:
    from django.conf import settings

    found = [settings.HF_TOKEN, settings.SECRET_KEY,
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
            "worker": getattr(record, "worker", None) or current_worker.get() or os.environ.get("DSQ_WORKER_NAME"),
            "host": HOST,
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        text = json.dumps(line, default=str)
        for secret in secrets():
            text = text.replace(secret, "[redacted]")
        return text
