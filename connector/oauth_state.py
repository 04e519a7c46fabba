"""OAuth ``state`` values: signed, expiring (10 minutes) and single-use.

The value sent to Zoho is ``<payload>.<signature>``: the payload names a random nonce, the
connection and the purpose; the signature is an HMAC-SHA256 under a key derived from the first
``CONNECTOR_SECRET_KEY``. The nonce is also a row in ``oauth_states``, and consuming it is one
conditional UPDATE (``used_at IS NULL``), so a replayed or raced callback finds it used. The
same mechanism guards the organization-choice form that follows the callback.

Web states are also **bound to the browser** that started the authorization: ``browser_nonce``
makes a random value the caller puts in an HttpOnly cookie, and only its SHA-256 is kept in the
row's ``data``. ``consume`` refuses a browser-bound state unless the same cookie comes back, so a
state copied out of an operator's browser (or a callback URL replayed from another machine) is
useless. The check runs before the state is used up, so a stranger cannot burn the operator's
state either. The hash lives in the existing JSON ``data`` column: no schema change.
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
#: A re-authorization that would move the connection to another Zoho user or organization,
#: parked until an operator confirms that exact change (``connector.authorize``).
CONFIRM_CHANGE = "zoho_confirm_change"

#: The ``data`` key holding the browser cookie's hash.
BROWSER_KEY = "browser_sha256"


def browser_nonce() -> str:
    """A fresh random value for the browser-binding cookie."""
    return secrets.token_urlsafe(32)


def _browser_hash(value: str) -> str:
    return hashlib.sha256(b"connector oauth browser\0" + value.encode()).hexdigest()


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
    browser: str | None = None,
) -> str:
    """Create and store a state for ``purpose``; returns the value to hand out.

    ``browser``: the browser-binding cookie value (``browser_nonce()``); only its hash is kept.
    """
    nonce = secrets.token_urlsafe(24)
    if browser is not None:
        data = {**(data or {}), BROWSER_KEY: _browser_hash(browser)}
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


def consume(
    db: Database,
    settings: Settings,
    value: str | None,
    purpose: str,
    *,
    browser: str | None = None,
    require_browser: bool = False,
) -> ConsumedState:
    """Check and use up a state; raises ``OAuthStateError`` saying what is wrong.

    A state issued with a browser binding is accepted only with the same ``browser`` value;
    ``require_browser`` also refuses a state that was issued without one (web views).
    """
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
        row = session.execute(
            select(OAuthState).where(OAuthState.nonce == nonce)
        ).scalar_one_or_none()
        if row is None or row.connection_id != connection_id:
            raise OAuthStateError("the OAuth state is unknown (was the connection deleted?)")
        if row.expires_at <= now:
            raise OAuthStateError("the OAuth state has expired; start the authorization again")
        bound = (row.data or {}).get(BROWSER_KEY)
        if (bound or require_browser) and not (
            bound and browser and hmac.compare_digest(str(bound), _browser_hash(browser))
        ):
            raise OAuthStateError(
                "this authorization was started in another browser (or its cookie is missing); "
                "start it again from the operator page in this browser"
            )
        taken = session.execute(
            update(OAuthState)
            .where(OAuthState.id == row.id, OAuthState.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise OAuthStateError("the OAuth state was already used; start the authorization again")
        data = {k: v for k, v in (row.data or {}).items() if k != BROWSER_KEY}
        return ConsumedState(row.connection_id, row.purpose, data)


def purge_expired(db: Database, *, older_than: float = 86400.0) -> int:
    """Delete states that expired more than ``older_than`` seconds ago; returns how many."""
    from sqlalchemy import delete

    cutoff = utcnow() - dt.timedelta(seconds=older_than)
    with db.session() as session:
        result = session.execute(delete(OAuthState).where(OAuthState.expires_at < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
