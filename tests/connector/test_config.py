"""Settings: embedded defaults, production requirements, one message listing every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import Settings
from connector.errors import ConfigurationError

KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


def test_embedded_mode_needs_nothing_and_keeps_its_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"CONNECTOR_VAR_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    assert first.embedded and first.database_url.startswith("sqlite:///")
    assert first.broker_url.startswith("embedded+sqlite:///")
    assert (tmp_path / "secret.key").read_text().strip() == first.secret_keys[0]
    assert "generated a local secret key" in caplog.text
    again = Settings.from_env(env)
    assert again.secret_keys == first.secret_keys, "a restart must read the same key"


def test_production_lists_every_problem_at_once() -> None:
    env = {
        "DATABASE_URL": "postgresql://u@db/app",
        "PORT": "eighty",
        "CONNECTOR_TRUSTED_HOSTS": "ok.example.com,http://bad/",
        "CONCUR_WEBHOOK_PUBLIC_KEYS": "/nonexistent/key.pem",
        "ZOHO_RATE_LIMIT": "lots",
    }
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    text = str(info.value)
    for fragment in (
        "CONNECTOR_SECRET_KEY is required",
        "REDIS_URL is required",
        "PORT must be",
        "CONNECTOR_TRUSTED_HOSTS",
        "CONCUR_WEBHOOK_PUBLIC_KEYS",
        "ZOHO_RATE_LIMIT",
    ):
        assert fragment in text
    assert len(info.value.problems) == 6


def test_bad_key_is_reported_without_echoing_it() -> None:
    env = {
        "DATABASE_URL": "postgresql://u@db/app",
        "REDIS_URL": "redis://r",
        "CONNECTOR_SECRET_KEY": f"{KEY},not-a-key-SECRETVALUE",
    }
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert "key #2" in str(info.value) and "SECRETVALUE" not in str(info.value)


def test_production_settings_parse(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgres://u:pw@db:5432/app",
        "REDIS_URL": "redis://r:6379/0",
        "CONNECTOR_SECRET_KEY": f"{KEY},{KEY}",
        "CONNECTOR_TRUSTED_HOSTS": "proxy.example.com:8443",
        "PORT": "8000",
        "FLOWER_BASIC_AUTH": "ops:pw",
    }
    s = Settings.from_env(env)
    assert not s.embedded and s.database_url.startswith("postgresql://")
    assert s.broker_url == "redis://r:6379/0" and s.port == 8000
    assert s.trusted_hosts == ("proxy.example.com:8443",)
    summary = s.safe_summary()
    assert "pw" not in summary["database_url"] and summary["secret_keys"] == "<set>"
    assert KEY not in repr(s)
