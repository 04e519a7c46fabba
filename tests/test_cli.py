"""The ``connector`` command as a user runs it: real subprocesses, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def connector(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONNECTOR_", "DATABASE_", "REDIS_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", *args],
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
    assert "4 problem(s)" in out.stderr
    for name in ("DATABASE_URL", "PORT", "CONNECTOR_SECRET_KEY", "REDIS_URL"):
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
    assert out.returncode == 2 and "FLOWER_BASIC_AUTH" in out.stderr and "Traceback" not in out.stderr
