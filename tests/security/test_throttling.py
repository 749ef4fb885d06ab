"""Rate limits: past the rate, 429 with a JSON error and Retry-After; per client, per scope.

Rates come from DSQ_THROTTLE_ANON / _USER / _QUANTIZE (dsq/settings.py); here they are set low.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from dsq.localservices import free_port, wait_for_port
from dsq.processes import ROOT
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(**rates):
        settings.REST_FRAMEWORK = dict(settings.REST_FRAMEWORK,
                                       DEFAULT_THROTTLE_RATES=dict(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
                                                                   **rates))
    return set_rates


def test_anonymous_clients_past_the_rate_get_429_json_with_retry_after(anonymous, released, rates):
    rates(anon="3/minute")
    url = "/api/pull/deepseek-r1:DQ3_K_M@v1"
    assert [anonymous.get(url).status_code for _ in range(3)] == [200, 200, 200]
    refused = anonymous.get(url)
    assert refused.status_code == 429 and refused["Content-Type"] == "application/json"
    assert refused.json()["status"] == 429 and "throttled" in refused.json()["error"].lower()
    assert 0 < int(refused["Retry-After"]) <= 60


def test_a_token_holder_has_their_own_budget(anonymous, teammate, released, rates):
    rates(anon="1/minute", user="2/minute")
    assert anonymous.get("/api/variants/").status_code == 200
    assert anonymous.get("/api/variants/").status_code == 429
    assert [teammate.get("/api/variants/").status_code for _ in range(3)] == [200, 200, 429]


def test_quantization_requests_have_a_stricter_scope(requester, rates, celery_broker):
    rates(user="100/minute", quantize="2/minute")
    ckpt = factories.checkpoint("deepseek-r1")
    recipes = [factories.recipe(f"Q{i}_K") for i in range(3)]
    codes = [requester.post("/api/quantizations/", {"checkpoint": ckpt.name, "recipe": r.name},
                            format="json").status_code for r in recipes]
    assert codes == [201, 201, 429]
    assert requester.get("/api/jobs/quantize/").status_code == 200  # reads are not in that scope
    assert requester.get("/api/jobs/quantize/").json()["count"] == 2


def test_the_default_rates_leave_room_for_normal_use(anonymous, released):
    """100 pulls in a row (a big sharded download plus retries) stay under the default anonymous rate."""
    codes = {anonymous.get("/api/pull/deepseek-r1:DQ3_K_M@v1").status_code for _ in range(100)}
    assert codes == {200}


def test_a_bad_rate_in_the_environment_stops_the_process(monkeypatch):
    from dsq.settings import env_rate

    monkeypatch.setenv("DSQ_THROTTLE_ANON", "lots")
    with pytest.raises(ValueError, match="DSQ_THROTTLE_ANON"):
        env_rate("DSQ_THROTTLE_ANON", "600/minute")
    monkeypatch.setenv("DSQ_THROTTLE_ANON", "off")
    assert env_rate("DSQ_THROTTLE_ANON", "600/minute") is None


# -- one count for every server process ---------------------------------------------------------------


def _serve(port: int, env: dict, log) -> "subprocess.Popen":
    """One gunicorn server with one worker: two of them stand for two workers behind one socket."""
    return subprocess.Popen([sys.executable, "-m", "gunicorn", "dsq.wsgi", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("cache", ["database", "redis"])
def test_two_server_processes_share_one_count(cache, tmp_path, request):
    """Requests alternate between two processes; the rate holds for both together, not per process.

    With a cache per process (the old LocMemCache default) the 4th request was refused only at the 9th.
    """
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'dsq.sqlite3'}", "DSQ_THROTTLE_ANON": "4/minute",
           "DSQ_STORAGE_ROOT": str(tmp_path / "storage"), "DJANGO_SETTINGS_MODULE": "dsq.settings",
           "PYTHONPATH": str(ROOT)}
    env.pop("DSQ_CACHE_URL", None)
    if cache == "redis":
        env["DSQ_CACHE_URL"] = request.getfixturevalue("redis_server").url.replace("/0", "/3")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    ports = [free_port(), free_port()]
    with open(tmp_path / "gunicorn.log", "ab") as log:
        servers = [_serve(port, env, log) for port in ports]
        try:
            for port, server in zip(ports, servers):
                wait_for_port(port, 60, server, "gunicorn")
            codes = [_status(f"http://127.0.0.1:{ports[i % 2]}/api/recipes/") for i in range(8)]
        finally:
            for server in servers:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(30)
    assert codes == [200] * 4 + [429] * 4, (tmp_path / "gunicorn.log").read_text()[-3000:]
