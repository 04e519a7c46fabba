"""The webhook inbox: every accepted delivery is stored before the sender hears 2xx.

The inbox is also the outbox: a receiver commits the event, then enqueues it. If the broker is
down at that moment the event stays ``received`` and the sweeper relays it later
(``stale_events``), so an acknowledged event is never lost between the database and Redis.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from connector.db import JSONType, UTCDateTime, utcnow
from connector.models import WebhookEvent, WebhookStatus


@dataclass(frozen=True)
class Stored:
    """What a receiver needs to answer: the event id, whether it is new, and its status."""

    event_id: int
    created: bool
    status: str


#: Headers worth keeping with an event (for replay and support); never Authorization or cookies.
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-zoho-webhook-signature",
    "concur-signature",
    "concur-correlationid",
    "x-request-id",
)


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


#: The receivers' one hot-path statement, written out so SQLAlchemy caches its compiled form:
#: the dialect ``insert().on_conflict_do_nothing()`` constructs are not cacheable
#: (``inherit_cache = False``) and were compiled afresh on every webhook. The same text runs on
#: PostgreSQL and on SQLite (3.35+: ON CONFLICT ... DO NOTHING and RETURNING).
_INSERT_EVENT = text(
    "INSERT INTO webhook_events "
    "(source, dedupe_key, body, headers, connection_id, event_type, status, received_at) "
    "VALUES (:source, :dedupe_key, :body, :headers, :connection_id, :event_type, :status, "
    ":received_at) "
    "ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id"
).bindparams(
    bindparam("headers", type_=JSONType),
    bindparam("received_at", type_=UTCDateTime()),
)


#: ``webhook_events.dedupe_key`` is VARCHAR(255).
KEY_LENGTH = 255


def _storable(text: str) -> str:
    """Text PostgreSQL accepts: NUL is the one character a text column refuses."""
    return text.replace("\x00", "\\u0000") if "\x00" in text else text


def storable_key(dedupe_key: str) -> str:
    """The dedupe key as stored: NUL escaped, and a key too long for the column shortened to a
    prefix plus its SHA-256, so two long keys sharing a prefix stay two keys (cutting them to
    255 characters would have made the second a "duplicate" of the first)."""
    key = _storable(dedupe_key)
    if len(key) <= KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{key[: KEY_LENGTH - len(digest) - 8]}:sha256:{digest}"


def store(
    session: Session,
    *,
    source: str,
    dedupe_key: str,
    body: bytes,
    headers: dict[str, str],
    connection_id: int | None,
    event_type: str | None,
) -> Stored:
    """Insert the event once per ``(source, dedupe_key)``.

    One statement on the hot path: INSERT ... ON CONFLICT DO NOTHING RETURNING id. Only a
    repeated delivery pays for a second query, to read the first one's status.
    """
    kept = {
        k: _storable(v)
        for k, v in ((k.lower(), v) for k, v in headers.items())
        if k in KEPT_HEADERS
    }
    key = storable_key(dedupe_key)
    values: dict[str, Any] = {
        "source": source,
        "dedupe_key": key,
        "body": _storable(body.decode("utf-8", errors="replace")),
        "headers": kept,
        "connection_id": connection_id,
        "event_type": _storable(event_type)[:64] if event_type is not None else None,
        "status": WebhookStatus.RECEIVED.value,
        "received_at": utcnow(),
    }
    new_id = session.execute(_INSERT_EVENT, values).scalar_one_or_none()
    if new_id is not None:
        return Stored(new_id, True, WebhookStatus.RECEIVED.value)
    event_id, status = session.execute(
        select(WebhookEvent.id, WebhookEvent.status).where(
            WebhookEvent.source == source, WebhookEvent.dedupe_key == key
        )
    ).one()
    return Stored(event_id, False, status)


def mark(
    session: Session,
    event_id: int,
    status: WebhookStatus,
    *,
    note: str | None = None,
    record_id: int | None = None,
) -> None:
    event = session.get(WebhookEvent, event_id)
    if event is None:
        return
    event.status = status.value
    event.note = note
    if record_id is not None:
        event.record_id = record_id
    if status is not WebhookStatus.RECEIVED:
        event.processed_at = utcnow()


def stale_events(
    session: Session, *, older_than: float, limit: int = 500
) -> Sequence[WebhookEvent]:
    """Events stored but not processed after ``older_than`` seconds (the enqueue failed, or
    the message was lost); the sweeper relays them. Processing is idempotent, so relaying an
    event whose message is merely slow costs one no-op task."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than)
    return (
        session.execute(
            select(WebhookEvent)
            .where(
                WebhookEvent.status == WebhookStatus.RECEIVED.value,
                WebhookEvent.received_at < cutoff,
            )
            .order_by(WebhookEvent.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )
