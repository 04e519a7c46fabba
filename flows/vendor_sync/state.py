"""What the vendors engine keeps between passes, and how it talks to both sides.

Constants of the ``vendors`` flow, the clients of a pass, the listing cursor, the links and
their snapshots (the base of the three-way diff), the open write-ahead records and the
audit row helper: shared by the listing, the plan, its execution and the writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from connector import audit, ledger
from connector import rules as rules_store
from connector.config import Settings
from connector.db import Database, utcnow
from connector.models import RecordState, SyncCursor, SyncRecord, VendorLink
from mappings import vendors as vm

S = RecordState


FLOW = "vendors"


#: ``source_type`` of the write-ahead create records.
ZOHO_TO_CONCUR = "zoho_contact"  # a Zoho contact copied into Concur


CONCUR_TO_ZOHO = "concur_vendor"  # a Concur vendor copied into Zoho


SYNC_REQUEST = "contact"  # a webhook / on-demand request to sync one Zoho vendor


@dataclass
class Clients:
    zoho: Any
    concur: Any


def make_clients(
    db: Database, settings: Settings, connection_id: int, *, record_calls: bool = True
) -> Clients:
    return Clients(
        audit.audited_zoho(db, settings, connection_id, step=FLOW, record_calls=record_calls),
        audit.audited_concur(db, settings, connection_id, step=FLOW, record_calls=record_calls),
    )


def load_rules(db: Database, connection_id: int) -> vm.VendorRules:
    return vm.parse_rules(rules_store.section(db, connection_id, FLOW, resolved=True))


def read_cursor(db: Database, connection_id: int) -> dict[str, Any]:
    with db.session() as session:
        raw = session.execute(
            select(SyncCursor.cursor).where(
                SyncCursor.connection_id == connection_id, SyncCursor.flow == FLOW
            )
        ).scalar_one_or_none()
    try:
        return dict(json.loads(raw)) if raw else {}
    except (ValueError, TypeError):
        return {}


def write_cursor(db: Database, connection_id: int, data: dict[str, Any]) -> None:
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)[:255]
    with db.session() as session:
        row = session.execute(
            select(SyncCursor).where(
                SyncCursor.connection_id == connection_id, SyncCursor.flow == FLOW
            )
        ).scalar_one_or_none()
        if row is None:
            session.add(SyncCursor(connection_id=connection_id, flow=FLOW, cursor=text))
        else:
            row.cursor = text
            row.updated_at = utcnow()


def load_links(db: Database, connection_id: int) -> list[VendorLink]:
    with db.session() as session:
        rows = (
            session.execute(select(VendorLink).where(VendorLink.connection_id == connection_id))
            .scalars()
            .all()
        )
        for row in rows:
            session.expunge(row)
        return list(rows)


def open_intents(db: Database, connection_id: int) -> list[SyncRecord]:
    with db.session() as session:
        rows = (
            session.execute(
                select(SyncRecord).where(
                    SyncRecord.connection_id == connection_id,
                    SyncRecord.flow == FLOW,
                    SyncRecord.source_type.in_([ZOHO_TO_CONCUR, CONCUR_TO_ZOHO]),
                    SyncRecord.state != S.POSTED.value,
                )
            )
            .scalars()
            .all()
        )
        for row in rows:
            session.expunge(row)
        return list(rows)


def snapshot_values(snapshot: dict[str, Any] | None) -> dict[str, str | None] | None:
    if not snapshot or "values" not in snapshot:
        return None
    return {f: snapshot["values"].get(f) for f in vm.FIELDS}


def known_zoho(snap: dict[str, Any]) -> tuple[dict[str, str | None] | None, str | None]:
    """The Zoho values we last *saw* (``current``, kept when a write for the pair failed) or
    last synced, with their ``last_modified_time``."""
    if snap.get("current"):
        return {f: snap["current"].get(f) for f in vm.FIELDS}, snap.get("current_lmt")
    return snapshot_values(snap), snap.get("last_modified_time")


def zoho_snapshot(vendor: vm.ZohoVendor, *, confirm: bool = False) -> dict[str, Any]:
    """What a link remembers of the Zoho side.

    ``confirm``: the values come from our own ``PUT``'s answer. Zoho's ``last_modified_time``
    has one-second precision, so a person's edit in the same second as our update would carry
    the same timestamp; the next pass therefore re-reads such a contact once instead of trusting
    the timestamp. (Contacts we *create* are not re-read: nobody edits a contact in the second
    it comes into existence.)
    """
    snap: dict[str, Any] = {
        "values": dict(vendor.values),
        "code": vendor.code,
        "last_modified_time": vendor.last_modified_time,
    }
    if confirm:
        snap["confirm"] = True
    return snap


def concur_snapshot(vendor: vm.ConcurVendor) -> dict[str, Any]:
    """Canonical values, plus the same under Concur's names (``VendorName``, ``CountryCode``,
    ``CurrencyCode``, ...) so a reader of the link (the payables flow) needs no mapping."""
    flat = {vm.CONCUR_FIELD[f]: v for f, v in vendor.values.items() if v is not None}
    return {
        **flat,
        "VendorCode": vendor.code,
        "AddressCode": vendor.address_code,
        "values": dict(vendor.values),
    }


def audit_vendor(
    db: Database,
    connection_id: int,
    outcome: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    record_id: int | None = None,
) -> None:
    with db.session() as session:
        record = session.get(SyncRecord, record_id) if record_id else None
        ledger.audit(
            session,
            record,
            connection_id=connection_id,
            step=FLOW,
            outcome=outcome,
            message=message[:2000],
            details=details,
        )


def link_for_zoho(db: Database, connection_id: int, zoho_contact_id: str) -> VendorLink | None:
    """The link of a Zoho vendor contact, if any (for the payables flow)."""
    with db.session() as session:
        link = session.execute(
            select(VendorLink).where(
                VendorLink.connection_id == connection_id,
                VendorLink.zoho_contact_id == str(zoho_contact_id),
            )
        ).scalar_one_or_none()
        if link is not None:
            session.expunge(link)
        return link


def zoho_vendor_contact_id(payload: dict[str, Any]) -> str | None:
    """The contact id of a Zoho webhook payload that is a vendor contact, else None."""
    contact = payload.get("contact") if isinstance(payload.get("contact"), dict) else payload
    if not isinstance(contact, dict) or contact.get("contact_type") != "vendor":
        return None
    cid = contact.get("contact_id")
    return str(cid) if cid else None


def key_of(ref: str) -> tuple[str, str]:
    code, _, addr = ref.partition("/")
    return vm.normalize_code(code), vm.normalize_code(addr)


def vm_flatten(messages: Any) -> list[str]:
    return rules_store.flatten(messages)


def hook(hooks: dict[str, Callable[..., None]], name: str, *args: Any) -> None:
    fn = hooks.get(name)
    if fn is not None:
        fn(*args)
