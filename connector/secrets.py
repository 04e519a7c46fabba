"""Where encrypted values live, and re-encrypting all of them under the newest key.

Keeping the list of encrypted columns in one place is what lets ``keys rotate`` and the
"no plaintext in the database" test be sure they have seen every secret.
"""

from __future__ import annotations

from sqlalchemy import select

from connector.db import Database
from connector.models import Connection, Credential
from connector.vault import Vault

#: Every column that holds Fernet ciphertext, per model.
ENCRYPTED_COLUMNS: dict[type, tuple[str, ...]] = {
    Credential: ("access_token_enc", "refresh_token_enc", "client_secret_enc"),
    Connection: ("webhook_secret_enc",),
}


def rotate_all(db: Database, vault: Vault, *, batch: int = 500) -> int:
    """Re-encrypt every stored secret under the first key; returns how many were rewritten.

    One transaction per model: a crash half-way leaves a mix of old- and new-key ciphertext,
    which MultiFernet still reads as long as the old key stays configured until this finishes.
    """
    count = 0
    for model, columns in ENCRYPTED_COLUMNS.items():
        with db.session() as session:
            for row in session.execute(select(model).execution_options(yield_per=batch)).scalars():
                for column in columns:
                    value = getattr(row, column)
                    if value:
                        setattr(row, column, vault.rotate(value))
                        count += 1
    return count
