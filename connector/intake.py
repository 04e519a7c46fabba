"""Turning a stored webhook event into ledger records: the seam between receivers and flows.

A flow registers a handler for the events it understands (``register("zoho", "bill", fn)``).
The handler reads the event, creates or finds records with ``ledger.get_or_create`` and returns
``(record_id, step)`` pairs to enqueue. Events nobody handles are kept and marked ``ignored``
with a note, never dropped.

A handler that needs a vendor call before it can name the record (the expenses flow reads the
report header to learn its approval version) registers a ``prepare`` function too: it runs
first, outside any database transaction, and its result is passed to the handler as a fourth
argument. If it raises, the event stays ``received`` and the sweeper relays it later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector import inbox
from connector.config import Settings, get_settings
from connector.db import Database
from connector.models import Step, WebhookEvent, WebhookStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeResult:
    """What a handler decided: records to enqueue, or why the event was ignored."""

    records: list[tuple[int, Step]]
    ignored: str | None = None


Handler = Callable[..., IntakeResult]
#: ``prepare(db, settings, event, payload)``: runs outside any transaction, before the handler.
Prepare = Callable[[Database, Settings, WebhookEvent, dict[str, Any]], Any]
_handlers: dict[tuple[str, str], Handler] = {}
_prepares: dict[tuple[str, str], Prepare] = {}


def register(source: str, kind: str, handler: Handler, *, prepare: Prepare | None = None) -> None:
    """``handler(session, event, payload)``; with ``prepare``, ``handler(session, event,
    payload, prepared)`` where ``prepared`` is what ``prepare`` returned."""
    _handlers[(source, kind)] = handler
    if prepare is None:
        _prepares.pop((source, kind), None)
    else:
        _prepares[(source, kind)] = prepare


def handler_for(source: str, kind: str) -> Handler | None:
    _load_flows()
    return _handlers.get((source, kind))


def _load_flows() -> None:
    # Flows register their handlers on import; importing them here keeps receivers flow-agnostic.
    from connector import flows

    for name in flows.BUILTIN:
        try:
            flows.get(name)
        except ImportError:  # pragma: no cover - a flow module that is not installed
            log.warning("flow %s could not be loaded", name)


def process(
    db: Database, event_id: int, settings: Settings | None = None
) -> list[tuple[int, Step]]:
    """Run the event's handler once; returns what to enqueue. Safe to call twice.

    ``settings`` (default: the process's) is what a ``prepare`` function builds clients with.
    """
    prepared: tuple[Any, ...] = ()
    with db.session() as session:
        event = session.get(WebhookEvent, event_id)
        if event is None or event.status in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED):
            return []
        handler_for(event.source, event.event_type or "")
        prepare = _prepares.get((event.source, event.event_type or ""))
        if prepare is not None:
            payload = json.loads(event.body) if event.body else {}
            session.expunge(event)
    if prepare is not None:
        # Outside any transaction: it may call a vendor.
        prepared = (prepare(db, settings or get_settings(), event, payload),)
    with db.session() as session:
        event = session.get(WebhookEvent, event_id)
        if event is None or event.status in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED):
            return []
        payload = json.loads(event.body) if event.body else {}
        kind = event.event_type or ""
        handler = handler_for(event.source, kind)
        if handler is None:
            inbox.mark(
                session,
                event.id,
                WebhookStatus.IGNORED,
                note=f"no flow handles {event.source} {kind!r} events",
            )
            return []
        result = handler(session, event, payload, *prepared)
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
