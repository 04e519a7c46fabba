"""Writes to vendors that exist on both sides: links, updates and their snapshots.

A new link is inserted before any update so the pair is known even if a write fails; an
update that fails keeps the old snapshots (the diff base) and remembers the Zoho side as
seen, so the next pass sees the same change again.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from connector import ledger
from connector.concur import vendors as concur_vendors
from connector.db import Database, utcnow
from connector.errors import (
    ApiError,
    RateLimitedError,
    RetryableError,
)
from connector.models import VendorLink
from connector.zoho import contacts as zoho_contacts
from flows.vendor_sync.decisions import Pair, PassReport, Plan
from flows.vendor_sync.listing import Inputs
from flows.vendor_sync.state import FLOW, Clients, audit_vendor, concur_snapshot, zoho_snapshot
from mappings import vendors as vm

log = logging.getLogger(__name__)


def insert_link(db: Database, connection_id: int, pair: Pair) -> int | None:
    try:
        with db.session() as session:
            link = VendorLink(
                connection_id=connection_id,
                zoho_contact_id=pair.zoho.contact_id,
                concur_vendor_code=pair.concur.code,
                concur_address_code=pair.concur.address_code,
                matched_by=pair.matched_by,
            )
            session.add(link)
            session.flush()
            ledger.audit(
                session,
                None,
                connection_id=connection_id,
                step=FLOW,
                outcome="linked",
                message=f"Zoho contact {pair.zoho.contact_id} = Concur vendor {pair.concur.ref} "
                f"(matched by {pair.matched_by})",
                details={
                    "zoho_contact_id": pair.zoho.contact_id,
                    "concur_vendor": pair.concur.ref,
                    "matched_by": pair.matched_by,
                },
            )
            return link.id
    except IntegrityError:
        log.warning("vendor link %s already exists", pair.describe())
        return None


def save_snapshots(
    db: Database,
    link_id: int,
    zoho: vm.ZohoVendor,
    concur: vm.ConcurVendor,
    *,
    zoho_written: bool = False,
) -> None:
    with db.session() as session:
        link = session.get(VendorLink, link_id)
        if link is None:
            return
        link.zoho_snapshot = zoho_snapshot(zoho, confirm=zoho_written)
        link.concur_snapshot = concur_snapshot(concur)
        link.synced_at = utcnow()


def _save_pending(db: Database, link_id: int, zoho: vm.ZohoVendor) -> None:
    with db.session() as session:
        link = session.get(VendorLink, link_id)
        if link is None:
            return
        link.zoho_snapshot = {
            **(link.zoho_snapshot or {}),
            "current": dict(zoho.values),
            "current_lmt": zoho.last_modified_time,
        }


def update_pairs(
    db: Database, plan: Plan, inputs: Inputs, clients: Clients, report: PassReport
) -> None:
    rules = plan.rules
    cid = plan.connection_id
    # Pairs needing nothing but fresh snapshots.
    for pair in plan.pairs:
        if pair.diff.empty and pair.snapshots_stale and pair.link_id is not None:
            save_snapshots(db, pair.link_id, pair.zoho, pair.concur)
    todo = [p for p in plan.pairs if not p.diff.empty and p.link_id is not None]
    if not todo:
        return
    failed: set[int] = set()
    new_concur: dict[int, vm.ConcurVendor] = {}
    concur_side = [p for p in todo if p.diff.to_concur]
    for batch in concur_vendors.batches(concur_side):
        bodies = [
            vm.concur_body(
                p.diff.to_concur,
                p.concur.code,
                p.concur.address_code,
                only=p.diff.to_concur.keys(),
                base=p.concur.values,
            )
            for p in batch
        ]
        for body in bodies:
            vm.validate_concur_vendor(body)
        statuses = concur_vendors.write_batch(clients.concur, "PUT", bodies)
        for pair, status in zip(batch, statuses, strict=True):
            if status.ok:
                echoed = (
                    vm.concur_vendor(status.vendor) if status.vendor.get("VendorCode") else None
                )
                values = dict(pair.concur.values)
                values.update(pair.diff.to_concur)
                if echoed is not None:
                    values = echoed.values
                new_concur[id(pair)] = vm.ConcurVendor(
                    pair.concur.code, pair.concur.address_code, values
                )
                report.updated_in_concur += 1
                audit_vendor(
                    db,
                    cid,
                    "updated",
                    f"Concur vendor {pair.concur.ref} updated from Zoho contact {pair.zoho.contact_id}",
                    {"side": "concur", **pair.describe()},
                )
            else:
                failed.add(id(pair))
                report.failures.append(f"Concur {pair.concur.ref}: {status.message}")
                audit_vendor(
                    db,
                    cid,
                    "failed",
                    f"Concur vendor {pair.concur.ref} not updated: {status.message}",
                    {"side": "concur", **pair.describe()},
                )
    currency_ids: dict[str, str] | None = None
    for pair in todo:
        zoho_after = pair.zoho
        if pair.diff.to_zoho and id(pair) not in failed:
            current = pair.zoho_raw or zoho_contacts.get(clients.zoho, pair.zoho.contact_id)
            currency_id = None
            if "currency_code" in pair.diff.to_zoho:
                if currency_ids is None:
                    currency_ids = zoho_contacts.currency_ids(clients.zoho)
                currency_id = currency_ids.get(str(pair.diff.to_zoho["currency_code"]))
            only = [f for f in pair.diff.to_zoho if f != "currency_code" or currency_id is not None]
            body = vm.zoho_body(
                pair.diff.to_zoho, rules, currency_id=currency_id, only=only, current=current
            )
            vm.validate_zoho_contact(body)
            try:
                contact = zoho_contacts.update(clients.zoho, pair.zoho.contact_id, body)
            except (RateLimitedError, RetryableError):
                raise
            except ApiError as exc:
                failed.add(id(pair))
                report.failures.append(f"Zoho {pair.zoho.contact_id}: {exc}")
                audit_vendor(
                    db,
                    cid,
                    "failed",
                    f"Zoho contact {pair.zoho.contact_id} not updated: {exc}",
                    {"side": "zoho", **pair.describe()},
                )
                continue
            zoho_after = vm.zoho_vendor(contact, rules) if contact else pair.zoho
            report.updated_in_zoho += 1
            audit_vendor(
                db,
                cid,
                "updated",
                f"Zoho contact {pair.zoho.contact_id} updated from Concur vendor {pair.concur.ref}",
                {"side": "zoho", **pair.describe()},
            )
        for conflict in pair.diff.conflicts:
            report.conflicts += 1
            audit_vendor(
                db,
                cid,
                "conflict",
                f"{conflict.field} changed on both sides; {conflict.winner} (master) wins, the "
                f"other value {conflict.loser_value!r} is overwritten",
                {
                    "zoho_contact_id": pair.zoho.contact_id,
                    "concur_vendor": pair.concur.ref,
                    **conflict.as_dict(),
                },
            )
        if id(pair) in failed:
            # Keep the synced snapshots (the base of the three-way diff) and remember what the
            # Zoho side looks like now, so the next pass sees the same changes again even
            # though its incremental listing will not return this contact.
            assert pair.link_id is not None
            _save_pending(db, pair.link_id, pair.zoho)
            continue
        concur_after = new_concur.get(id(pair), pair.concur)
        assert pair.link_id is not None
        save_snapshots(
            db, pair.link_id, zoho_after, concur_after, zoho_written=zoho_after is not pair.zoho
        )
