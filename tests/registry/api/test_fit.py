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
    v = factories.variant(r1, factories.recipe("custom"), plan=factories.plan_of_conversion(
        [("token_embd.weight", (5,), "F16", 10), ("blk.0.attn_norm.weight", (7,), "I8", 7)]))
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


@pytest.mark.parametrize("params,named", [
    ({"hardware": "custom:100000x80GB"}, "GPUs"),
    ({"hardware": "custom:65x80GB"}, "GPUs"),
    ({"hardware": "custom:0x80GB"}, "GPUs"),
    ({"hardware": "custom:8x0GB"}, "memory"),
    ({"hardware": "custom:8x999999999GB"}, "memory"),
    ({"hardware": "custom:" + "9" * 5000 + "x80GB"}, "unknown hardware"),
    ({"context": "100000000000000000000000000"}, "context"),
    ({"context": str(fit.MAX_CONTEXT + 1)}, "context"),
    ({"context": "0"}, "context"),
    ({"context": "1e26"}, "context"),
    ({"ubatch": "0"}, "ubatch"),
    ({"ubatch": "-5"}, "ubatch"),
    ({"ubatch": "8193", "context": "8192"}, "ubatch"),
    ({"cache_type": "q1_0"}, "cache_type"),
    ({"kv_cache": "huge"}, "kv_cache"),
    ({"flash_attn": "maybe"}, "flash_attn"),
])
def test_it_refuses_size_like_parameters_out_of_their_range(anonymous, r1, params, named):
    """GET /api/fit is anonymous: a huge GPU count once cost seconds and a gigabyte per request."""
    factories.builtin_recipe("DQ3_K_M")
    response = anonymous.get("/api/fit", {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M", **params})
    assert response.status_code == 400 and response["Content-Type"] == "application/json", response.content[:200]
    assert named in response.json()["error"] and len(response.json()["error"]) < 400


def test_it_answers_at_the_bounds(anonymous, r1):
    factories.builtin_recipe("DQ3_K_M")
    body = anonymous.get("/api/fit", {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M", "context": fit.MAX_CONTEXT,
                                      "ubatch": fit.MAX_CONTEXT, "hardware": f"custom:{fit.MAX_GPUS}x4096GB"}).json()
    assert body["context"] == fit.MAX_CONTEXT and len(body["gpus"]) == fit.MAX_GPUS
    short = anonymous.get("/api/fit", {"checkpoint": "deepseek-r1", "recipe": "DQ3_K_M", "context": 100})
    assert short.status_code == 200  # the default ubatch (512) shrinks to a shorter context, as in llama.cpp


@pytest.mark.parametrize("change", [{"num_hidden_layers": -4}, {"num_hidden_layers": 0},
                                    {"num_hidden_layers": 20000}, {"num_attention_heads": "128"}])
def test_a_checkpoint_with_a_bad_config_is_refused_at_registration(requester, change):
    from quant import configs

    body = {"name": "bad", "family": "x", "config": configs.load_config("DeepSeek-R1") | change}
    response = requester.post("/api/checkpoints/", body, format="json")
    assert response.status_code == 400 and next(iter(change)) in response.json()["error"]


@pytest.mark.parametrize("change", [{"num_hidden_layers": -4}, {"num_hidden_layers": 0}, {"vocab_size": None}])
def test_a_config_stored_before_configs_were_checked_is_a_400_not_a_crash(anonymous, change):
    """Rows registered by older code keep their config: fit names the problem instead of failing."""
    from quant import configs

    ckpt = factories.checkpoint("legacy", config=configs.load_config("DeepSeek-R1") | change)
    factories.builtin_recipe("DQ3_K_M")
    v = factories.variant(ckpt, factories.recipe("Q4_K_M"), total_bytes=10 << 30)
    for params in ({"checkpoint": "legacy", "recipe": "DQ3_K_M"}, {"variant": v.pk}):
        response = anonymous.get("/api/fit", params)
        assert response.status_code == 400, response.content[:300]
        assert "legacy" in response.json()["error"] and next(iter(change)) in response.json()["error"]
