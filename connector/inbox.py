"""The webhook inbox: every accepted delivery is stored before the sender hears 2xx.

The inbox is also the outbox: a receiver commits the event, then enqueues it. If the broker is
down at that moment the event stays ``received`` and the sweeper relays it later
(``stale_events``), so an acknowledged event is never lost between the database and Redis.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
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


def relay_after(settings: Any) -> float:
    """Seconds after which a ``received`` event counts as lost and the sweeper relays it.

    ``INBOX_RELAY_AFTER`` when set; otherwise two sweep intervals (at least 5 s). Why two: a
    healthy enqueue reaches a worker within seconds, so an event still ``received`` across two
    sweeps lost its message (broker or worker outage, a receiver killed between commit and
    enqueue). It is deliberately not the record lease (``CONNECTOR_LEASE_SECONDS``, 300 s):
    nobody holds a lease on an event, and waiting a lease left events stuck for minutes after
    an outage (issue #21). Each relay stamps ``last_attempt_at``, so an event is relayed at
    most once per bound even when its message is only slow (a backlog): the cost of a wrong
    guess is one no-op task, and intake's row lock keeps two copies from both processing it.
    """
    configured = getattr(settings, "inbox_relay_after", None)
    if configured:
        return float(configured)
    return max(5.0, 2.0 * float(settings.sweep_interval))


def stale_events(
    session: Session, *, older_than: float, limit: int = 500
) -> Sequence[WebhookEvent]:
    """Events still ``received`` whose last hand-over (storage, a relay or an intake attempt,
    ``last_attempt_at`` or else ``received_at``) is older than ``older_than`` seconds: the
    enqueue failed, the message was lost, or the last attempt failed. ``failed`` events are
    never relayed (they wait for an operator's replay)."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than)
    touched = func.coalesce(WebhookEvent.last_attempt_at, WebhookEvent.received_at)
    return (
        session.execute(
            select(WebhookEvent)
            .where(WebhookEvent.status == WebhookStatus.RECEIVED.value, touched < cutoff)
            .order_by(WebhookEvent.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )


def touch(session: Session, event_ids: Sequence[int]) -> None:
    """Stamp a relay, so the next one waits a whole bound (see :func:`relay_after`)."""
    if event_ids:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(list(event_ids)))
            .values(last_attempt_at=utcnow())
        )


#: Longest failure reason kept in ``note`` (the exception's class and message, never a body).
NOTE_LENGTH = 500


def record_failure(session: Session, event_id: int, reason: str, *, max_attempts: int) -> str:
    """Count one failed intake run; at ``max_attempts`` the event is ``failed``, with the reason.

    Returns the event's status afterwards. A ``received`` event is relayed by the sweeper a
    bound later (the back-off between attempts); a ``failed`` one only by an operator.
    """
    event = session.get(WebhookEvent, event_id, with_for_update=True)
    if event is None or event.status != WebhookStatus.RECEIVED.value:
        return event.status if event is not None else WebhookStatus.FAILED.value
    event.attempts = (event.attempts or 0) + 1
    event.last_attempt_at = utcnow()
    reason = reason[:NOTE_LENGTH]
    if event.attempts >= max_attempts:
        event.status = WebhookStatus.FAILED.value
        event.processed_at = utcnow()
        event.note = f"failed after {event.attempts} attempt(s): {reason}"
    else:
        event.note = f"attempt {event.attempts} of {max_attempts} failed: {reason}"
    return event.status


def failed_events(
    session: Session, *, limit: int = 100, since: dt.datetime | None = None
) -> Sequence[WebhookEvent]:
    """Events intake gave up on, newest first (/ops, ``dead list``, the alert digest)."""
    query = select(WebhookEvent).where(WebhookEvent.status == WebhookStatus.FAILED.value)
    if since is not None:
        query = query.where(WebhookEvent.processed_at >= since)
    return session.execute(query.order_by(WebhookEvent.id.desc()).limit(limit)).scalars().all()


def list_failed(
    db: Any,
    *,
    limit: int = 100,
    since: dt.datetime | None = None,
    connection: str | None = None,
) -> list[dict[str, Any]]:
    """Failed events as ``describe`` shows them, newest first: what ``/ops`` and ``celery -A
    tasks dead list`` print. ``connection`` keeps the events routed to that connection id (an
    event names its connection by id only, and an unrouted one by none)."""
    with db.session() as session:
        events = [describe(e) for e in failed_events(session, limit=limit, since=since)]
    if connection:
        events = [e for e in events if str(e["connection_id"]) == connection]
    return events


def reopen(session: Session, event_ids: Sequence[int], *, requested_by: str) -> list[int]:
    """An operator's replay of ``failed`` events: back to ``received`` with a fresh attempt
    count (the note keeps who asked). Returns the ids reopened; the caller enqueues them."""
    events = (
        session.execute(
            select(WebhookEvent)
            .where(
                WebhookEvent.id.in_(list(event_ids)),
                WebhookEvent.status == WebhookStatus.FAILED.value,
            )
            .with_for_update()
        )
        .scalars()
        .all()
    )
    for event in events:
        event.status = WebhookStatus.RECEIVED.value
        event.attempts = 0
        event.processed_at = None
        event.last_attempt_at = utcnow()
        event.note = f"replayed by {requested_by[:100]} (was: {(event.note or '')[:300]})"
    return [e.id for e in events]


def replay_failed(
    db: Any,
    event_ids: Sequence[int] | None,
    *,
    requested_by: str,
    enqueue_event: Callable[[int], None],
) -> list[int]:
    """Re-drive ``failed`` events (the given ids, or all with ``None``): reopened in one
    transaction, then enqueued. Used by /ops and ``celery -A tasks dead retry --events``. An
    enqueue that fails leaves the event ``received``; the sweeper relays it."""
    with db.session() as session:
        if event_ids is None:
            event_ids = [e.id for e in failed_events(session, limit=10_000)]
        reopened = reopen(session, event_ids, requested_by=requested_by)
    for event_id in reopened:
        enqueue_event(event_id)
    return reopened


def describe(event: WebhookEvent) -> dict[str, Any]:
    """One event as /ops, ``dead list --json`` and the alert digest show it (no body)."""
    return {
        "id": event.id,
        "source": event.source,
        "event_type": event.event_type,
        "connection_id": event.connection_id,
        "dedupe_key": event.dedupe_key[:80],
        "attempts": event.attempts,
        "reason": event.note,
        "received_at": event.received_at.isoformat() if event.received_at else None,
        "failed_at": event.processed_at.isoformat() if event.processed_at else None,
    }
