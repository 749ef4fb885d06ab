"""HF_TOKEN reaches the Hub's Authorization header and nowhere else: not the database, logs, card or API.

Publishing goes through the Celery task body (workers.tasks.publish) against the Hub stand-in
(dsq/localhub.py) with the real huggingface_hub client. The narrower check of the publisher
alone is tests/workers/test_publish.py::test_the_token_never_reaches_logs_card_or_database.
"""
from __future__ import annotations

import logging
import traceback

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from tests.workers.conftest import HUB_TOKEN, hub, make_release  # noqa: F401 (fixtures)
from workers import tasks

pytestmark = pytest.mark.django_db
REPO = "dsq-test/deepseek-r1-GGUF"


def database_text() -> str:
    """Every row of every table, as PostgreSQL prints it."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT CAST(t AS text) FROM "{table}" AS t')
            chunks += [row[0] for row in cursor.fetchall()]
    return "\n".join(chunks)


@pytest.fixture
def published(hub, make_release, caplog):
    caplog.set_level(logging.DEBUG)  # everything: huggingface_hub, httpx, urllib3, celery, ours
    release = make_release()
    hub.fail("POST", "/commit/", times=1, status=503)  # a retry path too: its warning is logged
    tasks.publish(release.pk)
    release.refresh_from_db()
    assert release.state == "published" and hub.repos[REPO].tags["DQ3_K_M-v1"] == release.hub_commit
    return release


def test_the_hub_saw_the_token_so_the_searches_below_mean_something(hub, published):
    assert any(h.get("authorization") == f"Bearer {HUB_TOKEN}" for _, _, h in hub.requests)


def test_the_token_is_in_no_table(published):
    text = database_text()
    assert published.hub_commit in text  # the dump does contain the publish's rows
    assert HUB_TOKEN not in text and HUB_TOKEN[8:] not in text


def test_the_token_is_in_no_log_record(published, caplog):
    records = caplog.get_records("setup")  # the publish ran in the fixture
    assert any("published to" in r.getMessage() for r in records)
    assert any("transient Hub error" in r.getMessage() or "retry" in r.getMessage() for r in records)
    for record in records:
        assert HUB_TOKEN not in record.getMessage() and HUB_TOKEN not in str(record.args)


def test_the_token_is_not_in_the_model_card(hub, published):
    card = hub.file_bytes(REPO, "main", "README.md").decode()
    assert "## DQ3_K_M" in card and HUB_TOKEN not in card


def test_a_failed_publish_does_not_leak_it_in_the_error_or_traceback(hub, make_release, caplog):
    caplog.set_level(logging.DEBUG)
    release = make_release()
    hub.fail("POST", "/commit/", times=99, status=400)
    with pytest.raises(Exception) as info:
        tasks.publish(release.pk)
    text = "".join(traceback.format_exception(info.value)) + repr(info.value.__dict__)
    assert "400" in text and HUB_TOKEN not in text and HUB_TOKEN not in caplog.text
    assert HUB_TOKEN not in database_text()


def test_no_api_response_or_admin_page_echoes_it(published, admin):
    """Every documented GET as an admin, plus the schema, docs, dashboard and admin pages."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    ids = {"id": str(published.pk), "name": published.variant.checkpoint.name}
    seen = 0
    for path, item in schema["paths"].items():
        if "get" in item:
            url = path.replace("{id}", ids["id"]).replace("{name}", ids["name"])
            response = admin.get(url)
            assert response.status_code < 500, url
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert HUB_TOKEN.encode() not in body, url
            seen += 1
    assert seen >= 10
    browser = Client()
    browser.force_login(User.objects.get(username="root"))
    for url in ["/api/schema/", "/api/docs/", "/", "/admin/", "/admin/registry/release/",
                f"/admin/registry/release/{published.pk}/review/", "/admin/registry/auditlog/",
                "/admin/auth/user/", "/admin/authtoken/tokenproxy/"]:
        response = browser.get(url)
        assert response.status_code == 200, url
        assert HUB_TOKEN.encode() not in response.content, url


def test_the_operating_endpoints_do_not_echo_it(published, settings, tmp_path):
    """/metrics, /readyz (healthy, and failing with the token as the broker's password), /fleet/."""
    from dsq.localservices import free_port

    settings.DSQ_STORAGE_ROOT = tmp_path
    anonymous = Client()
    for url in ["/healthz", "/readyz", "/metrics", "/fleet/"]:
        response = anonymous.get(url)
        assert response.status_code in (200, 503) and HUB_TOKEN.encode() not in response.content, url
    settings.CELERY_BROKER_URL = f"redis://:{HUB_TOKEN}@127.0.0.1:{free_port()}/0"
    response = anonymous.get("/readyz")
    assert response.status_code == 503 and not response.json()["checks"]["broker"]["ok"]
    assert HUB_TOKEN.encode() not in response.content and HUB_TOKEN[8:].encode() not in response.content
    assert HUB_TOKEN.encode() not in anonymous.get("/metrics").content


def test_the_json_log_lines_do_not_carry_it(published, caplog):
    from dsq.logging import JSONFormatter

    records = caplog.get_records("setup")
    lines = [JSONFormatter().format(r) for r in records]
    assert any("published to" in line for line in lines)
    assert not any(HUB_TOKEN in line for line in lines)
    leaked = logging.LogRecord("x", logging.ERROR, __file__, 1, "token was %s", (HUB_TOKEN,), None)
    assert HUB_TOKEN not in JSONFormatter().format(leaked)  # even when code logs it outright
