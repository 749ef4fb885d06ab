"""Personas and a small populated registry for the API tests."""
from __future__ import annotations

import pytest

from tests.registry.personas import admin, anonymous, approver, requester, teammate  # noqa: F401 (fixtures)


@pytest.fixture
def storage(tmp_path, settings):
    settings.DSQ_STORAGE_ROOT = tmp_path / "storage"
    settings.DSQ_STORAGE_ROOT.mkdir()
    return settings.DSQ_STORAGE_ROOT
