"""Checkpoints: the catalogue, registration with config validation, the drop comparison."""
from __future__ import annotations

import json

import pytest

from quant import configs
from registry.bootstrap import bootstrap
from registry.models import Checkpoint, Recipe
from tests import factories

pytestmark = pytest.mark.django_db


def test_bootstrap_registers_the_catalogue_and_recipes_once():
    first = bootstrap()
    assert "deepseek-r1" in first["checkpoints"] and "approvers" in first["groups"]
    assert bootstrap() == {"groups": [], "recipes": [], "checkpoints": []}
    r1 = Checkpoint.objects.get(name="deepseek-r1")
    assert r1.architecture == "deepseek2" and r1.source_dtype == "FP8"
    assert 671_000_000_000 < r1.parameter_count < 672_000_000_000  # the GGUF's count, without the MTP layer
    assert Checkpoint.objects.get(name="r1-distill-qwen-7b").architecture == "qwen2"
    assert Recipe.objects.filter(name="DQ3_K_M", builtin=True).count() == 1


def test_it_registers_a_checkpoint_from_an_inline_config(requester):
    body = {"name": "my-qwen", "family": "DeepSeek-R1-Distill-Qwen-7B", "source_dtype": "BF16",
            "config": configs.load_config("DeepSeek-R1-Distill-Qwen-7B")}
    response = requester.post("/api/checkpoints/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["architecture"] == "qwen2" and response.json()["parameter_count"] > 7e9


def test_it_registers_a_checkpoint_from_a_local_path(requester, tmp_path, settings):
    settings.DSQ_IMPORT_ROOTS = [tmp_path]  # paths outside the import roots: tests/security/test_bad_input.py
    (tmp_path / "config.json").write_text(json.dumps(configs.load_config("DeepSeek-R1-Distill-Llama-8B")))
    response = requester.post("/api/checkpoints/", {"name": "local-llama", "family": "R1-Distill-Llama-8B",
                                                    "local_path": str(tmp_path)}, format="json")
    assert response.status_code == 201 and response.json()["architecture"] == "llama"


def test_it_refuses_an_unsupported_architecture(requester):
    body = {"name": "mamba", "family": "x", "config": {"model_type": "mamba", "architectures": ["MambaForCausalLM"]}}
    response = requester.post("/api/checkpoints/", body, format="json")
    assert response.status_code == 400 and "unsupported model" in response.json()["error"]


def test_it_names_a_missing_config_key(requester):
    config = configs.load_config("DeepSeek-R1")
    del config["kv_lora_rank"]
    response = requester.post("/api/checkpoints/", {"name": "broken", "family": "x", "config": config}, format="json")
    assert response.status_code == 400 and "missing 'kv_lora_rank'" in response.json()["error"]


def test_it_needs_somewhere_to_read_the_config_from(requester):
    response = requester.post("/api/checkpoints/", {"name": "nothing", "family": "x"}, format="json")
    assert response.status_code == 400 and "local_path or an hf_repo" in response.json()["error"]


def test_anonymous_cannot_register(anonymous):
    assert anonymous.post("/api/checkpoints/", {"name": "x", "family": "x"}, format="json").status_code == 401


def test_it_compares_variants_against_the_baseline(anonymous):
    ckpt = factories.checkpoint("deepseek-r1")
    q8 = factories.variant(ckpt, factories.recipe("Q8_0"), bits_per_weight=8.5)
    dq3 = factories.variant(ckpt, factories.recipe("DQ3_K_M"), bits_per_weight=3.59)
    factories.measured(dq3, q8, ppl=5.40, reference_ppl=5.10, kld_mean=0.05)
    factories.scored(q8, {"mmlu": [80.0]})
    factories.scored(dq3, {"mmlu": [78.0]})
    body = anonymous.get("/api/checkpoints/deepseek-r1/comparison/").json()
    assert body["baseline"].startswith("Q8_0")
    rows = {r["variant"].split()[0]: r for r in body["rows"]}
    assert rows["DQ3_K_M"]["acc_drop_percent"] == pytest.approx(2.5)
    assert rows["Q8_0"]["acc_drop_percent"] is None


def test_a_checkpoint_without_results_has_an_empty_comparison(anonymous):
    factories.checkpoint("deepseek-r1")
    assert anonymous.get("/api/checkpoints/deepseek-r1/comparison/").json()["rows"] == []


def test_register_checkpoint_command(tmp_path, capsys):
    from django.core.management import CommandError, call_command

    (tmp_path / "config.json").write_text(json.dumps(configs.load_config("DeepSeek-R1-Distill-Qwen-1.5B")))
    call_command("register_checkpoint", "qwen-small", "R1-Distill-Qwen-1.5B", "--path", str(tmp_path))
    assert "qwen2" in capsys.readouterr().out
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CommandError, match="unsupported model"):
        call_command("register_checkpoint", "empty", "x", "--path", str(tmp_path))


def test_every_catalogue_name_is_addressable(anonymous):
    from registry.catalogue import CHECKPOINTS

    bootstrap()
    assert any("." in entry["name"] for entry in CHECKPOINTS)  # r1-distill-qwen-1.5b
    for entry in CHECKPOINTS:
        detail = anonymous.get(f"/api/checkpoints/{entry['name']}/")
        assert detail.status_code == 200 and detail.json()["name"] == entry["name"], entry["name"]
        comparison = anonymous.get(f"/api/checkpoints/{entry['name']}/comparison/")
        assert comparison.status_code == 200 and comparison.json()["checkpoint"] == entry["name"]


def test_a_name_with_a_dot_registers_and_is_found(requester, anonymous):
    body = {"name": "my-qwen-1.5b", "family": "DeepSeek-R1-Distill-Qwen-1.5B",
            "config": configs.load_config("DeepSeek-R1-Distill-Qwen-1.5B")}
    assert requester.post("/api/checkpoints/", body, format="json").status_code == 201
    assert anonymous.get("/api/checkpoints/my-qwen-1.5b/").json()["name"] == "my-qwen-1.5b"


@pytest.mark.parametrize("name", [".hidden", "..", "-x", "a/b", "a b", "qwen@1", "é"])
def test_names_the_urls_could_not_address_are_refused_everywhere(requester, name):
    from django.core.exceptions import ValidationError

    config = configs.load_config("DeepSeek-R1-Distill-Qwen-1.5B")
    response = requester.post("/api/checkpoints/", {"name": name, "family": "x", "config": config}, format="json")
    assert response.status_code == 400 and "name" in response.json()["error"]
    with pytest.raises(ValidationError, match="checkpoint name"):  # bootstrap and the command use this path
        Checkpoint.register(name=name, family="x", config=config)
    assert not Checkpoint.objects.exists()
