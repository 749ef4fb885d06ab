"""Liveness and readiness for load balancers and compose healthchecks.

`/healthz` says the process answers (no I/O, so a slow database never gets a live web process
restarted); `/readyz` says it can do useful work: the database answers and every migration is
applied, the broker (Redis at CELERY_BROKER_URL) answers, and the storage root is writable.
Each check reports its own result so the person on call sees which one failed.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.views.decorators.http import require_GET

# Seconds a readiness probe waits on Redis before calling it unreachable.
BROKER_TIMEOUT = 2.0


def redact(text: str) -> str:
    """Drop every secret the settings hold from a message shown to an unauthenticated caller."""
    secrets = [settings.SECRET_KEY, settings.HF_TOKEN, settings.DATABASES["default"].get("PASSWORD", ""),
               settings.CELERY_BROKER_URL]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def check_database() -> str:
    """The default database answers a query and has no unapplied migration."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception:
        connection.close()  # a dead connection must not be reused by the next request
        raise
    if plan:
        raise RuntimeError(f"{len(plan)} migration(s) not applied, first {plan[0][0].app_label}.{plan[0][0].name}")
    return "ok"


def check_broker() -> str:
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=BROKER_TIMEOUT,
                                  socket_timeout=BROKER_TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def check_storage() -> str:
    """A file can be created (and removed) under the storage root."""
    root = Path(settings.DSQ_STORAGE_ROOT)
    with tempfile.NamedTemporaryFile(dir=root, prefix=".readyz-"):
        pass
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {"database": check_database, "broker": check_broker, "storage": check_storage}


def readiness() -> tuple[bool, dict[str, dict]]:
    """(all passed, each check's {"ok": bool, "detail": str})."""
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = {"ok": True, "detail": check()}
        except Exception as exc:  # any failure means not ready; say which and why
            results[name] = {"ok": False, "detail": redact(f"{type(exc).__name__}: {exc}")[:300]}
    return all(r["ok"] for r in results.values()), results


@require_GET
def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request) -> JsonResponse:
    ready, checks = readiness()
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
