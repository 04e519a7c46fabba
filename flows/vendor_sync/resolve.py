"""Finishing a write-ahead create outside a pass (sweeper re-drive or operator replay).

The ``vendors`` flow handler's ``find_existing`` and ``post`` call ``resolve_intent``: under
the connection lock it searches the target first and links what it finds; only ``post``
creates.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from connector import audit, ledger
from connector.concur import vendors as concur_vendors
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import (
    InvalidRequestError,
    ValidationFailed,
)
from connector.models import SyncRecord, VendorLink
from connector.zoho import contacts as zoho_contacts
from flows.vendor_sync.decisions import concur_create
from flows.vendor_sync.lock import VendorSyncBusy, connection_lock
from flows.vendor_sync.state import (
    FLOW,
    ZOHO_TO_CONCUR,
    Clients,
    concur_snapshot,
    key_of,
    link_for_zoho,
    load_rules,
    vm_flatten,
    zoho_snapshot,
)
from mappings import vendors as vm

log = logging.getLogger(__name__)


def link_only(
    db: Database, connection_id: int, zoho: vm.ZohoVendor, concur: vm.ConcurVendor, how: str
) -> None:
    """Link two vendors found or created outside a pass (the pipeline path)."""
    try:
        with db.session() as session:
            session.add(
                VendorLink(
                    connection_id=connection_id,
                    zoho_contact_id=zoho.contact_id,
                    concur_vendor_code=concur.code,
                    concur_address_code=concur.address_code,
                    matched_by=how,
                    zoho_snapshot=zoho_snapshot(zoho),
                    concur_snapshot=concur_snapshot(concur),
                    synced_at=utcnow(),
                )
            )
            session.flush()
            ledger.audit(
                session,
                None,
                connection_id=connection_id,
                step=FLOW,
                outcome="linked",
                message=f"Zoho contact {zoho.contact_id} = Concur vendor {concur.ref} ({how})",
                details={
                    "zoho_contact_id": zoho.contact_id,
                    "concur_vendor": concur.ref,
                    "matched_by": how,
                },
            )
    except IntegrityError:
        log.info("vendor link for %s / %s already exists", zoho.contact_id, concur.ref)


def resolve_intent(
    db: Database,
    settings: Settings,
    record: SyncRecord,
    *,
    create: bool,
    clients: Clients | None = None,
) -> str | None:
    """Finish one write-ahead create outside a pass (sweeper re-drive or operator replay).

    Under the connection lock: if the vendor is linked already, or the target has it (Concur by
    ``VendorCode``/``AddressCode``, Zoho by contact name or code), link it and return the target
    id. Otherwise, with ``create``, build the body from the source as it is now, create the
    vendor and link it. Raises ``VendorSyncBusy`` while a pass runs (the task retries).
    """
    cid = record.connection_id
    rules = load_rules(db, cid)
    with connection_lock(db, cid, lease_seconds=settings.lease_seconds) as lock:
        if lock is None:
            raise VendorSyncBusy(cid)
        if clients is None:
            clients = Clients(
                audit.audited_zoho(db, settings, cid, step=FLOW, record_id=record.id),
                audit.audited_concur(db, settings, cid, step=FLOW, record_id=record.id),
            )
        if record.source_type == ZOHO_TO_CONCUR:
            return _resolve_in_concur(db, cid, record, rules, clients, create=create)
        return _resolve_in_zoho(db, cid, record, rules, clients, create=create)


def _resolve_in_concur(
    db: Database,
    cid: int,
    record: SyncRecord,
    rules: vm.VendorRules,
    clients: Clients,
    *,
    create: bool,
) -> str | None:
    """A Zoho contact copied into Concur: the link, else the Concur vendor by code and
    address, else (with ``create``) a new vendor from the contact as it is now."""
    link = link_for_zoho(db, cid, record.source_id)
    if link is not None:
        return f"{link.concur_vendor_code}/{link.concur_address_code}"
    contact = zoho_contacts.get(clients.zoho, record.source_id)
    z = vm.zoho_vendor(contact, rules)
    code, addr = key_of(record.stable_ref or "")
    if not code:
        code, addr = z.effective_code(), rules.address_code
    found = concur_vendors.find(clients.concur, code, addr or None)
    if found:
        c = vm.concur_vendor(found[0])
        link_only(db, cid, z, c, "recovered")
        return c.ref
    if not create:
        return None
    made = concur_create(z, rules)
    made.body["VendorCode"], made.body["AddressCode"] = code, addr or rules.address_code
    if made.problem:
        raise ValidationFailed(f"Concur vendor not sent: {made.problem}", [made.problem])
    status = concur_vendors.write_batch(clients.concur, "POST", [made.body])[0]
    if not status.ok:
        raise InvalidRequestError(
            f"Concur refused vendor {made.ref}: {status.message}",
            system="concur",
            status=status.code or 400,
        )
    c = vm.concur_vendor({**made.body, **(status.vendor or {})})
    link_only(db, cid, z, c, "created")
    return c.ref


def _resolve_in_zoho(
    db: Database,
    cid: int,
    record: SyncRecord,
    rules: vm.VendorRules,
    clients: Clients,
    *,
    create: bool,
) -> str | None:
    """A Concur vendor copied into Zoho: the link, else an unlinked Zoho contact of that
    name, else (with ``create``) a new contact from the Concur vendor as it is now."""
    code, addr = key_of(record.source_id)
    with db.session() as session:
        link = session.execute(
            select(VendorLink).where(
                VendorLink.connection_id == cid,
                func.upper(VendorLink.concur_vendor_code) == code,
            )
        ).scalar_one_or_none()
        if link is not None:
            return link.zoho_contact_id
    found = concur_vendors.find(clients.concur, code, addr)
    if not found:
        raise ValidationFailed(f"Concur vendor {code}/{addr} no longer exists", ["gone"])
    c = vm.concur_vendor(found[0])
    name = record.stable_ref or c.values.get("name") or ""
    for item in zoho_contacts.find_by_name(clients.zoho, name) if name else []:
        cid_z = str(item.get("contact_id"))
        if link_for_zoho(db, cid, cid_z) is None:
            z = vm.zoho_vendor(zoho_contacts.get(clients.zoho, cid_z), rules)
            link_only(db, cid, z, c, "recovered")
            return z.contact_id
    if not create:
        return None
    currency = c.values.get("currency_code")
    currency_id = zoho_contacts.currency_ids(clients.zoho).get(str(currency or "")) or None
    body = vm.zoho_body(c.values, rules, code=c.code, currency_id=currency_id)
    try:
        vm.validate_zoho_contact(body)
    except Exception as exc:
        problem = "; ".join(vm_flatten(getattr(exc, "messages", str(exc))))
        raise ValidationFailed(f"Zoho contact not sent: {problem}", [problem]) from None
    z = vm.zoho_vendor(zoho_contacts.create(clients.zoho, body), rules)
    link_only(db, cid, z, c, "created")
    return z.contact_id
