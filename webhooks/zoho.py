"""``POST /webhooks/zoho/<connection_id>``: Zoho Books workflow webhooks (brief §7)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, request
from sqlalchemy import select

from connector import inbox, payloads
from connector.errors import MalformedWebhook, WebhookSignatureError
from connector.models import Connection
from connector.vault import Vault
from webhooks import signatures
from webhooks.receivers import respond

log = logging.getLogger(__name__)

bp = Blueprint("zoho", __name__, url_prefix="/webhooks/zoho")

#: The one answer for "this request does not authenticate", whatever the reason (unknown
#: connection id, no secret yet, wrong signature or token): a caller cannot tell a known id from
#: an unknown one (issue #12.5, no enumeration). The precise reason goes to the log only.
NOT_AUTHENTICATED = "the webhook signature or token does not verify for this URL"

#: Entities whose default payload we understand, and the id field of each.
ENTITY_IDS = {"bill": "bill_id", "invoice": "invoice_id", "contact": "contact_id"}


@bp.post("/<int:connection_id>")
def receive(connection_id: int) -> Any:
    raw = request.get_data(cache=True)
    settings = current_app.config["CONNECTOR_SETTINGS"]
    db = current_app.config["CONNECTOR_DB"]
    # One transaction: look up the secret, verify, store. Nothing is written unless the request
    # authenticates and parses (an exception rolls the transaction back).
    with db.session() as session:
        stored = _verify_and_store(session, settings, connection_id, raw)
    return respond(stored)


def _verify_and_store(session: Any, settings: Any, connection_id: int, raw: bytes) -> inbox.Stored:
    secret_enc = session.execute(
        select(Connection.webhook_secret_enc).where(Connection.id == connection_id)
    ).one_or_none()
    if secret_enc is None or not secret_enc[0]:
        # Same status and body as a bad signature on a known id. Nothing is stored for an
        # unknown id: Zoho signs with a per-connection secret, so an unknown id cannot be
        # authenticated and there is no sender to route it to later.
        log.warning(
            "zoho webhook for connection %s refused: %s",
            connection_id,
            "no such connection"
            if secret_enc is None
            else f"no webhook secret yet (run `connector webhooks zoho {connection_id}`)",
        )
        raise WebhookSignatureError(NOT_AUTHENTICATED)
    secret_enc = secret_enc[0]
    secret = _decrypt(tuple(settings.secret_keys), secret_enc)

    is_form = request.mimetype == "application/x-www-form-urlencoded"
    query = [(k, v) for k, v in request.args.items(multi=True) if k != signatures.TOKEN_PARAM]
    params = query + ([(k, v) for k, v in request.form.items(multi=True)] if is_form else [])
    signatures.verify_zoho(
        secret,
        params=params,
        body=b"" if is_form else raw,
        signature=request.headers.get(signatures.ZOHO_SIGNATURE_HEADER),
        token=request.headers.get(signatures.TOKEN_HEADER)
        or request.args.get(signatures.TOKEN_PARAM),
    )
    body = payloads.raw_text(raw)
    payload = _parse(raw, is_form)
    entity, record = _entity(payload)
    id_field = ENTITY_IDS.get(entity, f"{entity}_id")
    raw_id, raw_version = record.get(id_field), record.get("last_modified_time")
    record_id = payloads.ident(raw_id, f"{entity}.{id_field}") if raw_id else ""
    version = payloads.ident(raw_version, f"{entity}.last_modified_time") if raw_version else ""
    dedupe = (
        f"{connection_id}:{entity}:{record_id}:{version}"
        if record_id and version
        else f"{connection_id}:sha256:{inbox.body_hash(raw)}"
    )
    return inbox.store(
        session,
        source="zoho",
        dedupe_key=dedupe,
        body=body.encode("utf-8"),  # exactly as received: replay and re-verification see it
        headers=dict(request.headers),
        connection_id=connection_id,
        event_type=entity,
    )


#: Decrypted webhook secrets by (keys, ciphertext). Fernet decryption (and building the
#: MultiFernet) on every delivery was a measurable part of the receiver's time (B3). Keyed by the
#: ciphertext read in the same transaction, so a rotated secret (new ciphertext) is used at once.
_secrets: dict[tuple[tuple[str, ...], str], str] = {}


def _decrypt(keys: tuple[str, ...], secret_enc: str) -> str:
    cache_key = (keys, secret_enc)
    secret = _secrets.get(cache_key)
    if secret is None:
        secret = Vault(keys).decrypt(secret_enc)
        if len(_secrets) >= 1024:
            _secrets.clear()
        _secrets[cache_key] = secret
    return secret


def _parse(raw: bytes, is_form: bool) -> dict[str, Any]:
    if is_form:
        text = request.form.get("JSONString")
        if text is None:
            raise MalformedWebhook("form-encoded webhook without a JSONString field")
    else:
        if not raw.strip():
            raise MalformedWebhook(
                'empty body; expected Zoho\'s JSON payload such as {"bill": {...}}'
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedWebhook("body is not UTF-8 text") from None
    payload = payloads.loads(text)
    if not isinstance(payload, dict) or not payload:
        raise MalformedWebhook('payload must be a JSON object such as {"bill": {...}}')
    return payload


def _entity(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The module key of Zoho's default payload (``{"bill": {...}}``)."""
    known = [k for k in payload if k in ENTITY_IDS]
    key = known[0] if known else next(iter(payload))
    if not known:
        payloads.ident(key, "the payload's module key", max_length=48)
    record = payload[key]
    if not isinstance(record, dict):
        raise MalformedWebhook(f"payload key {key!r} must hold an object")
    if key in ENTITY_IDS and not record.get(ENTITY_IDS[key]):
        raise MalformedWebhook(f"{key} payload has no {ENTITY_IDS[key]}")
    return key, record
