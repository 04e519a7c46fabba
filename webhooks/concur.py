"""``POST /webhooks/concur``: SAP Concur Event Subscription Service events (brief §7)."""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, current_app, request
from sqlalchemy import select

from connector import inbox, payloads
from connector.errors import MalformedWebhook
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
    payloads.raw_text(raw)  # stored exactly as received: UTF-8 without NUL
    event = payloads.loads(raw)
    if not isinstance(event, dict):
        raise MalformedWebhook("event must be a JSON object")
    missing = [f for f in ("id", "topic", "eventType", "facts") if not event.get(f)]
    facts = event.get("facts") if isinstance(event.get("facts"), dict) else {}
    if not facts.get("companyId"):
        missing.append("facts.companyId")
    if missing:
        raise MalformedWebhook(f"event is missing {', '.join(missing)}")
    event_id = payloads.ident(event["id"], "id", max_length=inbox.KEY_LENGTH)
    event_type = payloads.ident(event["eventType"], "eventType")
    company_id = payloads.ident(facts["companyId"], "facts.companyId")
    db = current_app.config["CONNECTOR_DB"]
    with db.session() as session:
        # A company we do not know yet is stored unrouted (connection_id NULL) and answered like
        # any other event: ESS drops events answered 4xx, and the same answer for known and
        # unknown companies enumerates nothing. Intake routes it once the connection exists
        # (issue #13) and until then it counts attempts and ends ``failed``, visible on /ops.
        connection_id = session.execute(
            select(Connection.id).where(Connection.concur_company_id == company_id)
        ).scalar()
        stored = inbox.store(
            session,
            source="concur",
            dedupe_key=event_id,
            body=raw,
            headers=dict(request.headers),
            connection_id=connection_id,
            event_type=event_type,
        )
    return respond(stored)
