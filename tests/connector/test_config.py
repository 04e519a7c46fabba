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
        "CONNECTOR_PUBLIC_URL is required",
    ):
        assert fragment in text
    assert len(info.value.problems) == 7


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
        "CONNECTOR_PUBLIC_URL": "https://connector.example.com/",
    }
    s = Settings.from_env(env)
    assert s.public_url == "https://connector.example.com"
    assert not s.embedded and s.database_url.startswith("postgresql://")
    assert s.broker_url == "redis://r:6379/0" and s.port == 8000
    assert s.trusted_hosts == ("proxy.example.com:8443",)
    summary = s.safe_summary()
    assert "pw" not in summary["database_url"] and summary["secret_keys"] == "<set>"
    assert KEY not in repr(s)


# --------------------------------------------------------------------------- issue #12


@pytest.mark.parametrize(
    ("url", "leak"),
    [
        ("redis://h:6379/0?password=SECRETPW", "SECRETPW"),
        ("rediss://h/0?ssl_cert_reqs=none&token=SECRETTK", "SECRETTK"),
        ("redis://:SECRETUI@h:6379/0", "SECRETUI"),
        ("redis://user:SECRETUP@h:6379/0?Pass-Word=SECRETQ2", "SECRETQ"),
    ],
)
def test_config_masks_passwords_in_url_queries_too(url: str, leak: str) -> None:
    s = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@db/app?sslmode=require&password=SECRETDB",
            "REDIS_URL": url,
            "CONNECTOR_SECRET_KEY": KEY,
            "CONNECTOR_PUBLIC_URL": "https://c.example",
        }
    )
    summary = s.safe_summary()
    assert leak not in summary["redis_url"] and "SECRETDB" not in summary["database_url"]
    assert summary["redis_url"].split("://")[0] in ("redis", "rediss")
    assert "sslmode=require" in summary["database_url"]  # harmless query values stay readable


def test_sqlite_url_survives_masking(tmp_path: Path) -> None:
    s = Settings.from_env({"CONNECTOR_VAR_DIR": str(tmp_path), "CONNECTOR_SECRET_KEY": KEY})
    assert s.safe_summary()["database_url"] == s.database_url


@pytest.mark.parametrize(
    ("public_url", "problem"),
    [
        ("ftp://c.example", "must be an http(s)://"),
        ("https://user:pw@c.example", "must not carry credentials"),
        ("https://c.example/?x=1", "must not carry credentials"),
    ],
)
def test_public_url_is_checked(public_url: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {
                "CONNECTOR_VAR_DIR": str(tmp_path),
                "CONNECTOR_SECRET_KEY": KEY,
                "CONNECTOR_PUBLIC_URL": public_url,
            }
        )
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("0.0.0.0:5000", False),
        ("[::]:5000", False),
        ("10.1.2.3:80", False),
        (None, False),
    ],
)
def test_web_bind_decides_loopback(bind: str | None, loopback: bool, tmp_path: Path) -> None:
    env = {"CONNECTOR_VAR_DIR": str(tmp_path), "CONNECTOR_SECRET_KEY": KEY}
    if bind:
        env["WEB_BIND"] = bind
    assert Settings.from_env(env).web_on_loopback is loopback


def test_malformed_web_bind_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {"CONNECTOR_VAR_DIR": str(tmp_path), "CONNECTOR_SECRET_KEY": KEY, "WEB_BIND": "a:b:c"}
        )
    assert "WEB_BIND" in str(info.value)
