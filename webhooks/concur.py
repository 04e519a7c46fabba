"""``POST /webhooks/concur``: SAP Concur Event Subscription Service events (brief §7)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from flask import Blueprint, current_app, request
from sqlalchemy import select

from connector import inbox
from connector.errors import MalformedWebhook, UnknownConnection
from connector.models import Connection
from webhooks import signatures
from webhooks.receivers import respond

bp = Blueprint("concur", __name__, url_prefix="/webhooks/concur")


@cache
def _keys(paths: tuple[str, ...]) -> list[Any]:
    return signatures.load_public_keys(paths)


@bp.post("")
def receive() -> Any:
    raw = request.get_data(cache=True)
    settings = current_app.config["CONNECTOR_SETTINGS"]
    signatures.verify_concur(
        _keys(tuple(settings.concur_webhook_public_keys)),
        body=raw,
        signature=request.headers.get(signatures.CONCUR_SIGNATURE_HEADER),
    )
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedWebhook(f"body is not valid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise MalformedWebhook("event must be a JSON object")
    missing = [f for f in ("id", "topic", "eventType", "facts") if not event.get(f)]
    facts = event.get("facts") if isinstance(event.get("facts"), dict) else {}
    if not facts.get("companyId"):
        missing.append("facts.companyId")
    if missing:
        raise MalformedWebhook(f"event is missing {', '.join(missing)}")
    company_id = str(facts["companyId"])
    db = current_app.config["CONNECTOR_DB"]
    with db.session() as session:
        connection_id = session.execute(
            select(Connection.id).where(Connection.concur_company_id == company_id)
        ).scalar()
        if connection_id is None:
            raise UnknownConnection(f"no connection for Concur company {company_id}")
        stored = inbox.store(
            session,
            source="concur",
            dedupe_key=str(event["id"]),
            body=raw,
            headers=dict(request.headers),
            connection_id=connection_id,
            event_type=str(event["eventType"]),
        )
    return respond(stored)
