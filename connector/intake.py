"""Turning a stored webhook event into ledger records: the seam between receivers and flows.

A flow registers a handler for the events it understands (``register("zoho", "bill", fn)``).
The handler reads the event, creates or finds records with ``ledger.get_or_create`` and returns
``(record_id, step)`` pairs to enqueue. Events nobody handles are kept and marked ``ignored``
with a note, never dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from connector import inbox
from connector.db import Database
from connector.models import Step, WebhookEvent, WebhookStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeResult:
    """What a handler decided: records to enqueue, or why the event was ignored."""

    records: list[tuple[int, Step]]
    ignored: str | None = None


Handler = Callable[[Session, WebhookEvent, dict[str, Any]], IntakeResult]
_handlers: dict[tuple[str, str], Handler] = {}


def register(source: str, kind: str, handler: Handler) -> None:
    _handlers[(source, kind)] = handler


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


def process(db: Database, event_id: int) -> list[tuple[int, Step]]:
    """Run the event's handler once; returns what to enqueue. Safe to call twice."""
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
        result = handler(session, event, payload)
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
