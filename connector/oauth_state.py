"""OAuth ``state`` values: signed, expiring (10 minutes) and single-use.

The value sent to Zoho is ``<payload>.<signature>``: the payload names a random nonce, the
connection and the purpose; the signature is an HMAC-SHA256 under a key derived from the first
``CONNECTOR_SECRET_KEY``. The nonce is also a row in ``oauth_states``, and consuming it is one
conditional UPDATE (``used_at IS NULL``), so a replayed or raced callback finds it used. The
same mechanism guards the organization-choice form that follows the callback.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import OAuthStateError
from connector.models import OAuthState

#: How long a person has between "start" and the callback (and to pick an organization).
STATE_TTL_SECONDS = 600

AUTHORIZE = "zoho_authorize"
CHOOSE_ORGANIZATION = "zoho_organization"


@dataclass(frozen=True)
class ConsumedState:
    connection_id: int
    purpose: str
    data: dict[str, Any]


def _key(settings: Settings) -> bytes:
    return hashlib.sha256(b"connector oauth state\0" + settings.secret_keys[0].encode()).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(
    db: Database,
    settings: Settings,
    connection_id: int,
    purpose: str,
    *,
    data: dict[str, Any] | None = None,
    ttl: float = STATE_TTL_SECONDS,
) -> str:
    """Create and store a state for ``purpose``; returns the value to hand out."""
    nonce = secrets.token_urlsafe(24)
    now = utcnow()
    expires = now + dt.timedelta(seconds=ttl)
    with db.session() as session:
        session.add(
            OAuthState(
                nonce=nonce,
                connection_id=connection_id,
                purpose=purpose,
                data=data,
                created_at=now,
                expires_at=expires,
            )
        )
    payload = _b64(
        json.dumps(
            {"n": nonce, "c": connection_id, "p": purpose, "e": int(expires.timestamp())},
            separators=(",", ":"),
        ).encode()
    )
    signature = _b64(hmac.new(_key(settings), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def consume(db: Database, settings: Settings, value: str | None, purpose: str) -> ConsumedState:
    """Check and use up a state; raises ``OAuthStateError`` saying what is wrong."""
    payload_text, _, signature = (value or "").partition(".")
    expected = _b64(hmac.new(_key(settings), payload_text.encode(), hashlib.sha256).digest())
    if not payload_text or not hmac.compare_digest(signature, expected):
        raise OAuthStateError("the OAuth state is missing or its signature is wrong")
    try:
        payload = json.loads(_unb64(payload_text))
        nonce, connection_id, state_purpose = str(payload["n"]), int(payload["c"]), payload["p"]
    except (ValueError, KeyError, TypeError):
        raise OAuthStateError("the OAuth state is malformed") from None
    if state_purpose != purpose:
        raise OAuthStateError("the OAuth state belongs to another step of the authorization")
    now = utcnow()
    with db.session() as session:
        row = session.execute(select(OAuthState).where(OAuthState.nonce == nonce)).scalar_one_or_none()
        if row is None or row.connection_id != connection_id:
            raise OAuthStateError("the OAuth state is unknown (was the connection deleted?)")
        if row.expires_at <= now:
            raise OAuthStateError("the OAuth state has expired; start the authorization again")
        taken = session.execute(
            update(OAuthState)
            .where(OAuthState.id == row.id, OAuthState.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise OAuthStateError("the OAuth state was already used; start the authorization again")
        return ConsumedState(row.connection_id, row.purpose, dict(row.data or {}))


def purge_expired(db: Database, *, older_than: float = 86400.0) -> int:
    """Delete states that expired more than ``older_than`` seconds ago; returns how many."""
    from sqlalchemy import delete

    cutoff = utcnow() - dt.timedelta(seconds=older_than)
    with db.session() as session:
        result = session.execute(delete(OAuthState).where(OAuthState.expires_at < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
