"""Writes to vendors that exist on both sides: links, updates and their snapshots.

A new link is inserted before any update so the pair is known even if a write fails; an
update that fails keeps the old snapshots (the diff base) and remembers the Zoho side as
seen, so the next pass sees the same change again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

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


@dataclass
class _Progress:
    """What the update writes of one pass learned, per pair (keyed by ``id(pair)``)."""

    failed: set[int] = field(default_factory=set)
    new_concur: dict[int, vm.ConcurVendor] = field(default_factory=dict)
    currency_ids: dict[str, str] | None = None


def update_pairs(
    db: Database, plan: Plan, inputs: Inputs, clients: Clients, report: PassReport
) -> None:
    """Write each linked pair's diff: the Concur side in batches first, then the Zoho side one
    contact at a time, then the conflicts' audit rows and the new snapshots (or, where a write
    failed, the Zoho values as seen, so the next pass sees the same changes again)."""
    # Pairs needing nothing but fresh snapshots.
    for pair in plan.pairs:
        if pair.diff.empty and pair.snapshots_stale and pair.link_id is not None:
            save_snapshots(db, pair.link_id, pair.zoho, pair.concur)
    todo = [p for p in plan.pairs if not p.diff.empty and p.link_id is not None]
    if not todo:
        return
    progress = _Progress()
    concur_side = [p for p in todo if p.diff.to_concur]
    _update_concur(db, plan.connection_id, concur_side, clients, report, progress)
    for pair in todo:
        assert pair.link_id is not None
        zoho_after = pair.zoho
        if pair.diff.to_zoho and id(pair) not in progress.failed:
            written = _update_zoho(db, plan, pair, clients, report, progress)
            if written is None:
                continue  # refused: audited as failed; the next pass sees the diff again
            zoho_after = written
        _audit_conflicts(db, plan.connection_id, pair, report)
        if id(pair) in progress.failed:
            # Keep the synced snapshots (the base of the three-way diff) and remember what the
            # Zoho side looks like now, so the next pass sees the same changes again even
            # though its incremental listing will not return this contact.
            _save_pending(db, pair.link_id, pair.zoho)
            continue
        concur_after = progress.new_concur.get(id(pair), pair.concur)
        save_snapshots(
            db, pair.link_id, zoho_after, concur_after, zoho_written=zoho_after is not pair.zoho
        )


def _update_concur(
    db: Database,
    cid: int,
    pairs: list[Pair],
    clients: Clients,
    report: PassReport,
    progress: _Progress,
) -> None:
    """The Concur side: one ``PUT`` per batch; a vendor refused in a batch fails alone."""
    for batch in concur_vendors.batches(pairs):
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
            if not status.ok:
                progress.failed.add(id(pair))
                report.failures.append(f"Concur {pair.concur.ref}: {status.message}")
                audit_vendor(
                    db,
                    cid,
                    "failed",
                    f"Concur vendor {pair.concur.ref} not updated: {status.message}",
                    {"side": "concur", **pair.describe()},
                )
                continue
            echoed = vm.concur_vendor(status.vendor) if status.vendor.get("VendorCode") else None
            values = dict(pair.concur.values)
            values.update(pair.diff.to_concur)
            if echoed is not None:
                values = echoed.values
            progress.new_concur[id(pair)] = vm.ConcurVendor(
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


def _update_zoho(
    db: Database,
    plan: Plan,
    pair: Pair,
    clients: Clients,
    report: PassReport,
    progress: _Progress,
) -> vm.ZohoVendor | None:
    """The Zoho side of one pair: the contact as Zoho now answers it, or None when Zoho refused
    the update (a rate limit or an outage stops the pass instead)."""
    rules = plan.rules
    current = pair.zoho_raw or zoho_contacts.get(clients.zoho, pair.zoho.contact_id)
    currency_id = None
    if "currency_code" in pair.diff.to_zoho:
        if progress.currency_ids is None:
            progress.currency_ids = zoho_contacts.currency_ids(clients.zoho)
        currency_id = progress.currency_ids.get(str(pair.diff.to_zoho["currency_code"]))
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
        progress.failed.add(id(pair))
        report.failures.append(f"Zoho {pair.zoho.contact_id}: {exc}")
        audit_vendor(
            db,
            plan.connection_id,
            "failed",
            f"Zoho contact {pair.zoho.contact_id} not updated: {exc}",
            {"side": "zoho", **pair.describe()},
        )
        return None
    zoho_after = vm.zoho_vendor(contact, rules) if contact else pair.zoho
    report.updated_in_zoho += 1
    audit_vendor(
        db,
        plan.connection_id,
        "updated",
        f"Zoho contact {pair.zoho.contact_id} updated from Concur vendor {pair.concur.ref}",
        {"side": "zoho", **pair.describe()},
    )
    return zoho_after


def _audit_conflicts(db: Database, cid: int, pair: Pair, report: PassReport) -> None:
    """One audit row per field changed on both sides: the master's value won."""
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
