"""GET /api/fit for a registered variant or a checkpoint × recipe that does not exist yet."""
from __future__ import annotations

import pytest

from quant import fit
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def r1():
    return factories.deepseek_checkpoint()


def test_it_fits_a_checkpoint_and_recipe_without_weights(anonymous, r1):
    factories.builtin_recipe("DQ3_K_M")
    response = anonymous.get("/api/fit", {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M",
                                          "hardware": "8xA100-40GB", "context": 32768})
    assert response.status_code == 200, response.json()
    body = response.json()
    expected = fit.fit(r1.config, fit.tensor_bytes(r1.config, "DQ3_K_M"), fit.HARDWARE["8xA100-40GB"], 32768)
    assert (body["total_bytes"], body["per_gpu_bytes"], body["fits"]) == (
        expected.total_bytes, expected.per_gpu_bytes, False)


def test_it_fits_a_registered_variant_by_id_with_its_recipe(anonymous, r1):
    v = factories.variant(r1, factories.builtin_recipe("Q4_K_M"))
    body = anonymous.get("/api/fit", {"variant": v.pk, "hardware": "8xH100-80GB", "kv_cache": "full",
                                      "cache_type": "q8_0", "context": 8192}).json()
    assert body["fits"] is True and body["recipe"] == "Q4_K_M" and body["kv_cache"] == "full"
    assert body["kv_bytes"] == 61 * 8192 * (24576 + 16384) * 34 // 32


def test_it_uses_a_stored_plan_when_the_variant_has_one(anonymous, r1):
    plan = {"tensors": [{"name": "token_embd.weight", "bytes": 10}, {"name": "blk.0.attn_norm.weight", "bytes": 7}]}
    v = factories.variant(r1, factories.recipe("custom"), plan=plan)
    body = anonymous.get("/api/fit", {"variant": v.pk, "hardware": "custom:2x24GB"}).json()
    assert body["weights_bytes"] == 17 and body["host_weights_bytes"] == 10
    assert body["gpus"][0]["weights_bytes"] == 7


def test_it_explains_bad_parameters(anonymous, r1):
    assert "give variant=" in anonymous.get("/api/fit").json()["error"]
    v = factories.variant(r1, factories.builtin_recipe("Q4_K_M"))
    bad_hw = anonymous.get("/api/fit", {"variant": v.pk, "hardware": "toaster"})
    assert bad_hw.status_code == 400 and "unknown hardware" in bad_hw.json()["error"]
    bad_ctx = anonymous.get("/api/fit", {"variant": v.pk, "context": "lots"})
    assert bad_ctx.status_code == 400 and "context" in bad_ctx.json()["error"]
    assert anonymous.get("/api/fit", {"variant": 999999}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_dsq_fit_asks_the_registry_for_a_registered_variant(live_server, capsys):
    import json

    from dsq import cli

    v = factories.variant(factories.deepseek_checkpoint(), factories.builtin_recipe("DQ3_K_M"))
    code = cli.main(["fit", "--variant", str(v.pk), "--registry", live_server.url, "--hardware", "8xH100-80GB",
                     "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["fits"] is True and out["recipe"] == "DQ3_K_M"
    assert cli.main(["fit", "--variant", "999999", "--registry", live_server.url, "--hardware", "8xH100-80GB"]) == 2
    assert "404" in capsys.readouterr().err
