"""The Zoho webhook signing secret and the separate delivery token derived from it.

Zoho Books accepts a webhook ``secret`` of 12-50 characters, letters and digits only (Books API
v3, Webhooks). ``secrets.token_urlsafe`` would put ``-`` or ``_`` in three secrets out of four,
so we draw from letters and digits ourselves: 48 characters of a 62-letter alphabet is 285 bits.

Some customers cannot have Zoho sign (or sign the way we verify); they put a shared token in a
custom header or a query parameter instead. Query strings end up in access logs, proxies and
browser histories, so that token must never be the HMAC key: it is
``HMAC-SHA256(secret, "zoho-webhook-token/v1")`` written in hex. It is one-way (a leaked token
does not reveal the signing key, so nobody can sign with it), needs no second stored secret (no
schema change, nothing new for ``keys rotate`` to find), and it rotates with the secret, which
is what an operator wants after either leaked: one ``--rotate``, one edit of the Zoho webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from connector import ledger
from connector.api.redaction import register_secret
from connector.config import Settings
from connector.db import Database
from connector.errors import UnknownConnection
from connector.models import AuditEvent, Connection
from connector.vault import Vault

#: Zoho Books' rule for a webhook secret.
ZOHO_SECRET_RULE = re.compile(r"[A-Za-z0-9]{12,50}")
ZOHO_SECRET_RULE_TEXT = "12-50 characters, letters and digits only"
#: Length of the secrets we generate (inside Zoho's 12-50, and the 40-50 the issue asks for).
SECRET_LENGTH = 48
_ALPHABET = string.ascii_letters + string.digits
_TOKEN_LABEL = b"zoho-webhook-token/v1"
#: Audit step of the receiver's delivery diagnoses (``connector webhooks zoho ID --inspect-last``).
DIAGNOSIS_STEP = "webhook_auth"


def generate_secret(length: int = SECRET_LENGTH) -> str:
    """A fresh signing secret that Zoho Books accepts: letters and digits, ``length`` long."""
    if not 12 <= length <= 50:
        raise ValueError(f"a Zoho webhook secret is {ZOHO_SECRET_RULE_TEXT}")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def is_valid_zoho_secret(secret: str) -> bool:
    return ZOHO_SECRET_RULE.fullmatch(secret) is not None


def derive_token(secret: str) -> str:
    """The delivery token (``X-Connector-Token`` or ``?token=``) that goes with ``secret``."""
    return hmac.new(secret.encode("utf-8"), _TOKEN_LABEL, hashlib.sha256).hexdigest()[:48]


# --------------------------------------------------------------------------- stored per connection


@dataclass(frozen=True)
class WebhookCredentials:
    """What an operator pastes into Zoho: the signing secret and (alternatively) the token."""

    secret: str
    token: str
    #: "created", "rotated", "replaced" (the stored secret broke Zoho's rule) or None (as stored).
    change: str | None


def webhook_credentials(
    db: Database, settings: Settings, connection_id: int, *, rotate: bool = False
) -> WebhookCredentials:
    """The connection's webhook secret and token, creating or rotating the secret as needed.

    A stored secret that Zoho's rule refuses (the ``token_urlsafe`` ones of earlier versions)
    cannot be configured in Zoho Books, so it cannot be signing anything: it is replaced rather
    than handed out again. Its only possible use was the old token scheme (token == secret),
    which is exactly what the separate token retires.
    """
    vault = Vault(settings.secret_keys)
    with db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise UnknownConnection(f"no connection {connection_id}")
        secret = (
            vault.decrypt(connection.webhook_secret_enc) if connection.webhook_secret_enc else None
        )
        change: str | None = None
        if rotate:
            change = "rotated"
        elif secret is None:
            change = "created"
        elif not is_valid_zoho_secret(secret):
            change = "replaced"
        if change is not None:
            secret = generate_secret()
            connection.webhook_secret_enc = vault.encrypt(secret)
            ledger.audit(
                session,
                None,
                connection_id=connection_id,
                step="connection",
                outcome=f"webhook_secret_{change}",
            )
    assert secret is not None
    token = derive_token(secret)
    register_secret(secret)
    register_secret(token)
    return WebhookCredentials(secret, token, change)


def last_diagnosis(db: Database, connection_id: int) -> dict[str, Any] | None:
    """The newest delivery diagnosis the Zoho receiver kept for this connection, or None."""
    with db.session() as session:
        row = session.execute(
            select(AuditEvent)
            .where(AuditEvent.connection_id == connection_id, AuditEvent.step == DIAGNOSIS_STEP)
            .order_by(AuditEvent.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if row is None:
            return None
        return {"at": row.at.isoformat(), **(row.details or {})}
