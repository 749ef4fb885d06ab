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
    assert set(config["services"]) == {"postgres", "redis", "web", "worker-gpu", "worker-host", "worker-cpu", "flower"}
    gpu = config["services"]["worker-gpu"]
    assert "-Q gpu" in " ".join(gpu["command"]) if isinstance(gpu["command"], list) else "-Q gpu" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    for name in ("web", "worker-gpu", "worker-host", "worker-cpu"):
        env = config["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["CELERY_BROKER_URL"].startswith("redis://")
    for name in ("worker-gpu", "worker-host", "worker-cpu"):
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
    for name in ("worker-gpu", "worker-host", "worker-cpu"):
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


def dockerfile_args(path: Path) -> dict[str, str]:
    """ARG name -> default, as declared in a Dockerfile."""
    args = {}
    for line in path.read_text().splitlines():
        if line.startswith("ARG "):
            name, _, default = line[4:].strip().partition("=")
            args[name] = default
    return args


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose client not installed")
def test_the_host_worker_owns_every_gpu_and_builds_the_gpu_image_with_declared_args():
    host = compose_config()["services"]["worker-host"]
    command = host["command"] if isinstance(host["command"], str) else " ".join(host["command"])
    assert "-Q host" in command and host["environment"]["DSQ_WORKER_SCOPE"] == "host"
    assert host["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "all"
    assert host["build"]["dockerfile"] == "Dockerfile.gpu"
    declared = dockerfile_args(ROOT / "Dockerfile.gpu")
    assert set(host["build"]["args"]) <= set(declared), set(host["build"]["args"]) - set(declared)
    assert host["build"]["args"]["CUDA_ARCHITECTURES"] == declared["CUDA_ARCHITECTURES"] == "90"  # H100/H200
    # one-GPU and host workers of a machine lease GPUs under the same machine name
    gpu = compose_config()["services"]["worker-gpu"]
    assert gpu["environment"]["DSQ_HOST_NAME"] == host["environment"]["DSQ_HOST_NAME"]


def test_the_gpu_image_builds_torch_for_cuda_triton_and_llama_server_with_cuda():
    text = (ROOT / "Dockerfile.gpu").read_text()
    base = next(line for line in text.splitlines() if line.startswith("FROM "))
    assert base.startswith("FROM nvidia/cuda:") and "-devel-" in base  # nvcc for llama.cpp
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in text and "import torch, triton" in text
    assert "-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" in text  # llama-cpp-python
    assert 'CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}"' in text and "scripts/build-llama-tools.sh" in text
    assert "DSQ_LLAMA_SERVER=/usr/local/bin/llama-server" in text
    assert "-DGGML_CUDA=OFF" in (ROOT / "Dockerfile").read_text()  # the CPU image stays as it is


def build_plan(**env) -> list[str]:
    result = subprocess.run([str(ROOT / "scripts" / "build-llama-tools.sh")], capture_output=True, text=True,
                            env={**os.environ, "DRY_RUN": "1", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_tools_script_builds_cuda_for_sm90_in_a_directory_of_its_own():
    cpu_bin, _, cpu_cmake = build_plan()
    cuda_bin, targets, cuda_cmake = build_plan(CUDA_ARCHITECTURES="90", LLAMA_TOOLS="llama-server")
    assert cpu_bin.endswith("-noamx/bin") and "-DGGML_CUDA=OFF" in cpu_cmake
    assert cuda_bin.endswith("-cuda90/bin") and cuda_bin != cpu_bin
    assert "-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90" in cuda_cmake and targets == "targets: llama-server"
    refused = subprocess.run([str(ROOT / "scripts" / "build-llama-tools.sh")], capture_output=True, text=True,
                             env={**os.environ, "CUDA_ARCHITECTURES": "90; rm -rf /"})
    assert refused.returncode == 2 and "CUDA_ARCHITECTURES" in refused.stderr
