"""JSON log lines: one object per line with job id, worker and host; secrets replaced."""
from __future__ import annotations

import json
import logging
import socket
import threading

from dsq.logging import JSONFormatter, job_scope


def line(message: str = "step %s", *args, **extra) -> dict:
    record = logging.LogRecord("dsq.test", logging.INFO, __file__, 1, message, args or ("one",), None)
    record.__dict__.update(extra)
    text = JSONFormatter().format(record)
    assert "\n" not in text
    return json.loads(text)


def test_a_line_names_the_job_worker_and_host(monkeypatch):
    monkeypatch.setenv("DSQ_WORKER_NAME", "gpu@node1")
    out = line(job_id=42)
    assert out["message"] == "step one" and out["level"] == "INFO" and out["logger"] == "dsq.test"
    assert out["job_id"] == 42 and out["worker"] == "gpu@node1" and out["host"] == socket.gethostname()


def test_a_job_scope_tags_every_line_inside_it_in_its_own_thread_only():
    seen = {}
    with job_scope(7):
        seen["inside"] = line()["job_id"]
        thread = threading.Thread(target=lambda: seen.update(other=line()["job_id"]))
        thread.start()
        thread.join()
    assert seen == {"inside": 7, "other": None} and line()["job_id"] is None


def test_tracebacks_are_kept_and_secrets_replaced(settings):
    settings.HF_TOKEN = "hf_secret_value_123456"
    try:
        raise RuntimeError(f"boom with {settings.HF_TOKEN}")
    except RuntimeError:
        import sys

        record = logging.LogRecord("dsq.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = JSONFormatter().format(record)
    assert "RuntimeError: boom with [redacted]" in json.loads(text)["exc"] and "hf_secret_value" not in text


def test_json_is_chosen_by_dsq_log_format():
    import subprocess
    import sys

    code = ("import django; django.setup(); import logging; "
            "logging.getLogger('dsq.x').warning('hello', extra={'job_id': 3})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "DSQ_LOG_FORMAT": "json",
                                 "DJANGO_SETTINGS_MODULE": "dsq.settings"})
    out = json.loads(result.stderr.strip().splitlines()[-1])
    assert out["message"] == "hello" and out["job_id"] == 3 and out["level"] == "WARNING"


def test_a_celery_job_task_tags_its_lines_with_the_job_and_the_worker(monkeypatch):
    from celery import Celery

    from dsq.logging import tag_celery_tasks

    monkeypatch.setenv("DSQ_WORKER_NAME", "gpu@node1")
    app = Celery("dsq-test", set_as_current=False)
    app.conf.task_always_eager = True
    seen = []

    @app.task(name="dsq.quantize")
    def quantize(job_id: int) -> None:
        seen.append(line())

    @app.task(name="dsq.reap_expired")
    def reap() -> None:
        seen.append(line())

    tag_celery_tasks()
    quantize.delay(42)
    reap.delay()
    assert [(s["job_id"], s["worker"]) for s in seen] == [(42, "gpu@node1"), (None, "gpu@node1")]
    assert line()["job_id"] is None  # not after the task
