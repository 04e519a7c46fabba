"""``POST /webhooks/zoho/<connection_id>``: Zoho Books workflow webhooks (brief §7)."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, current_app, g, request
from sqlalchemy import select

from connector import inbox, ledger, payloads, webhook_secrets
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
    try:
        with db.session() as session:
            stored = _verify_and_store(session, settings, connection_id, raw)
    finally:
        _write_diagnosis(db)  # after the receiver's transaction: SQLite has one writer
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
    _authenticate(settings, connection_id, secret, raw, is_form)
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


def _authenticate(
    settings: Any, connection_id: int, secret: str, raw: bytes, is_form: bool
) -> None:
    """Signature over every query parameter (token included), else the token; raise if neither.

    Now and then (once a minute per connection and outcome) what the delivery looked like and
    which canonical strings matched is kept for ``connector webhooks zoho ID --inspect-last``.
    """
    query = list(request.args.items(multi=True))
    form = list(request.form.items(multi=True)) if is_form else []
    body = b"" if is_form else raw
    signature = request.headers.get(signatures.ZOHO_SIGNATURE_HEADER)
    token = request.headers.get(signatures.TOKEN_HEADER) or request.args.get(signatures.TOKEN_PARAM)
    encoding = settings.zoho_webhook_signature_encoding
    try:
        how = signatures.verify_zoho(
            secret, params=query + form, body=body, signature=signature, token=token,
            encoding=encoding,
        )  # fmt: skip
    except WebhookSignatureError as exc:
        _keep_diagnosis(connection_id, "refused", secret, query, form, body, signature, token)
        log.warning("zoho webhook for connection %s refused: %s", connection_id, exc)
        raise WebhookSignatureError(NOT_AUTHENTICATED) from None
    _keep_diagnosis(connection_id, f"accepted_{how}", secret, query, form, body, signature, token)


#: (connection, outcome) -> when its last diagnosis was kept (monotonic seconds).
_diagnosed: dict[tuple[int, str], float] = {}
DIAGNOSIS_INTERVAL = 60.0


def _keep_diagnosis(
    connection_id: int,
    outcome: str,
    secret: str,
    query: list[tuple[str, str]],
    form: list[tuple[str, str]],
    body: bytes,
    signature: str | None,
    token: str | None,
) -> None:
    """Note what this delivery looked like (``g``); ``_write_diagnosis`` stores it once the
    receiver's transaction is over. Throttled so a flood of bad deliveries costs no more than
    one write a minute per connection and outcome."""
    now = time.monotonic()
    key = (connection_id, outcome)
    if now - _diagnosed.get(key, -DIAGNOSIS_INTERVAL) < DIAGNOSIS_INTERVAL:
        return
    _diagnosed[key] = now
    settings = current_app.config["CONNECTOR_SETTINGS"]
    try:
        g.zoho_diagnosis = (connection_id, outcome, signatures.diagnose_zoho(
            secret, query=query, form=form, body=body, headers=list(request.headers.items()),
            signature=signature, token=token,
            encoding=settings.zoho_webhook_signature_encoding, outcome=outcome,
        ))  # fmt: skip
    except Exception:  # the diagnosis is a courtesy; the delivery's answer stands
        log.warning("could not diagnose a webhook of connection %s", connection_id, exc_info=True)


def _write_diagnosis(db: Any) -> None:
    """One audit row ``webhook_auth`` in its own transaction (a refusal rolls the receiver's
    back); a failure here never changes the answer to the sender."""
    pending = g.pop("zoho_diagnosis", None)
    if pending is None:
        return
    connection_id, outcome, details = pending
    try:
        with db.session() as session:
            ledger.audit(
                session, None, connection_id=connection_id,
                step=webhook_secrets.DIAGNOSIS_STEP, outcome=outcome, details=_no_nul(details),
            )  # fmt: skip
    except Exception:
        log.warning(
            "could not keep the webhook diagnosis of connection %s", connection_id, exc_info=True
        )


def _no_nul(value: Any) -> Any:
    """PostgreSQL's JSON refuses NUL; hostile query strings may carry one."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, dict):
        return {_no_nul(k): _no_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nul(v) for v in value]
    return value


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
