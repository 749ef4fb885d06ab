"""Rate limits: past the rate, 429 with a JSON error and Retry-After; per client, per scope.

Rates come from DSQ_THROTTLE_ANON / _USER / _QUANTIZE (dsq/settings.py); here they are set low.
"""
from __future__ import annotations

import pytest

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
