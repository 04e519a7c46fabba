"""Secrets at rest: encrypted, rotatable, and never in the database as plaintext."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from connector.db import Base
from connector.errors import ConfigurationError
from connector.models import Connection, Credential
from connector.secrets import ENCRYPTED_COLUMNS, rotate_all
from connector.vault import Vault

TOKEN = "1000.zoho-refresh-PLAINTEXT-abc123def456"
ACCESS = "concur-access-PLAINTEXT-xyz789"


def store_secrets(db: Any, vault: Vault) -> None:
    with db.session() as s:
        conn = Connection(name="vault-test", webhook_secret_enc=vault.encrypt("whsec-PLAINTEXT-1"))
        s.add(conn)
        s.flush()
        s.add(
            Credential(
                connection_id=conn.id,
                system="zoho",
                refresh_token_enc=vault.encrypt(TOKEN),
                access_token_enc=vault.encrypt(ACCESS),
                client_secret_enc=vault.encrypt("client-PLAINTEXT-secret"),
            )
        )


def dump_tables(db: Any) -> str:
    """Every row of every table as text: what a pg_dump or a stolen backup would contain."""
    chunks = []
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if db.dialect == "postgresql":
                rows = conn.execute(text(f"SELECT row_to_json(t)::text FROM {table.name} t"))
            else:
                rows = conn.execute(text(f"SELECT * FROM {table.name}"))
            chunks.extend(str(tuple(r)) for r in rows)
    return "\n".join(chunks)


def test_no_plaintext_secret_in_database(db: Any) -> None:
    vault = Vault([Fernet.generate_key().decode()])
    store_secrets(db, vault)
    dump = dump_tables(db)
    assert "gAAAAA" in dump  # Fernet tokens are there...
    for plaintext in (TOKEN, ACCESS, "whsec-PLAINTEXT", "client-PLAINTEXT", "PLAINTEXT"):
        assert plaintext not in dump  # ...and no plaintext
    if db.dialect == "sqlite":
        path = Path(db.url.split("///", 1)[1])
        db.engine.dispose()  # flush WAL into the main file
        raw = path.read_bytes() + (
            path.with_name(path.name + "-wal").read_bytes()
            if path.with_name(path.name + "-wal").exists()
            else b""
        )
        assert b"PLAINTEXT" not in raw


def test_pg_dump_has_no_plaintext(pg_db: Any) -> None:
    import shutil

    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump not installed")
    vault = Vault([Fernet.generate_key().decode()])
    store_secrets(pg_db, vault)
    url = pg_db.engine.url
    schema = url.query["options"].split("=", 1)[1]
    out = subprocess.run(
        [
            "pg_dump",
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            "-n",
            schema,
            "--data-only",
            url.database or "test",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "gAAAAA" in out and "PLAINTEXT" not in out


def test_rotation_reencrypts_everything_under_the_first_key(db: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    store_secrets(db, Vault([old]))
    assert rotate_all(db, Vault([new, old])) == sum(len(c) for c in ENCRYPTED_COLUMNS.values())
    only_new = Vault([new])
    with db.session() as s:
        cred = s.query(Credential).one()
        assert only_new.decrypt(cred.refresh_token_enc) == TOKEN
        with pytest.raises(ConfigurationError, match="cannot be decrypted"):
            Vault([old]).decrypt(cred.refresh_token_enc)
