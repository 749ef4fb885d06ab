"""OpenMP waits passively unless the environment says otherwise (kernels/__init__.py says why)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def policy_after_import(package: str, preset: "str | None") -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = REPO
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    code = f"import {package}, os; print(os.environ['OMP_WAIT_POLICY'])"
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("package", ["kernels", "quant", "dsq"])
def test_importing_a_package_first_sets_passive_waiting(package):
    assert policy_after_import(package, None) == "PASSIVE"


def test_the_environment_overrides_it():
    assert policy_after_import("kernels", "ACTIVE") == "ACTIVE"
