"""Configuration comes from the environment and bad values fail loudly."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dsq.settings import database_from_url, env_bool, env_int


def test_sqlite_url_is_the_embedded_default():
    db = database_from_url("sqlite:///var/dsq.sqlite3")
    assert db["ENGINE"] == "django.db.backends.sqlite3" and db["NAME"].endswith("var/dsq.sqlite3")


def test_postgres_url_is_parsed_with_credentials_and_port():
    db = database_from_url("postgres://dsq:s%40cret@db.internal:5433/registry")
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "django.db.backends.postgresql", "registry", "dsq", "s@cret", "db.internal", "5433")


def test_unknown_database_scheme_is_an_error():
    with pytest.raises(ValueError, match="DATABASE_URL"):
        database_from_url("mysql://x/y")


def test_bad_booleans_and_integers_are_errors(monkeypatch):
    monkeypatch.setenv("DSQ_DEBUG", "maybe")
    with pytest.raises(ValueError, match="DSQ_DEBUG"):
        env_bool("DSQ_DEBUG", False)
    monkeypatch.setenv("DSQ_LEASE_SECONDS", "ten")
    with pytest.raises(ValueError, match="DSQ_LEASE_SECONDS"):
        env_int("DSQ_LEASE_SECONDS", 300)


def test_a_bad_setting_stops_the_process_with_its_name():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="dsq.settings", DSQ_LEASE_SECONDS="soon")
    result = subprocess.run([sys.executable, "manage.py", "check"], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "DSQ_LEASE_SECONDS must be an integer" in result.stderr


def test_every_dsq_setting_the_code_reads_is_declared_in_dsq_settings():
    """`settings.DSQ_X` only, never a getattr with a default that hides a setting nobody declared."""
    import re
    from pathlib import Path

    from dsq import settings as declared

    root = Path(__file__).resolve().parent.parent
    read = set()
    for package in ("dsq", "registry", "workers"):
        for path in (root / package).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"getattr\(\s*settings\s*,", text), f"{path}: getattr(settings, …)"
            read |= set(re.findall(r"settings\.(DSQ_[A-Z0-9_]+)", text))
    assert read and read <= set(vars(declared)), sorted(read - set(vars(declared)))


def test_a_bad_log_format_stops_the_process_with_its_name():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="dsq.settings", DSQ_LOG_FORMAT="xml")
    result = subprocess.run([sys.executable, "manage.py", "check"], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "DSQ_LOG_FORMAT must be text or json" in result.stderr
