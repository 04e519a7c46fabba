"""Outgoing Zoho Books workflow webhooks: payload, signature and delivery.

Signature (UNCONFIRMED for Books; Zoho Billing documents it, brief §7): HMAC-SHA256 keyed by the
webhook secret, over the canonical string = EVERY query-string and form parameter of the URL
called (a ``token`` parameter included) sorted by key (then value), each written as key + value
with no separators, followed by the raw body; hex by default, base64 with the sandbox setting
``webhook_signature_encoding``. ``sign`` is the only place this rule lives.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

if TYPE_CHECKING:
    from sandbox.zoho.store import Org, ZohoStore

SIGNATURE_HEADER = "X-Zoho-Webhook-Signature"
DEFAULT_ENTITIES = ("bill", "invoice", "vendor")


def canonical_string(params: Iterable[tuple[str, str]], body: bytes) -> bytes:
    joined = "".join(k + v for k, v in sorted(params))
    return joined.encode("utf-8") + body


def sign(secret: str, params: Iterable[tuple[str, str]], body: bytes, encoding: str = "hex") -> str:
    """HMAC-SHA256 of the canonical string, hex (or base64); the ``X-Zoho-Webhook-Signature``."""
    digest = hmac.new(secret.encode("utf-8"), canonical_string(params, body), hashlib.sha256)
    if encoding == "base64":
        return base64.b64encode(digest.digest()).decode("ascii")
    return digest.hexdigest()


def _entity_matches(entities: Iterable[str], entity: str, data: dict[str, Any]) -> bool:
    wanted = set(entities)
    if entity != "contact":
        return entity in wanted
    if "contact" in wanted:
        return True
    return data.get("contact_type", "customer") in wanted


def build_request(
    config: dict[str, Any], entity: str, data: dict[str, Any], encoding: str = "hex"
) -> tuple[str, bytes, dict[str, str]]:
    """Body and headers exactly as Zoho's "default payload" webhook would send them."""
    url = config["url"]
    params = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    payload = json.dumps({entity: data}, separators=(",", ":"))
    headers = {"User-Agent": "Zoho Books Webhook (sandbox)"}
    headers.update(config.get("headers") or {})
    if config.get("format", "json") == "form":
        body = urlencode({"JSONString": payload}).encode("ascii")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        signed_params = [*params, ("JSONString", payload)]
        signed_body = b""
    else:
        body = payload.encode("utf-8")
        headers["Content-Type"] = "application/json"
        signed_params = list(params)
        signed_body = body
    if config.get("secret"):
        headers[SIGNATURE_HEADER] = sign(config["secret"], signed_params, signed_body, encoding)
    return url, body, headers


def fire(store: ZohoStore, org: Org, entity: str, data: dict[str, Any], event: str) -> bool:
    """Queue a delivery if ``org`` has a webhook for this entity; True if one was queued."""
    config = store.webhooks.get(org.organization_id)
    if not config or not config.get("url"):
        return False
    if not _entity_matches(config.get("entities") or DEFAULT_ENTITIES, entity, data):
        return False
    url, body, headers = build_request(
        config, entity, data, store.settings.get("webhook_signature_encoding", "hex")
    )
    store.state.deliverer.submit(
        url,
        body,
        headers,
        attempts=int(config.get("attempts") or store.settings["webhook_attempts"]),
        meta={
            "vendor": "zoho",
            "organization_id": org.organization_id,
            "entity": entity,
            "event": event,
            "record_id": data.get(f"{entity}_id"),
        },
    )
    return True
