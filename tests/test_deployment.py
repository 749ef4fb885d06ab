"""docker-compose.yml is valid and wires every service from the environment."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose_config() -> dict:
    env = dict(os.environ, DSQ_SECRET_KEY="test-secret", HF_TOKEN="")
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose client not installed")
def test_compose_file_validates_and_has_every_service():
    config = compose_config()
    assert set(config["services"]) == {"postgres", "redis", "web", "worker-gpu", "worker-cpu", "flower"}
    gpu = config["services"]["worker-gpu"]
    assert "-Q gpu" in " ".join(gpu["command"]) if isinstance(gpu["command"], list) else "-Q gpu" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    for name in ("web", "worker-gpu", "worker-cpu"):
        env = config["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["CELERY_BROKER_URL"].startswith("redis://")
    for name in ("worker-gpu", "worker-cpu"):
        command = config["services"][name]["command"]
        assert " ".join(command if isinstance(command, list) else [command]).startswith("celery -A dsq worker")


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose client not installed")
def test_compose_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "DSQ_SECRET_KEY"}
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode != 0 and "DSQ_SECRET_KEY" in result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose client not installed")
def test_web_and_workers_have_healthchecks_that_their_dependants_wait_on():
    services = compose_config()["services"]
    assert services["web"]["healthcheck"]["test"][-2:] == ["web", "http://127.0.0.1:8000/readyz"]
    for name in ("worker-gpu", "worker-cpu"):
        assert services[name]["healthcheck"]["test"][-2:] == ["dsq.healthcheck", "worker"]
        assert services[name]["depends_on"]["web"] == {"condition": "service_healthy"}
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert services[name]["volumes"] == services["web"]["volumes"]  # the image anchor still applies
    assert services["web"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose client not installed")
def test_flower_is_optional_and_refuses_to_start_without_basic_auth():
    flower = compose_config()["services"]["flower"]
    assert flower["profiles"] == ["monitoring"]
    command = flower["command"] if isinstance(flower["command"], str) else " ".join(flower["command"])
    assert 'FLOWER_BASIC_AUTH" || {' in command and "exit 1" in command  # ($$ is compose's escaped $)
