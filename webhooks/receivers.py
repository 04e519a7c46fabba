"""What both receivers share: read the raw body once, store it, enqueue, answer 202."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, jsonify

from connector import inbox
from connector.models import WebhookStatus

log = logging.getLogger(__name__)


def accept(
    *,
    source: str,
    dedupe_key: str,
    body: bytes,
    headers: dict[str, str],
    connection_id: int | None,
    event_type: str | None,
) -> Any:
    """Store the event (once), enqueue it, and answer.

    A repeated delivery answers 200 without a second event; if the first delivery's enqueue had
    failed (its event is still ``received``), the repeat enqueues it now. A failing enqueue
    answers 503 so the sender retries; the stored event is also relayed by the sweeper.
    """
    db = current_app.config["CONNECTOR_DB"]
    with db.session() as session:
        event, created = inbox.store(
            session,
            source=source,
            dedupe_key=dedupe_key,
            body=body,
            headers=headers,
            connection_id=connection_id,
            event_type=event_type,
        )
        event_id, status = event.id, event.status
    if not created and status != WebhookStatus.RECEIVED:
        return jsonify(status="duplicate", event_id=event_id), 200
    current_app.config["ENQUEUE_EVENT"](event_id)
    with db.session() as session:
        if session.get(type(event), event_id).status == WebhookStatus.RECEIVED:
            inbox.mark(session, event_id, WebhookStatus.ENQUEUED)
    return jsonify(status="accepted", event_id=event_id), 202 if created else 200
