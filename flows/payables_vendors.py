"""Which Concur vendor a payables document is paid to (issue #6 §5).

The vendors flow owns the Zoho contact -> Concur vendor link; the map step only reads it, asks
that flow to sync a contact it has not linked yet, settles the remit-to address and fills in the
vendor's Concur details from the link's snapshot or one cached lookup (a bill run would otherwise
look the same vendor up once per document).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from connector.db import Database
from connector.errors import ParkError
from connector.models import SyncRecord, VendorLink
from connector.steps import StepContext
from flows import remit_to
from flows.payables_ledger import audit_note
from mappings.payables import VendorRef, map_document
from mappings.payables_rules import PayablesRules
from mappings.zoho_documents import ZohoDocument

log = logging.getLogger(__name__)

#: How long a Concur vendor looked up by code stays trusted in this process (seconds).
VENDOR_CACHE_SECONDS = 300.0


_vendor_cache: dict[tuple[int, str, str], tuple[float, VendorRef]] = {}
_vendor_cache_lock = threading.Lock()


def _link(db: Database, connection_id: int, contact_id: str) -> VendorLink | None:
    with db.session() as session:
        link = session.execute(
            select(VendorLink).where(
                VendorLink.connection_id == connection_id,
                VendorLink.zoho_contact_id == str(contact_id),
            )
        ).scalar_one_or_none()
        if link is not None:
            session.expunge(link)
        return link


def forget_vendors(connection_id: int | None = None) -> None:
    """Drop cached Concur vendors (all, or one connection's)."""
    with _vendor_cache_lock:
        for key in [k for k in _vendor_cache if connection_id is None or k[0] == connection_id]:
            del _vendor_cache[key]


def pick(snapshot: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = snapshot.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def party(doc: ZohoDocument) -> str:
    """``vendor 'Delta Air Lines' (Zoho contact 4600…)``: how waits name the Zoho party."""
    who = "vendor" if doc.kind == "bill" else "customer"
    return f"{who} '{doc.contact_name or '(no name)'}' (Zoho contact {doc.contact_id})"


def vendor_from(
    code: str, address: str, vendor: Mapping[str, Any], fallback_name: str | None
) -> VendorRef:
    return VendorRef(
        code,
        address,
        pick(vendor, "CountryCode", "Country"),
        pick(vendor, "CurrencyCode"),
        pick(vendor, "VendorName", "Name") or fallback_name,
    )


def request_vendor_sync(ctx: StepContext, connection_id: int, contact_id: str) -> bool:
    """Ask the vendors flow to sync one Zoho contact now (issue #6 §5); False if it cannot.

    The vendors flow owns the link; this only calls its ``request_vendor_sync(db, settings,
    connection_id, zoho_contact_id)`` when that flow is installed.
    """
    try:
        from flows import vendors as vendor_flow
    except ImportError:
        log.info("vendors flow not installed; cannot ask it to sync contact %s", contact_id)
        return False
    fn = getattr(vendor_flow, "request_vendor_sync", None)
    if fn is None:
        log.info("vendors flow has no request_vendor_sync; contact %s not requested", contact_id)
        return False
    try:
        fn(ctx.db, ctx.settings, connection_id, contact_id)
    except Exception:  # the record waits either way; the vendor flow's own pass catches up
        log.warning("asking the vendors flow to sync contact %s failed", contact_id, exc_info=True)
        return False
    return True


# --------------------------------------------------------------------------- the handler


def vendor_for(
    ctx: StepContext, record: SyncRecord, doc: ZohoDocument, rules_: PayablesRules
) -> VendorRef:
    """The linked Concur vendor: the link's snapshot, else a cached lookup, else one call.

    Without a link the vendors flow is asked to sync that one contact (it links, or creates
    the vendor in Concur, as its rules say); if it cannot, the record waits with the reason.
    """
    link = _link(ctx.db, record.connection_id, doc.contact_id)
    if link is None:
        if request_vendor_sync(ctx, record.connection_id, doc.contact_id):
            link = _link(ctx.db, record.connection_id, doc.contact_id)
            note = f"asked the vendors flow to sync Zoho contact {doc.contact_id}: " + (
                f"linked to Concur vendor {link.concur_vendor_code}/{link.concur_address_code}"
                if link is not None
                else "still not linked"
            )
            audit_note(ctx, record, "vendor_requested", note)
        if link is None:
            map_document(doc, None, rules_)  # raises the documented vendor ParkError
            raise AssertionError("map_document accepted a missing vendor")  # pragma: no cover
    code = link.concur_vendor_code
    who = party(doc)
    clients: list[Any] = []

    def concur() -> Any:
        if not clients:
            clients.append(ctx.concur(record, "map"))
        return clients[0]

    try:
        remit = remit_to.resolve(
            rules_.remit_to,
            code,
            link.concur_address_code,
            lambda c: concur().vendors.iter_all(vendorCode=c),
            who=who,
            contact_id=doc.contact_id,
        )
        return _vendor_ref(ctx, record, doc, link, remit, concur, rules_.country_code)
    finally:
        for client in clients:
            client.close()


def _vendor_ref(
    ctx: StepContext,
    record: SyncRecord,
    doc: ZohoDocument,
    link: VendorLink,
    remit: remit_to.RemitTo,
    concur: Any,
    rules_country: str | None,
) -> VendorRef:
    """Concur details of the vendor at the settled address: the record a lookup already
    read, the link's snapshot when it describes that very address, else a cached lookup."""
    code, address = link.concur_vendor_code, remit.address_code
    if remit.vendor is not None:
        return vendor_from(code, address, remit.vendor, None)
    snapshot = link.concur_snapshot or {}
    name = pick(snapshot, "VendorName", "Name", "name", "vendor_name")
    country = pick(snapshot, "CountryCode", "country_code")
    currency = pick(snapshot, "CurrencyCode", "currency_code")
    same_address = address.upper() == link.concur_address_code.strip().upper()
    if same_address and name and (country or rules_country):
        return VendorRef(code, address, country, currency, name)  # trust the link
    key = (record.connection_id, code.upper(), address.upper())
    with _vendor_cache_lock:
        cached = _vendor_cache.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    found = [
        v
        for v in concur().vendors.find(vendorCode=code, addressCode=address, limit=10)
        if str(v.get("VendorCode", "")).upper() == code.upper()
        and str(v.get("AddressCode", "")).upper() == address.upper()
    ]
    if not found:
        request_vendor_sync(ctx, record.connection_id, doc.contact_id)
        raise ParkError(
            f"{party(doc)} is linked to Concur vendor {code}/{address}"
            + (" (payables.remit_to)" if remit.source == "rule" else "")
            + ", which is not in Concur",
            dependency="vendor",
            key=doc.contact_id,
        )
    ref = vendor_from(code, address, found[0], name)
    with _vendor_cache_lock:
        _vendor_cache[key] = (time.monotonic() + VENDOR_CACHE_SECONDS, ref)
    return ref
