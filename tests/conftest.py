"""Shared fixtures: a throwaway PostgreSQL for every database test, a throwaway Redis for queue tests.

If a service cannot start the run fails with the reason; nothing is silently skipped.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dsq import localservices

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres_server():
    try:
        with localservices.postgres_server() as server:
            yield server
    except localservices.ServiceError as exc:
        pytest.fail(f"PostgreSQL is required for the registry tests: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(postgres_server):
    """Point Django's default database at the throwaway cluster before the test database is created."""
    from django.conf import settings
    from django.db import connections

    settings.DATABASES["default"].update(
        ENGINE="django.db.backends.postgresql", NAME="dsq", USER="postgres", PASSWORD="",
        HOST="127.0.0.1", PORT=str(postgres_server.port), OPTIONS={}, CONN_HEALTH_CHECKS=True,
    )
    # A wrapper made earlier (for the SQLite default) would keep its engine: drop it.
    connections["default"].close()
    del connections["default"]


@pytest.fixture(scope="session")
def llama_tools() -> Path:
    """Directory with llama.cpp's tools built from the vendored source: llama-perplexity, llama-imatrix,
    llama-quantize, llama-server, llama-gguf-split, llama-fit-params (built once, tens of minutes)."""
    out = subprocess.run([str(REPO / "scripts" / "build-llama-tools.sh")], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def storage(settings, tmp_path):
    """An empty DSQ_STORAGE_ROOT for this test."""
    settings.DSQ_STORAGE_ROOT = tmp_path / "storage"
    settings.DSQ_STORAGE_ROOT.mkdir()
    return settings.DSQ_STORAGE_ROOT


@pytest.fixture(scope="session")
def redis_server():
    try:
        with localservices.redis_server() as server:
            yield server
    except localservices.ServiceError as exc:
        pytest.fail(f"Redis is required for the queue tests: {exc}", pytrace=False)


def point_celery_at(url: str) -> str:
    """Send this process's Celery messages to `url`; returns the previous broker URL.

    Dropping the app's connection pool is not enough: the producer pool is cached on app.amqp
    and keeps the old connection (and a refused one stays refused).
    """
    from dsq.celery import app

    previous = app.conf.broker_url
    app.close()
    app.amqp._producer_pool = None
    app.conf.broker_url = url
    return previous


@pytest.fixture
def celery_broker(redis_server):
    """Point the Celery app (the producer side) at the throwaway Redis; yields a redis client."""
    import redis

    original = point_celery_at(redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    try:
        yield client
    finally:
        point_celery_at(original)


@pytest.fixture
def broker(settings, celery_broker, redis_server):
    """celery_broker, with the settings pointed at it too: where workers advertise their hosts and what
    /readyz, /metrics and the fleet page read."""
    settings.CELERY_BROKER_URL = redis_server.url
    return celery_broker
