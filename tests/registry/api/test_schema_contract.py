"""The OpenAPI schema is a contract: Schemathesis runs all its checks against the live API.

gunicorn serves the registry from the test database (rows committed: `transactional_db`),
filled the way the registry fills itself: bootstrap (recipes, catalogue checkpoints), a
quantization request, a variant with a file on disk, an approved release (tags v1 and latest)
and a channel. Schemathesis then runs every check it has (response schema, status codes,
content types, negative data rejection, ignored auth, use after free, …), once anonymously
and once with an approver's token, generating the same cases on every run (deterministic mode),
a fixed number of examples per operation, within a wall-time budget. The schema's own examples
(deepseek-r1:Q4_K_M@stable, deepseek-r1 × DQ3_K_M) name rows made here, so they reach real answers.
Any failure fails the test with Schemathesis' report.

    .venv/bin/pytest tests/registry/api/test_schema_contract.py   (or `make contract`)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection

from dsq import localservices
from registry.bootstrap import bootstrap
from registry.models import Checkpoint, Recipe, Release, Tag
from registry.quantizations import request_quantization
from tests import factories
from tests.conftest import point_celery_at
from dsq.localhub import HubServer
from tests.registry.personas import make_approver

# Per persona: examples per operation (generated deterministically: the same cases on every run) and the
# wall-time budget of the whole run.
MAX_EXAMPLES = 25
BUDGET_SECONDS = 240  # a cap for a loaded machine: a run takes about 90 s on 2 busy cores
# One worker: CPython 3.11.7's ast.parse is not thread-safe ("AST constructor recursion depth mismatch"),
# and Hypothesis parses lambdas' source while Schemathesis builds strategies in each worker thread.
ST_OPTIONS = ["--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic",
              "--workers", "1", "--request-timeout", "30", "--no-color", "--suppress-health-check", "all"]
CONFIG = Path(__file__).with_name("schemathesis.toml")
# Rates high enough that the run never meets a 429; the throttles themselves stay on.
UNTHROTTLED = {"DSQ_THROTTLE_ANON": "100000/minute", "DSQ_THROTTLE_USER": "100000/minute",
               "DSQ_THROTTLE_QUANTIZE": "100000/minute"}


def seed(storage) -> str:
    """A registry with one of everything the API shows; returns an approver's token."""
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    bootstrap()
    approver = make_approver("contract-approver")
    requester = User.objects.create_user("contract-requester")
    checkpoint = Checkpoint.objects.get(name="deepseek-r1")
    q4 = Recipe.objects.get(name="Q4_K_M", builtin=True)
    variant = factories.variant(checkpoint, q4, storage=storage, files={"deepseek-r1-Q4_K_M.gguf": b"GGUF" * 256})
    release = Release.request(variant, requester, notes="contract test")
    release.approve(approver)
    Tag.channel(checkpoint, "Q4_K_M", "stable").move(release, approver)
    request_quantization(checkpoint, Recipe.objects.get(name="DQ3_K_M", builtin=True), user=requester)
    return Token.objects.create(user=approver).key


@pytest.fixture
def live_registry(transactional_db, postgres_server, tmp_path):
    """Base URL of gunicorn serving the seeded test database; the approver's token.

    Job messages go to Celery's in-memory broker: no worker runs here, and the API answers the
    same whether a message was sent or left for the reaper.
    """
    storage = tmp_path / "storage"
    storage.mkdir()
    broker = point_celery_at("memory://")
    try:
        token = seed(storage)
    finally:
        point_celery_at(broker)
    database = connection.settings_dict["NAME"]
    with HubServer() as hub:
        env = {**os.environ, **UNTHROTTLED, "DJANGO_SETTINGS_MODULE": "dsq.settings",
               "DATABASE_URL": postgres_server.url(database), "CELERY_BROKER_URL": "memory://",
               "DSQ_STORAGE_ROOT": str(storage), "DSQ_IMPORT_ROOTS": str(storage), "HF_ENDPOINT": hub.url,
               "HF_HOME": str(tmp_path / "hf"), "DSQ_LOG_LEVEL": "ERROR"}
        with localservices.registry_server(env, workers=2) as base:
            yield base, token
    # The servers' throttle counts (thousands of requests from 127.0.0.1) are rows of the test database's
    # cache table, which a flush leaves alone: drop them, or the next test meets the anonymous rate at once.
    cache.clear()
    connection.close()


def schemathesis(base: str, workdir, *headers: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", f"{base}/api/schema/",
               *ST_OPTIONS]
    for header in headers:
        command += ["--header", header]
    return subprocess.run(command, capture_output=True, text=True, timeout=BUDGET_SECONDS,
                          cwd=workdir)


@pytest.mark.slow
@pytest.mark.parametrize("persona", ["anonymous", "approver"])
def test_the_live_api_keeps_to_its_schema(live_registry, persona, tmp_path):
    base, token = live_registry
    headers = [f"Authorization: Token {token}"] if persona == "approver" else []
    try:
        run = schemathesis(base, tmp_path, *headers)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"Schemathesis ran past its budget of {BUDGET_SECONDS}s:\n{(exc.stdout or b'').decode()[-20000:]}")
    report = run.stdout + run.stderr
    print(report)
    assert run.returncode == 0, report[-20000:]
