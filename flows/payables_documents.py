"""Payables documents in the ledger: identity, versions and the connection's rules (issue #6).

Webhook, poll, fetch and post must agree on which record carries which version of which
document, so they all name a document (``bill:<id>``/``invoice:<id>``), read its version and
load the ``payables:`` rules through these helpers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector import rules
from connector.db import Database
from connector.errors import MappingError, ValidationFailed
from connector.models import MappingRules, SyncRecord
from mappings.payables import document_version, version_from_timestamp
from mappings.payables_rules import PayablesRules, parse_payables_rules
from mappings.zoho_documents import ZohoDocument, load_zoho_document

FLOW = "payables"
SOURCE_SYSTEM = "zoho"
TARGET_SYSTEM = "concur"
KINDS = ("bill", "invoice")

TIMESTAMP_VERSION = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def source_id_of(kind: str, document_id: str) -> str:
    """The ledger ``source_id``: the kind keeps bill and invoice ids apart."""
    return f"{kind}:{document_id}"


def split_source_id(source_id: str) -> tuple[str, str]:
    kind, _, document_id = source_id.partition(":")
    if kind not in KINDS or not document_id:
        raise ValidationFailed(f"not a payables source id: {source_id!r}", ["source_id"])
    return kind, document_id


def hint_version(kind: str, obj: Mapping[str, Any]) -> str:
    """The version a webhook hint or a list item names: the same string the fetched document
    gives (``document_version``), so webhook, poll and fetch agree."""
    raw = obj.get("last_modified_time")
    if isinstance(raw, str) and raw.strip():
        return version_from_timestamp(raw)
    try:
        return document_version(load_zoho_document({kind: dict(obj)}, kind))  # type: ignore[arg-type]
    except ValidationFailed:
        payload = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def label(kind: str, number: Any, contact: Any) -> str:
    """``bill SBX-00001 (Delta Air Lines)``: how lists and alerts name a record."""
    text_ = f"{kind} {number or '?'}"
    return f"{text_} ({contact})" if contact else text_


def contact_name(kind: str, obj: Mapping[str, Any]) -> str | None:
    value = obj.get("vendor_name" if kind == "bill" else "customer_name")
    return str(value).strip() if value else None


def effective_version(record: SyncRecord) -> str:
    """The version of the document the record actually carries (a fetch may have found a newer
    one than the hint announced)."""
    return str((record.flags or {}).get("fetched_version") or record.source_version)


def is_newer(a: SyncRecord, b: SyncRecord) -> bool:
    """Does record ``a`` carry a later version of the document than ``b``?"""
    va, vb = effective_version(a), effective_version(b)
    if TIMESTAMP_VERSION.match(va) and TIMESTAMP_VERSION.match(vb) and va != vb:
        return va > vb
    return a.id > b.id


def load_document(record: SyncRecord) -> ZohoDocument:
    kind = record.source_type if record.source_type in KINDS else None
    return load_zoho_document(record.source_payload or {}, kind)  # type: ignore[arg-type]


def load_rules(db: Database, connection_id: int) -> PayablesRules:
    """The connection's ``payables:`` rules; a missing or invalid section parks the record."""
    section = rules.section(db, connection_id, "payables", resolved=True) or rules.section(
        db, connection_id, "payables"
    )
    if not section:
        raise MappingError(
            f"connection {connection_id} has no payables rules yet: import a rules file with a "
            "payables section (at least payables.owner) with `connector mappings import`",
            dependency="mapping",
            key="payables",
        )
    try:
        return parse_payables_rules(section)
    except ValidationFailed as exc:
        raise MappingError(str(exc), dependency="mapping", key="payables") from exc


def included_kinds(section: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Kinds the rules include; both when the rules are missing or invalid (the records then
    wait for the rules with a readable reason instead of being dropped)."""
    if not section:
        return KINDS
    try:
        parsed = parse_payables_rules(section)
    except ValidationFailed:
        return KINDS
    return tuple(k for k in KINDS if parsed.includes(k))


def rules_section(session: Session, connection_id: int) -> dict[str, Any]:
    row = session.execute(
        select(MappingRules.document).where(MappingRules.connection_id == connection_id)
    ).scalar_one_or_none()
    doc = dict(row or {})
    for key in ("resolved", "source"):
        section = (doc.get(key) or {}).get("payables")
        if section:
            return dict(section)
    return {}


# --------------------------------------------------------------------------- vendors
