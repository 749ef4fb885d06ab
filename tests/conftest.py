"""Shared fixtures: a throwaway PostgreSQL for every database test, a throwaway Redis for queue tests.

If a service cannot start the run fails with the reason; nothing is silently skipped.
"""
from __future__ import annotations

import pytest

from dsq import localservices


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
def redis_server():
    try:
        with localservices.redis_server() as server:
            yield server
    except localservices.ServiceError as exc:
        pytest.fail(f"Redis is required for the queue tests: {exc}", pytrace=False)


@pytest.fixture
def celery_broker(redis_server):
    """Point the Celery app (the producer side) at the throwaway Redis; yields a redis client."""
    import redis

    from workers.celery_app import app

    original = app.conf.broker_url
    app.close()  # drop pooled connections to the default broker
    app.conf.broker_url = redis_server.url
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    try:
        yield client
    finally:
        app.close()
        app.conf.broker_url = original
