"""/healthz and /readyz against the real throwaway PostgreSQL and Redis, each stopped by a test."""
from __future__ import annotations

import contextlib

import pytest
from django.db import connection

from dsq import localservices

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def services(settings, redis_server, tmp_path):
    """Broker and storage pointed at the throwaway Redis and a fresh directory."""
    settings.CELERY_BROKER_URL = redis_server.url
    settings.DSQ_STORAGE_ROOT = tmp_path
    return settings


@contextlib.contextmanager
def postgres_stopped(server):
    server.ctl("-m", "fast", "-w", "stop")
    connection.close()
    try:
        yield
    finally:
        server.ctl("-w", "restart")  # restart reuses the options the server was started with
        connection.close()


def test_it_is_alive_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_it_is_ready_when_every_service_answers(client, services):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and set(body["checks"]) == {"database", "broker", "storage"}
    assert all(check["ok"] for check in body["checks"].values())


def test_it_is_not_ready_while_postgres_is_down(client, services, postgres_server):
    with postgres_stopped(postgres_server):
        response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503 and body["status"] == "unavailable"
    assert not body["checks"]["database"]["ok"] and "OperationalError" in body["checks"]["database"]["detail"]
    assert body["checks"]["broker"]["ok"] and body["checks"]["storage"]["ok"]
    assert client.get("/readyz").status_code == 200  # and ready again once it is back


def test_it_is_not_ready_while_redis_is_down(client, settings, tmp_path):
    settings.DSQ_STORAGE_ROOT = tmp_path
    with localservices.redis_server() as redis:
        settings.CELERY_BROKER_URL = redis.url
        assert client.get("/readyz").status_code == 200
        redis.process.terminate()
        redis.process.wait(10)
        response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503 and not body["checks"]["broker"]["ok"]
    assert "ConnectionError" in body["checks"]["broker"]["detail"]
    assert body["checks"]["database"]["ok"]


def test_it_is_not_ready_with_a_migration_unapplied(client, services):
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, app, name, applied FROM django_migrations WHERE app = 'registry' "
                       "ORDER BY name DESC LIMIT 1")
        row = cursor.fetchone()
        cursor.execute("DELETE FROM django_migrations WHERE id = %s", [row[0]])
    try:
        response = client.get("/readyz")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO django_migrations (id, app, name, applied) VALUES (%s, %s, %s, %s)", row)
    database = response.json()["checks"]["database"]
    assert response.status_code == 503 and not database["ok"]
    assert f"registry.{row[2]}" in database["detail"]


def test_it_is_not_ready_when_storage_is_not_a_writable_directory(client, services, tmp_path):
    services.DSQ_STORAGE_ROOT = tmp_path / "a-file"
    services.DSQ_STORAGE_ROOT.write_text("")
    response = client.get("/readyz")
    assert response.status_code == 503 and not response.json()["checks"]["storage"]["ok"]
