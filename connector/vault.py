"""Credential encryption at rest (Fernet/MultiFernet) and key rotation.

The first key in ``CONNECTOR_SECRET_KEY`` encrypts; every key decrypts. Rotation is: put the new
key first, keep the old ones after it, run ``connector keys rotate`` (re-encrypts every stored
secret under the first key), then drop the old keys.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from connector.errors import ConfigurationError


def check_keys(keys: Sequence[str]) -> list[str]:
    """Return a problem per malformed key, naming its position but never its value."""
    problems = []
    for index, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            problems.append(
                f"CONNECTOR_SECRET_KEY key #{index} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            )
    return problems


def generate_key() -> str:
    return Fernet.generate_key().decode()


class Vault:
    """Encrypts and decrypts secrets; never logs or repr()s them."""

    def __init__(self, keys: Sequence[str]) -> None:
        problems = check_keys(keys) if keys else ["no secret key configured"]
        if problems:
            raise ConfigurationError(problems)
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def __repr__(self) -> str:
        return "Vault(<keys hidden>)"

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            # The message must not echo the ciphertext: it is harmless alone but noisy in logs.
            raise ConfigurationError(
                "a stored secret cannot be decrypted with any configured CONNECTOR_SECRET_KEY "
                "(was a key removed before `connector keys rotate` ran?)"
            ) from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt under the first key (MultiFernet.rotate keeps the original timestamp)."""
        return self._fernet.rotate(token.encode()).decode()
