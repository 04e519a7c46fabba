"""The ``connector`` command as a user runs it: real subprocesses, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from connector.config import Settings
from connector.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


def connector(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONNECTOR_", "DATABASE_", "REDIS_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version(tmp_path: Path) -> None:
    out = connector("--version", env={"CONNECTOR_VAR_DIR": str(tmp_path)})
    assert out.returncode == 0 and "connector, version" in out.stdout


def test_bad_configuration_is_one_message_and_no_traceback(tmp_path: Path) -> None:
    out = connector("db", "upgrade", env={"DATABASE_URL": "mysql://x/y", "PORT": "-1"})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "5 problem(s)" in out.stderr
    for name in (
        "DATABASE_URL",
        "PORT",
        "CONNECTOR_SECRET_KEY",
        "REDIS_URL",
        "CONNECTOR_PUBLIC_URL",
    ):
        assert name in out.stderr


def test_db_upgrade_and_key_rotation_on_embedded_default(tmp_path: Path) -> None:
    old = Fernet.generate_key().decode()
    env = {"CONNECTOR_VAR_DIR": str(tmp_path), "CONNECTOR_SECRET_KEY": old}
    assert connector("db", "upgrade", env=env).returncode == 0
    assert (tmp_path / "connector.sqlite").exists()
    # Store one secret under the old key, rotate to a new one, and read it with the new key only.
    from connector.db import Database
    from connector.models import Connection
    from connector.vault import Vault

    db = Database(f"sqlite:///{tmp_path / 'connector.sqlite'}")
    with db.session() as s:
        s.add(Connection(name="rot", webhook_secret_enc=Vault([old]).encrypt("whsec")))
    new = connector("keys", "generate", env=env).stdout.strip()
    out = connector("keys", "rotate", env={**env, "CONNECTOR_SECRET_KEY": f"{new},{old}"})
    assert out.returncode == 0 and "re-encrypted 1 secret" in out.stdout
    with db.session() as s:
        assert Vault([new]).decrypt(s.query(Connection).one().webhook_secret_enc) == "whsec"
    db.dispose()


def test_flower_refuses_to_start_open_in_production(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "CONNECTOR_SECRET_KEY": Fernet.generate_key().decode(),
        "CONNECTOR_VAR_DIR": str(tmp_path),
        "CONNECTOR_PUBLIC_URL": "https://connector.example",
    }
    out = connector("flower", env=env)
    assert (
        out.returncode == 2 and "FLOWER_BASIC_AUTH" in out.stderr and "Traceback" not in out.stderr
    )


# --------------------------------------------------------------------------- issue #12 item 4


def _flower_settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {"CONNECTOR_SECRET_KEY": Fernet.generate_key().decode(), "CONNECTOR_VAR_DIR": str(tmp_path),
         **env}
    )  # fmt: skip


PRODUCTION = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "CONNECTOR_PUBLIC_URL": "https://connector.example",
}


def test_embedded_flower_without_auth_binds_to_loopback(tmp_path: Path) -> None:
    from cli.main import flower_argv

    argv = flower_argv(_flower_settings(tmp_path), 5555, None)
    assert "--address=127.0.0.1" in argv and "--port=5555" in argv


@pytest.mark.parametrize("address", ["0.0.0.0", "10.0.0.4", "::"])
def test_flower_beyond_loopback_needs_auth_even_in_embedded_mode(
    tmp_path: Path, address: str
) -> None:
    from cli.main import flower_argv

    with pytest.raises(ConfigurationError, match="FLOWER_BASIC_AUTH"):
        flower_argv(_flower_settings(tmp_path), 5555, address)
    argv = flower_argv(_flower_settings(tmp_path, FLOWER_BASIC_AUTH="u:p"), 5555, address)
    assert f"--address={address}" in argv and "u:p" not in " ".join(argv)


def test_production_flower_decides_by_address_not_by_database(tmp_path: Path) -> None:
    from cli.main import flower_argv

    settings = _flower_settings(tmp_path, **PRODUCTION)
    with pytest.raises(ConfigurationError, match=r"on 0\.0\.0\.0"):
        flower_argv(settings, 5555, None)
    assert "--address=127.0.0.1" in flower_argv(settings, 5555, "127.0.0.1")


def test_flower_address_cannot_be_smuggled_through_extra_arguments(tmp_path: Path) -> None:
    import click

    from cli.main import flower_argv

    with pytest.raises(click.UsageError):
        flower_argv(_flower_settings(tmp_path), 5555, None, ("--address=0.0.0.0",))
