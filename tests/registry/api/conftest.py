"""Personas and a small populated registry for the API tests."""
from __future__ import annotations

from tests.registry.personas import admin, anonymous, approver, requester, teammate  # noqa: F401 (fixtures)
