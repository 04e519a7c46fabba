"""A pass end to end: lock, list, plan, write, remember (docs/vendors.md).

``reconcile`` is the entry of beat, ``connector vendors``, the single-vendor sync and the
backfill dry run; ``_execute`` applies a plan in the order that keeps "no duplicates" true:
adopted creates, new links, updates, creates; then the cursor and the pass audit row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from connector import ledger
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import (
    ApiError,
    RateLimitedError,
    ReauthRequired,
    RetryableError,
    TokenExpiredError,
)
from flows.vendor_sync.creates import create_in_concur, create_in_zoho
from flows.vendor_sync.decisions import PassReport, Plan
from flows.vendor_sync.intents import finish_intent
from flows.vendor_sync.listing import Inputs, gather
from flows.vendor_sync.lock import ConnectionLock, VendorSyncBusy, connection_lock, new_owner
from flows.vendor_sync.plan import plan_pass
from flows.vendor_sync.state import Clients, audit_vendor, hook, make_clients, write_cursor
from flows.vendor_sync.updates import insert_link, update_pairs

log = logging.getLogger(__name__)


def reconcile(
    db: Database,
    settings: Settings,
    connection_id: int,
    *,
    dry_run: bool = False,
    only_zoho: str | None = None,
    full: bool | None = None,
    clients: Clients | None = None,
    owner: str | None = None,
    hooks: dict[str, Callable[..., None]] | None = None,
) -> PassReport:
    """Reconcile the connection's vendors (or only ``only_zoho``) now.

    ``dry_run`` decides and returns the plan without writing anything (no lock, no cursor, no
    audit). ``hooks`` lets tests act at named points (``before_writes``, ``after_concur_create``).
    Raises ``RateLimitedError`` at the end when the shared limiter stopped the pass early (so a
    Celery task retries it), after saving what was done.
    """
    if dry_run:
        clients = clients or make_clients(db, settings, connection_id, record_calls=False)
        inputs = gather(db, connection_id, clients, only_zoho=only_zoho, full=full)
        return PassReport("dry_run", plan_pass(inputs, connection_id, None))
    owner = owner or new_owner()
    with connection_lock(
        db, connection_id, lease_seconds=settings.lease_seconds, owner=owner
    ) as lock:
        if lock is None:
            return PassReport("busy")
        try:
            clients = clients or make_clients(db, settings, connection_id)
            inputs = gather(db, connection_id, clients, only_zoho=only_zoho, full=full)
            plan = plan_pass(inputs, connection_id, clients)
            return _execute(db, settings, plan, inputs, clients, lock, owner, hooks or {})
        finally:
            # However the pass ends, it works on no record any more: a lease it kept would hide
            # an open create from the sweeper and from workers until the lease ran out.
            with db.session() as session:
                ledger.release_all(session, owner)


def _execute(
    db: Database,
    settings: Settings,
    plan: Plan,
    inputs: Inputs,
    clients: Clients,
    lock: ConnectionLock,
    owner: str,
    hooks: dict[str, Callable[..., None]],
) -> PassReport:
    cid = plan.connection_id
    report = PassReport("ok", plan)
    limited: RateLimitedError | None = None
    reraise: ApiError | None = None
    aborted = False
    hook(hooks, "before_writes", plan)

    # Open creates that turned out to have landed.
    for record_id, how in plan.recovered:
        finish_intent(db, record_id, owner, lease_seconds=settings.lease_seconds, adopted=how)

    # New links first: they are the truth about which vendors are the same.
    for pair in plan.pairs:
        if pair.link_id is None:
            pair.link_id = insert_link(db, cid, pair)
            if pair.link_id is not None:
                report.linked += 1
    try:
        lock.renew()
        update_pairs(db, plan, inputs, clients, report)
        lock.renew()
        create_in_concur(db, settings, plan, clients, report, owner, hooks)
        lock.renew()
        create_in_zoho(db, settings, plan, inputs, clients, report, owner, lock)
    except RateLimitedError as exc:
        limited = exc
        aborted = True
        report.failures.append(f"rate limited: {exc}")
    except (RetryableError, ApiError) as exc:
        aborted = True
        report.failures.append(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, ReauthRequired | TokenExpiredError):
            reraise = exc  # the connection needs a person; callers park on it

    amb = [a.as_dict() for a in plan.ambiguous]
    amb_hash = hashlib.sha256(json.dumps(amb, sort_keys=True).encode()).hexdigest()[:12]
    if amb and amb_hash != inputs.cursor.get("amb"):
        for a in plan.ambiguous:
            audit_vendor(db, cid, "ambiguous", a.detail or a.reason, a.as_dict())
    if report.failures or plan.deferred:
        report.status = "partial"
    if inputs.only_zoho is None:
        cursor = dict(inputs.cursor)
        cursor["amb"] = amb_hash
        # Per-vendor failures keep what they need in their link or ledger record; only a pass
        # that stopped early (or could not read every Zoho vendor) lists from the old cursor.
        if not aborted and not plan.deferred:
            cursor["z"] = plan.zoho_cursor
            cursor["unlinked"] = plan.zoho_unlinked + report.zoho_left
            if plan.listing == "full":
                cursor["full_at"] = utcnow().isoformat(timespec="seconds")
        write_cursor(db, cid, cursor)
    audit_vendor(
        db,
        cid,
        "pass",
        report.summary(),
        {
            "listing": plan.listing,
            "linked": len(plan.pairs),
            "new_links": report.linked,
            "created_in_concur": report.created_in_concur,
            "created_in_zoho": report.created_in_zoho,
            "updated_in_concur": report.updated_in_concur,
            "updated_in_zoho": report.updated_in_zoho,
            "conflicts": report.conflicts,
            "ambiguous": len(plan.ambiguous),
            "failures": report.failures[:20],
            "scope": inputs.only_zoho,
        },
    )
    if reraise is not None:
        raise reraise
    if limited is not None:
        raise limited
    return report


def sync_one(
    db: Database,
    settings: Settings,
    connection_id: int,
    zoho_contact_id: str,
    *,
    clients: Clients | None = None,
) -> PassReport:
    """Sync one Zoho vendor now (link, update or create it in Concur).

    Costs one Zoho GET plus the Concur vendor listing (one call per 1,000 vendors) and the
    writes. Raises ``VendorSyncBusy`` while a reconciliation of the connection runs (it will
    see the vendor anyway); a Celery task retries.
    """
    report = reconcile(db, settings, connection_id, only_zoho=str(zoho_contact_id), clients=clients)
    if report.status == "busy":
        raise VendorSyncBusy(connection_id)
    return report


def request_vendor_sync(
    db: Database,
    settings: Settings,
    connection_id: int,
    zoho_contact_id: str,
    *,
    enqueue: Callable[[int, str], Any] | None = None,
) -> None:
    """Ask for one vendor to be synced now (the payables flow, when a bill's vendor has no link).

    With ``enqueue`` (e.g. ``tasks.vendors.enqueue_sync_one``) the work goes to the
    ``vendors.sync_one`` Celery task; without it the vendor is synced inline, which is fine in
    a worker step (never call this from a Flask view). A running reconciliation (``busy``) is
    not an error: it will link the vendor itself.
    """
    if enqueue is not None:
        enqueue(connection_id, str(zoho_contact_id))
        return
    try:
        sync_one(db, settings, connection_id, str(zoho_contact_id))
    except VendorSyncBusy:
        log.info("vendor %s: a reconciliation is running; it will handle it", zoho_contact_id)
