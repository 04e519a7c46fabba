"""Turning a stored webhook event into ledger records: the seam between receivers and flows.

A flow names a hook for each event it understands (``Flow(intake={("zoho", "bill"): hook})``
in ``flows/__init__.py``, handed in as ``registry``).
The handler reads the event, creates or finds records with ``ledger.get_or_create`` and returns
``(record_id, step)`` pairs to enqueue. Events nobody handles are kept and marked ``ignored``
with a note, never dropped.

A handler that needs a vendor call before it can name the record (the expenses flow reads the
report header to learn its approval version) has a ``prepare`` function too: it runs
first, outside any database transaction, and its result is passed to the handler as a fourth
argument.

Whatever fails after an event is stored (a handler or ``prepare`` exception, an unroutable
Concur company, a body that no longer parses) is counted on the event (``attempts``); the
sweeper relays it a bound later (``inbox.relay_after``), and at ``INBOX_MAX_ATTEMPTS`` it is
``failed`` with the reason in ``note``: listed on /ops, in ``dead list`` and in the alert digest,
never relayed again until an operator replays it. A database outage or an empty rate-limit
bucket is not counted: it is re-raised, and the task retries through the broker (``tasks.base``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from connector import inbox, payloads
from connector.config import Settings, get_settings
from connector.db import Database
from connector.errors import ConnectorError, MalformedWebhook, RateLimitedError
from connector.models import Connection, Step, WebhookEvent, WebhookStatus

if TYPE_CHECKING:
    from connector.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeResult:
    """What a handler decided: records to enqueue, or why the event was ignored."""

    records: list[tuple[int, Step]]
    ignored: str | None = None


Handler = Callable[..., IntakeResult]
#: ``prepare(db, settings, event, payload)``: runs outside any transaction, before the handler.
Prepare = Callable[[Database, Settings, WebhookEvent, dict[str, Any]], Any]


class UnroutedEvent(ConnectorError):
    """A Concur event for a company no connection is paired with (yet)."""


#: Not the event's fault, not counted: the database is unreachable, or a shared rate-limit
#: bucket is empty. Re-raised; the task retries through the broker (``tasks.base``).
_OUTAGE = (OperationalError, InterfaceError, RateLimitedError)


def payload_of(event: WebhookEvent) -> dict[str, Any]:
    """The stored raw body parsed as the receiver parsed it (a Zoho form body's JSONString)."""
    if not event.body:
        return {}
    text: str | bytes = event.body
    if event.source == "zoho":
        text = payloads.zoho_json_text(text, (event.headers or {}).get("content-type"))
    value = payloads.loads(text)
    if not isinstance(value, dict):
        raise MalformedWebhook("stored body is not a JSON object")
    return value


def process(
    db: Database, event_id: int, settings: Settings | None = None, *, registry: Registry
) -> list[tuple[int, Step]]:
    """Run the event's handler once; returns what to enqueue. Safe to call twice, and twice at
    once (the handler's transaction locks the event row; the second sees it processed).

    ``settings`` (default: the process's) is what a ``prepare`` function builds clients with,
    and says how many failures make the event ``failed``.
    """
    settings = settings or get_settings()
    try:
        return _process(db, event_id, settings, registry)
    except _OUTAGE:
        raise
    except DBAPIError as exc:
        if exc.connection_invalidated:
            # A lost connection reported as another DBAPI error class (some drivers raise a
            # plain DatabaseError for a socket cut mid-statement): an outage, not the event.
            raise
        _record_failure(db, event_id, settings, exc)
        return []
    except Exception as exc:  # any reason: counted, never a silent loop
        _record_failure(db, event_id, settings, exc)
        return []


def _record_failure(db: Database, event_id: int, settings: Settings, exc: Exception) -> None:
    """Count the failure on the event. A database error's text names only the driver's first
    line (its full text holds the SQL statement and its parameters: payload values)."""
    detail = str(exc.orig).splitlines()[0] if isinstance(exc, DBAPIError) and exc.orig else str(exc)
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    with db.session() as session:
        status = inbox.record_failure(
            session, event_id, reason, max_attempts=settings.inbox_max_attempts
        )
    log.warning("webhook event %s: intake failed (%s), now %s", event_id, reason, status)


def _route(session: Any, event: WebhookEvent, payload: dict[str, Any]) -> None:
    """Give an unrouted Concur event its connection, if the company is known by now."""
    if event.connection_id is not None or event.source != "concur":
        return
    facts = payload.get("facts") if isinstance(payload.get("facts"), dict) else {}
    company_id = str(facts.get("companyId") or "")
    connection_id = session.execute(
        select(Connection.id).where(Connection.concur_company_id == company_id)
    ).scalar()
    if connection_id is None:
        raise UnroutedEvent(f"no connection for Concur company {company_id} (unrouted)")
    event.connection_id = connection_id


def _done(event: WebhookEvent | None) -> bool:
    return event is None or event.status != WebhookStatus.RECEIVED.value


def _process(
    db: Database, event_id: int, settings: Settings, registry: Registry
) -> list[tuple[int, Step]]:
    prepared: tuple[Any, ...] = ()
    with db.session() as session:
        event = session.get(WebhookEvent, event_id)
        if _done(event):
            return []
        assert event is not None
        payload = payload_of(event)
        _route(session, event, payload)
        hook = registry.intake_hook(event.source, event.event_type or "")
        prepare = hook.prepare if hook is not None else None
        if prepare is not None:
            session.flush()
            session.expunge(event)
    if prepare is not None:
        # Outside any transaction: it may call a vendor.
        prepared = (prepare(db, settings, event, payload),)
    with db.session() as session:
        # Locked until this transaction commits: a relayed copy of the same event waits here
        # and then finds it processed (PostgreSQL; SQLite serializes writers anyway).
        event = session.get(WebhookEvent, event_id, with_for_update=True)
        if _done(event):
            return []
        assert event is not None
        payload = payload_of(event)
        _route(session, event, payload)
        kind = event.event_type or ""
        hook = registry.intake_hook(event.source, kind)
        if hook is None:
            inbox.mark(
                session,
                event.id,
                WebhookStatus.IGNORED,
                note=f"no flow handles {event.source} {kind!r} events",
            )
            return []
        result = hook.handler(session, event, payload, *prepared)
        if result.ignored:
            inbox.mark(session, event.id, WebhookStatus.IGNORED, note=result.ignored)
        else:
            first = result.records[0][0] if result.records else None
            inbox.mark(
                session,
                event.id,
                WebhookStatus.PROCESSED,
                record_id=first,
                note=f"{len(result.records)} record(s)",
            )
        return result.records
