"""What both receivers share: enqueue a stored event and answer."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify

from connector.inbox import Stored
from connector.models import WebhookStatus


def respond(stored: Stored) -> Any:
    """Enqueue a committed event and answer 202 (new) or 200 (repeat).

    A repeated delivery of an event already processed answers 200 without enqueueing. A repeat
    of one still ``received`` (its first enqueue may have failed) enqueues again: processing is
    idempotent. A failing enqueue raises, and the app answers 503 so the sender retries; the
    stored event is relayed by the sweeper in any case.
    """
    if not stored.created and stored.status != WebhookStatus.RECEIVED:
        return jsonify(status="duplicate", event_id=stored.event_id), 200
    current_app.config["ENQUEUE_EVENT"](stored.event_id)
    return jsonify(status="accepted", event_id=stored.event_id), 202 if stored.created else 200
