"""Vendor reconciliation: one vendor master across Zoho Books and SAP Concur (issue #5).

``reconcile`` lists both sides, decides with ``mappings.vendors`` (matching, three-way diff) and
writes what it decided: links in ``vendor_links``, updates on either side, creates on either side.
The guarantees (docs/vendors.md, "No duplicates"):

- **One pass per connection at a time.** :class:`ConnectionLock`: ``pg_try_advisory_lock`` on
  PostgreSQL (held by a dedicated connection, released by the server if the process dies), a
  lease row in ``sync_cursors`` (flow ``vendors-lock``, renewed as the pass goes, expiring after
  ``CONNECTOR_LEASE_SECONDS``) on SQLite. A second pass finds it taken and reports ``busy``.
- **Write-ahead creates.** Every create is a ledger record (flow ``vendors``, source = the vendor
  being copied, ``stable_ref`` = what the target is searched by: ``VendorCode/AddressCode`` in
  Concur, the contact name in Zoho), committed in ``posting`` before the POST. A pass killed
  between POST and link leaves the record in ``posting``; the next pass (or the sweeper, through
  the ``vendors`` flow handler) finds the vendor by code or name and links it instead of
  creating it again.
- **Search before create.** The next pass lists Concur completely and Zoho from before the
  interrupted pass, so a vendor that landed is matched (by code, tax id or name) before any
  create is planned; an open create whose target is not in the listing is also searched by the
  API (``vendorCode``; ``contact_name``) before it is posted again.

Every write leaves ``audit_events`` rows (step ``vendors``): the HTTP call, and one row per
vendor with the outcome (``linked``, ``created``, ``updated``, ``conflict``, ``ambiguous``,
``failed``) and the fields.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from connector import audit, connections, ledger
from connector import rules as rules_store
from connector.concur import vendors as concur_vendors
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import (
    ApiError,
    ConnectorError,
    LeaseLost,
    NotFoundError,
    RateLimitedError,
    ReauthRequired,
    RetryableError,
    TokenExpiredError,
    ValidationFailed,
)
from connector.models import (
    RecordState,
    Step,
    SyncCursor,
    SyncRecord,
    VendorLink,
)
from connector.zoho import contacts as zoho_contacts
from mappings import vendors as vm

log = logging.getLogger(__name__)
S = RecordState

FLOW = "vendors"
LOCK_FLOW = "vendors-lock"
PASS_OWNER_PREFIX = "vendors-pass:"
#: ``source_type`` of the write-ahead create records.
ZOHO_TO_CONCUR = "zoho_contact"  # a Zoho contact copied into Concur
CONCUR_TO_ZOHO = "concur_vendor"  # a Concur vendor copied into Zoho
SYNC_REQUEST = "contact"  # a webhook / on-demand request to sync one Zoho vendor
#: A full Zoho listing at least this often, even when incremental passes would do.
FULL_LISTING_EVERY = dt.timedelta(hours=24)


class VendorSyncBusy(RetryableError):
    """Another vendor pass holds this connection's lock; try again later."""

    def __init__(self, connection_id: int) -> None:
        super().__init__(
            f"connection {connection_id}: a vendor reconciliation is already running",
            system="connector",
        )


# --------------------------------------------------------------------------- the lock


class ConnectionLock:
    """One vendor pass per connection across processes (see module docstring)."""

    def __init__(self, db: Database, connection_id: int, owner: str, lease_seconds: float) -> None:
        self.db = db
        self.connection_id = connection_id
        self.owner = owner
        self.lease_seconds = float(lease_seconds)
        self._conn: Any = None
        self._pg_key = 0
        self.held = False

    def _key(self, conn: Any) -> int:
        """A 64-bit advisory key for (schema, connection): advisory locks are database-wide,
        so two deployments (or test sessions) sharing a database in separate schemas must not
        block each other."""
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar() or ""
        digest = hashlib.sha256(f"{schema}:vendors:{int(self.connection_id)}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def acquire(self) -> bool:
        if self.db.dialect == "postgresql":
            conn = self.db.engine.connect()
            try:
                self._pg_key = self._key(conn)
                got = conn.exec_driver_sql(
                    "SELECT pg_try_advisory_lock(%(k)s)", {"k": self._pg_key}
                ).scalar()
                conn.commit()
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
            if not got:
                conn.close()
                return False
            self._conn = conn
            self.held = True
            return True
        self.held = self._lease(take=True)
        return self.held

    def _lease(self, *, take: bool) -> bool:
        now = utcnow()
        stale = now - dt.timedelta(seconds=self.lease_seconds)
        where = [SyncCursor.connection_id == self.connection_id, SyncCursor.flow == LOCK_FLOW]
        with self.db.session() as session:
            exists = session.execute(select(SyncCursor.id).where(*where)).scalar_one_or_none()
            if exists is None:
                try:
                    with session.begin_nested():
                        session.add(
                            SyncCursor(
                                connection_id=self.connection_id,
                                flow=LOCK_FLOW,
                                cursor=self.owner,
                                updated_at=now,
                            )
                        )
                    return True
                except IntegrityError:
                    pass
            cond = SyncCursor.cursor == self.owner
            if take:
                cond = cond | SyncCursor.cursor.is_(None) | (SyncCursor.updated_at < stale)
            result = session.execute(
                update(SyncCursor)
                .where(*where, cond)
                .values(cursor=self.owner, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def renew(self) -> None:
        """Keep a lease-row lock alive during a long pass (no-op on PostgreSQL)."""
        if self.held and self._conn is None and not self._lease(take=False):
            raise VendorSyncBusy(self.connection_id)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": self._pg_key})
                conn.commit()
                conn.close()
            except Exception:  # a broken connection: drop it, the server frees the lock
                conn.invalidate()
                conn.close()
            return
        with self.db.session() as session:
            session.execute(
                update(SyncCursor)
                .where(
                    SyncCursor.connection_id == self.connection_id,
                    SyncCursor.flow == LOCK_FLOW,
                    SyncCursor.cursor == self.owner,
                )
                .values(cursor=None, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )


def new_owner() -> str:
    return f"{PASS_OWNER_PREFIX}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextmanager
def connection_lock(
    db: Database, connection_id: int, *, lease_seconds: float = 300.0, owner: str | None = None
) -> Iterator[ConnectionLock | None]:
    """``with connection_lock(...) as lock:`` -> the held lock, or None when another has it."""
    lock = ConnectionLock(db, connection_id, owner or new_owner(), lease_seconds)
    if not lock.acquire():
        yield None
        return
    try:
        yield lock
    finally:
        lock.release()


# --------------------------------------------------------------------------- data


@dataclass
class Pair:
    """A linked (or just matched) Zoho vendor and Concur vendor, and what they need."""

    zoho: vm.ZohoVendor
    concur: vm.ConcurVendor
    diff: vm.FieldDiff
    link_id: int | None = None
    matched_by: str | None = None
    zoho_raw: dict[str, Any] | None = None
    concur_raw: dict[str, Any] | None = None
    snapshots_stale: bool = False

    def describe(self) -> dict[str, Any]:
        conflicted = {c.field for c in self.diff.conflicts}
        changes = [
            {"side": "concur", "field": f, "from": self.concur.values.get(f), "to": v,
             "conflict": f in conflicted}
            for f, v in self.diff.to_concur.items()
        ] + [
            {"side": "zoho", "field": f, "from": self.zoho.values.get(f), "to": v,
             "conflict": f in conflicted}
            for f, v in self.diff.to_zoho.items()
        ]  # fmt: skip
        return {
            "zoho_contact_id": self.zoho.contact_id,
            "concur_vendor": self.concur.ref,
            "name": self.zoho.values.get("name"),
            "matched_by": self.matched_by,
            "to_concur": dict(self.diff.to_concur),
            "to_zoho": dict(self.diff.to_zoho),
            "changes": changes,
            "conflicts": [c.as_dict() for c in self.diff.conflicts],
        }


@dataclass
class ConcurCreate:
    zoho: vm.ZohoVendor
    body: dict[str, Any]
    record_id: int | None = None
    problem: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.body['VendorCode']}/{self.body['AddressCode']}"


@dataclass
class ZohoCreate:
    concur: vm.ConcurVendor
    values: dict[str, str | None]
    record_id: int | None = None


@dataclass
class Plan:
    """Everything a pass decided (what ``connector vendors diff`` prints)."""

    connection_id: int
    rules: vm.VendorRules
    listing: str = "full"
    pairs: list[Pair] = field(default_factory=list)
    create_in_concur: list[ConcurCreate] = field(default_factory=list)
    create_in_zoho: list[ZohoCreate] = field(default_factory=list)
    ambiguous: list[vm.Ambiguity] = field(default_factory=list)
    secondary_addresses: list[str] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    zoho_cursor: str | None = None
    zoho_unlinked: int = 0
    recovered: list[tuple[int, str]] = field(default_factory=list)  # (record id, how)

    @property
    def updates(self) -> list[Pair]:
        return [p for p in self.pairs if not p.diff.empty]

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "master": self.rules.master,
            "listing": self.listing,
            "linked": sorted(
                (
                    {
                        "zoho_contact_id": p.zoho.contact_id,
                        "concur_vendor": p.concur.ref,
                        "name": p.zoho.values.get("name"),
                        "matched_by": p.matched_by,
                        "new": p.link_id is None,
                    }
                    for p in self.pairs
                ),
                key=lambda d: (str(d["name"] or ""), d["zoho_contact_id"]),
            ),
            "would_create_in_concur": [
                {
                    "zoho_contact_id": c.zoho.contact_id,
                    "name": c.zoho.values.get("name"),
                    "vendor": c.ref,
                    "problem": c.problem,
                }
                for c in self.create_in_concur
            ],
            "would_create_in_zoho": [
                {"concur_vendor": c.concur.ref, "name": c.values.get("name")}
                for c in self.create_in_zoho
            ],
            "would_update": [p.describe() for p in self.updates],
            "ambiguous": [a.as_dict() for a in self.ambiguous],
            "secondary_addresses": sorted(self.secondary_addresses),
            "missing": self.missing,
            "skipped": self.skipped,
            "deferred": sorted(self.deferred),
        }


@dataclass
class PassReport:
    """What a pass did; ``status`` is ``ok``, ``busy``, ``partial`` (some writes failed or the
    rate limit stopped it; the next pass continues) or ``dry_run``."""

    status: str
    plan: Plan | None = None
    linked: int = 0
    created_in_concur: int = 0
    created_in_zoho: int = 0
    updated_in_concur: int = 0
    updated_in_zoho: int = 0
    conflicts: int = 0
    failures: list[str] = field(default_factory=list)
    #: Zoho vendors whose create in Concur was refused this pass (they stay unlinked).
    zoho_left: int = 0
    #: Create records whose answer was lost (``posting``, lease given back): the caller hands
    #: them to the pipeline's post step, which searches the target before creating again.
    unresolved: list[int] = field(default_factory=list)

    def summary(self) -> str:
        if self.status == "busy":
            return "busy: another vendor reconciliation holds this connection"
        plan = self.plan
        parts = [
            f"{len(plan.pairs) if plan else 0} linked ({self.linked} new)",
            f"created {self.created_in_concur} in Concur, {self.created_in_zoho} in Zoho",
            f"updated {self.updated_in_concur} in Concur, {self.updated_in_zoho} in Zoho",
            f"{self.conflicts} conflict(s)",
            f"{len(plan.ambiguous) if plan else 0} ambiguous",
        ]
        if self.failures:
            parts.append(f"{len(self.failures)} failure(s): " + "; ".join(self.failures[:3]))
        return f"{self.status}: " + ", ".join(parts)


# --------------------------------------------------------------------------- state


def _rules(db: Database, connection_id: int) -> vm.VendorRules:
    return vm.parse_rules(rules_store.section(db, connection_id, FLOW, resolved=True))


def _read_cursor(db: Database, connection_id: int) -> dict[str, Any]:
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


def _write_cursor(db: Database, connection_id: int, data: dict[str, Any]) -> None:
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


def _links(db: Database, connection_id: int) -> list[VendorLink]:
    with db.session() as session:
        rows = (
            session.execute(select(VendorLink).where(VendorLink.connection_id == connection_id))
            .scalars()
            .all()
        )
        for row in rows:
            session.expunge(row)
        return list(rows)


def _open_intents(db: Database, connection_id: int) -> list[SyncRecord]:
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


def _snapshot_values(snapshot: dict[str, Any] | None) -> dict[str, str | None] | None:
    if not snapshot or "values" not in snapshot:
        return None
    return {f: snapshot["values"].get(f) for f in vm.FIELDS}


def _known_zoho(snap: dict[str, Any]) -> tuple[dict[str, str | None] | None, str | None]:
    """The Zoho values we last *saw* (``current``, kept when a write for the pair failed) or
    last synced, with their ``last_modified_time``."""
    if snap.get("current"):
        return {f: snap["current"].get(f) for f in vm.FIELDS}, snap.get("current_lmt")
    return _snapshot_values(snap), snap.get("last_modified_time")


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


def _parse_zoho_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return dt.datetime.strptime(value.replace("Z", "+0000"), fmt)
        except ValueError:
            continue
    return None


def _later(a: str | None, b: str | None) -> str | None:
    ta, tb = _parse_zoho_time(a), _parse_zoho_time(b)
    if ta is None:
        return b if tb is not None else a
    if tb is None:
        return a
    return b if tb > ta else a


def _audit(
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


# --------------------------------------------------------------------------- clients


@dataclass
class Clients:
    zoho: Any
    concur: Any


def make_clients(
    db: Database, settings: Settings, connection_id: int, *, record_calls: bool = True
) -> Clients:
    observer = audit.recorder(db, connection_id=connection_id, step=FLOW) if record_calls else None
    return Clients(
        connections.zoho_client(db, settings, connection_id, on_response=observer),
        connections.concur_client(db, settings, connection_id, on_response=observer),
    )


# --------------------------------------------------------------------------- planning


@dataclass
class _Inputs:
    rules: vm.VendorRules
    links: list[VendorLink]
    intents: list[SyncRecord]
    cursor: dict[str, Any]
    concur_all: list[vm.ConcurVendor]
    concur_raw: dict[tuple[str, str], dict[str, Any]]
    zoho: dict[str, vm.ZohoVendor]  # every Zoho vendor we know this pass (linked ones included)
    zoho_raw: dict[str, dict[str, Any]]  # details fetched this pass
    zoho_listed: set[str]
    zoho_names: dict[str, str]  # contact id -> name, for every listed vendor (deferred too)
    deferred: list[str]
    listing: str
    zoho_cursor: str | None
    only_zoho: str | None


def _gather(
    db: Database,
    connection_id: int,
    clients: Clients,
    *,
    only_zoho: str | None,
    full: bool | None,
) -> _Inputs:
    rules = _rules(db, connection_id)
    links = _links(db, connection_id)
    intents = _open_intents(db, connection_id)
    cursor = _read_cursor(db, connection_id)

    concur_raw: dict[tuple[str, str], dict[str, Any]] = {}
    for item in clients.concur.vendors.iter_all():
        v = vm.concur_vendor(item)
        if v.code and v.address_code:
            concur_raw[v.key] = dict(item)
    concur_all = [vm.concur_vendor(r) for r in concur_raw.values()]

    by_zoho = {link.zoho_contact_id: link for link in links}
    zoho: dict[str, vm.ZohoVendor] = {}
    zoho_raw: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    deferred: list[str] = []
    listed: set[str] = set()
    new_cursor = cursor.get("z")
    if only_zoho is not None:
        listing = "one"
        items = []
        try:
            detail = zoho_contacts.get(clients.zoho, only_zoho)
        except NotFoundError:
            detail = {}
        if detail and detail.get("contact_type") == "vendor":
            items = [detail]
            zoho_raw[only_zoho] = detail
    else:
        last_full = _parse_iso(cursor.get("full_at"))
        want_full = (
            full
            if full is not None
            else (
                not cursor.get("z")
                or bool(cursor.get("unlinked"))
                or last_full is None
                or utcnow() - last_full > FULL_LISTING_EVERY
            )
        )
        listing = "full" if want_full else "incremental"
        since = None if want_full else cursor.get("z")
        items = list(zoho_contacts.iter_vendors(clients.zoho, modified_since=since))
    for item in items:
        cid = str(item.get("contact_id") or "")
        if not cid or item.get("contact_type", "vendor") != "vendor":
            continue
        listed.add(cid)
        names[cid] = str(item.get("contact_name") or "")
        lmt = item.get("last_modified_time")
        if only_zoho is None:
            new_cursor = _later(new_cursor, lmt)
        link = by_zoho.get(cid)
        snap = (link.zoho_snapshot or {}) if link else {}
        if cid in zoho_raw:
            zoho[cid] = vm.zoho_vendor(zoho_raw[cid], rules)
            continue
        known, known_lmt = _known_zoho(snap)
        if link is not None and known and known_lmt == lmt and not snap.get("confirm"):
            zoho[cid] = vm.ZohoVendor(cid, known, snap.get("code"), lmt)
            continue
        if deferred:
            deferred.append(cid)
            continue
        try:
            detail = zoho_contacts.get(clients.zoho, cid)
        except RateLimitedError:
            deferred.append(cid)  # the rest waits for the next run; nothing is decided for it
            continue
        except NotFoundError:
            continue
        zoho_raw[cid] = detail
        zoho[cid] = vm.zoho_vendor(detail, rules)
    # Linked vendors the listing did not return are unchanged since their snapshot (an
    # incremental or single-vendor pass), or gone (a full listing).
    for link in links:
        cid = link.zoho_contact_id
        if cid in zoho or cid in deferred:
            continue
        snap = link.zoho_snapshot or {}
        values, known_lmt = _known_zoho(snap)
        if listing == "full" or values is None:
            continue
        zoho[cid] = vm.ZohoVendor(cid, values, snap.get("code"), known_lmt)
    return _Inputs(
        rules,
        links,
        intents,
        cursor,
        concur_all,
        concur_raw,
        zoho,
        zoho_raw,
        listed,
        names,
        deferred,
        listing,
        new_cursor,
        only_zoho,
    )


def _parse_iso(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _pair(
    z: vm.ZohoVendor,
    c: vm.ConcurVendor,
    link: VendorLink | None,
    rules: vm.VendorRules,
    *,
    matched_by: str | None,
    zoho_raw: dict[str, Any] | None,
    concur_raw: dict[str, Any] | None,
) -> Pair:
    zbase = _snapshot_values(link.zoho_snapshot) if link else None
    cbase = _snapshot_values(link.concur_snapshot) if link else None
    diff = vm.three_way(z.values, c.values, zbase, cbase, rules.master)
    if not rules.to_concur:
        diff.to_concur.clear()
    if not rules.to_zoho:
        diff.to_zoho.clear()
    stale = (
        link is None
        or zbase != z.values
        or cbase != c.values
        or (link.zoho_snapshot or {}).get("last_modified_time") != z.last_modified_time
        or bool((link.zoho_snapshot or {}).get("confirm"))
    )
    return Pair(
        z,
        c,
        diff,
        link_id=link.id if link else None,
        matched_by=matched_by or (link.matched_by if link else None),
        zoho_raw=zoho_raw,
        concur_raw=concur_raw,
        snapshots_stale=stale,
    )


def _lease_live(record: SyncRecord, now: dt.datetime) -> bool:
    return bool(
        record.lease_owner
        and not record.lease_owner.startswith(PASS_OWNER_PREFIX)
        and record.lease_expires_at is not None
        and record.lease_expires_at > now
    )


def plan_pass(inputs: _Inputs, connection_id: int, clients: Clients | None = None) -> Plan:
    """Decide everything from what ``_gather`` read. Only ``clients`` searches (for open
    creates whose target the listings do not show) touch the network."""
    rules = inputs.rules
    plan = Plan(connection_id, rules, listing=inputs.listing, zoho_cursor=inputs.zoho_cursor)
    plan.deferred = list(inputs.deferred)
    now = utcnow()
    links = inputs.links
    linked_concur = {
        (vm.normalize_code(x.concur_vendor_code), vm.normalize_code(x.concur_address_code)): x
        for x in links
    }
    chosen, others = vm.primary_addresses(
        inputs.concur_all,
        rules.address_code,
        linked=[(x.concur_vendor_code, x.concur_address_code) for x in links],
    )
    plan.secondary_addresses = [o.ref for o in others]
    all_codes = {c.key[0] for c in inputs.concur_all}

    # Vendors whose create another worker is finishing right now stay out of this pass.
    busy_zoho: set[str] = set()
    busy_concur: set[tuple[str, str]] = set()
    for rec in inputs.intents:
        if _lease_live(rec, now):
            if rec.source_type == ZOHO_TO_CONCUR:
                busy_zoho.add(rec.source_id)
            else:
                busy_concur.add(_key_of(rec.source_id))
            plan.skipped.append({"record_id": rec.id, "reason": "create in progress elsewhere"})

    # 1. Linked pairs.
    concur_by_key = {v.key: v for v in inputs.concur_all}
    linked_codes = {k[0] for k in linked_concur}
    linked_zoho: set[str] = set()
    for link in links:
        key = (
            vm.normalize_code(link.concur_vendor_code),
            vm.normalize_code(link.concur_address_code),
        )
        linked_zoho.add(link.zoho_contact_id)
        c = concur_by_key.get(key)
        z = inputs.zoho.get(link.zoho_contact_id)
        if inputs.only_zoho is not None and link.zoho_contact_id != inputs.only_zoho:
            continue
        if link.zoho_contact_id in inputs.deferred:
            continue
        if c is None:
            plan.missing.append(
                {
                    "side": "concur",
                    "zoho_contact_id": link.zoho_contact_id,
                    "concur_vendor": f"{link.concur_vendor_code}/{link.concur_address_code}",
                }
            )
            continue
        if z is None:
            if inputs.listing == "full":
                plan.missing.append(
                    {
                        "side": "zoho",
                        "zoho_contact_id": link.zoho_contact_id,
                        "concur_vendor": c.ref,
                    }
                )
            continue
        plan.pairs.append(
            _pair(
                z,
                c,
                link,
                rules,
                matched_by=None,
                zoho_raw=inputs.zoho_raw.get(z.contact_id),
                concur_raw=inputs.concur_raw.get(c.key),
            )
        )

    unlinked_zoho = {
        cid: z for cid, z in inputs.zoho.items() if cid not in linked_zoho and cid not in busy_zoho
    }
    unlinked_concur = {
        c.key: c
        for code, c in chosen.items()
        if code not in linked_codes and c.key not in busy_concur
    }
    if inputs.only_zoho is not None:
        # A single-vendor sync decides only about that vendor.
        unlinked_zoho = {k: v for k, v in unlinked_zoho.items() if k == inputs.only_zoho}

    def take(z: vm.ZohoVendor, c: vm.ConcurVendor, rec: SyncRecord, how: str) -> None:
        plan.pairs.append(_recovered_pair(z, c, rules, inputs))
        unlinked_zoho.pop(z.contact_id, None)
        for k in [k for k in unlinked_concur if k[0] == c.key[0]]:
            unlinked_concur.pop(k)
        plan.recovered.append((rec.id, how))

    # 2. Open creates from an earlier, interrupted pass: find what landed before creating again.
    for rec in inputs.intents:
        if _lease_live(rec, now):
            continue
        if rec.source_type == ZOHO_TO_CONCUR:
            if rec.source_id in linked_zoho:
                plan.recovered.append((rec.id, "already linked"))
                continue
            z = unlinked_zoho.get(rec.source_id)
            key = _key_of(rec.stable_ref or "")
            if z is None or key[0] in linked_codes:
                continue
            c = concur_by_key.get(key)
            if c is None and rec.post_attempts > 0 and clients is not None:
                found = concur_vendors.find(clients.concur, key[0], key[1])
                if found:
                    c = vm.concur_vendor(found[0])
                    inputs.concur_raw[c.key] = found[0]
                    inputs.concur_all.append(c)
            if c is not None:
                take(z, c, rec, f"found Concur vendor {c.ref}")
        else:
            key = _key_of(rec.source_id)
            if key[0] in linked_codes:
                plan.recovered.append((rec.id, "already linked"))
                continue
            c = unlinked_concur.get(key)
            if c is None:
                continue
            z = _find_zoho_created(rec, c, unlinked_zoho)
            if z is None and rec.post_attempts > 0 and clients is not None:
                z = _search_zoho_created(rec, c, clients, inputs)
            if z is not None:
                take(z, c, rec, f"found Zoho contact {z.contact_id}")

    # 3. Match what is left: code rule, tax id, name + country.
    result = vm.match(list(unlinked_zoho.values()), list(unlinked_concur.values()))
    for z, c, stage in result.pairs:
        plan.pairs.append(
            _pair(
                z,
                c,
                None,
                rules,
                matched_by=stage,
                zoho_raw=inputs.zoho_raw.get(z.contact_id),
                concur_raw=inputs.concur_raw.get(c.key),
            )
        )
    plan.ambiguous.extend(result.ambiguous)

    # 4. Creates, unless a create would copy an ambiguity or make a duplicate on the target.
    zoho_name_owner: dict[str, set[str]] = {}
    for cid, z in inputs.zoho.items():
        zoho_name_owner.setdefault(z.name_key, set()).add(cid)
    for cid, name in inputs.zoho_names.items():  # deferred vendors count by their listed name
        zoho_name_owner.setdefault(vm.normalize_name(name), set()).add(cid)
    concur_name_owner: dict[str, set[str]] = {}
    for v in inputs.concur_all:
        concur_name_owner.setdefault(v.name_key, set()).add(v.key[0])
    zoho_codes: dict[str, set[str]] = {}
    for cid, z in inputs.zoho.items():
        if z.code:
            zoho_codes.setdefault(z.code, set()).add(cid)

    if rules.to_concur:
        planned_codes: dict[str, list[vm.ZohoVendor]] = {}
        for z in result.zoho_only:
            planned_codes.setdefault(z.effective_code(), []).append(z)
        for code, zs in sorted(planned_codes.items()):
            if len(zs) > 1:
                plan.ambiguous.append(
                    vm.Ambiguity(
                        "same_code_in_zoho",
                        [z.contact_id for z in zs],
                        [],
                        f"{len(zs)} Zoho vendors carry the code {code!r}",
                    )
                )
                continue
            z = zs[0]
            if code in all_codes:
                plan.ambiguous.append(
                    vm.Ambiguity(
                        "code_taken_in_concur",
                        [z.contact_id],
                        sorted(v.ref for v in inputs.concur_all if v.key[0] == code),
                        f"Concur already has vendor code {code!r}, linked or ambiguous elsewhere",
                    )
                )
                continue
            same_name = zoho_name_owner.get(z.name_key, set()) - {z.contact_id}
            if z.name_key and same_name:
                plan.ambiguous.append(
                    vm.Ambiguity(
                        "same_name_in_zoho",
                        [z.contact_id, *sorted(same_name)],
                        [],
                        f"another Zoho vendor is also called {z.values.get('name')!r}",
                    )
                )
                continue
            taken = concur_name_owner.get(z.name_key, set())
            if z.name_key and taken:
                plan.ambiguous.append(
                    vm.Ambiguity(
                        "name_taken_in_concur",
                        [z.contact_id],
                        sorted(taken),
                        f"Concur already has a vendor called {z.values.get('name')!r}",
                    )
                )
                continue
            plan.create_in_concur.append(_concur_create(z, rules))

    if rules.to_zoho and inputs.only_zoho is None:
        by_name: dict[str, list[vm.ConcurVendor]] = {}
        for c in result.concur_only:
            by_name.setdefault(c.name_key, []).append(c)
        for name_key, cs in sorted(by_name.items()):
            if name_key and len(cs) > 1:
                plan.ambiguous.append(
                    vm.Ambiguity(
                        "same_name_in_concur",
                        [],
                        [c.ref for c in cs],
                        f"{len(cs)} Concur vendors are called {cs[0].values.get('name')!r}",
                    )
                )
                continue
            for c in cs:
                if inputs.deferred:
                    plan.skipped.append(
                        {"concur_vendor": c.ref, "reason": "Zoho listing incomplete this run"}
                    )
                    continue
                owners = zoho_name_owner.get(name_key, set()) if name_key else set()
                if owners:
                    plan.ambiguous.append(
                        vm.Ambiguity(
                            "name_taken_in_zoho",
                            sorted(owners),
                            [c.ref],
                            f"Zoho already has a vendor called {c.values.get('name')!r}",
                        )
                    )
                    continue
                if rules.code_from == "contact_number" and zoho_codes.get(c.key[0]):
                    plan.ambiguous.append(
                        vm.Ambiguity(
                            "code_taken_in_zoho",
                            sorted(zoho_codes[c.key[0]]),
                            [c.ref],
                            f"a Zoho vendor already has contact number {c.code!r}",
                        )
                    )
                    continue
                if not c.values.get("name"):
                    plan.skipped.append({"concur_vendor": c.ref, "reason": "no VendorName"})
                    continue
                plan.create_in_zoho.append(ZohoCreate(c, dict(c.values)))

    planned = {c.zoho.contact_id for c in plan.create_in_concur if not c.problem}
    left = {z.contact_id for z in result.zoho_only} - planned
    left |= {cid for a in plan.ambiguous for cid in a.zoho if cid in unlinked_zoho}
    plan.zoho_unlinked = len(left)
    return plan


def _key_of(ref: str) -> tuple[str, str]:
    code, _, addr = ref.partition("/")
    return vm.normalize_code(code), vm.normalize_code(addr)


def _recovered_pair(
    z: vm.ZohoVendor, c: vm.ConcurVendor, rules: vm.VendorRules, inputs: _Inputs
) -> Pair:
    return _pair(
        z,
        c,
        None,
        rules,
        matched_by="recovered",
        zoho_raw=inputs.zoho_raw.get(z.contact_id),
        concur_raw=inputs.concur_raw.get(c.key),
    )


def _find_zoho_created(
    rec: SyncRecord, c: vm.ConcurVendor, unlinked: dict[str, vm.ZohoVendor]
) -> vm.ZohoVendor | None:
    name = vm.normalize_name(rec.stable_ref or c.values.get("name"))
    for z in unlinked.values():
        if (z.code and z.code == c.key[0]) or (name and z.name_key == name):
            return z
    return None


def _search_zoho_created(
    rec: SyncRecord, c: vm.ConcurVendor, clients: Clients, inputs: _Inputs
) -> vm.ZohoVendor | None:
    """The explicit search-before-create: Zoho contacts named like the open create."""
    name = rec.stable_ref or c.values.get("name") or ""
    if not name:
        return None
    for item in zoho_contacts.find_by_name(clients.zoho, name):
        cid = str(item.get("contact_id"))
        if any(link.zoho_contact_id == cid for link in inputs.links):
            continue
        detail = zoho_contacts.get(clients.zoho, cid)
        inputs.zoho_raw[cid] = detail
        z = vm.zoho_vendor(detail, inputs.rules)
        inputs.zoho[cid] = z
        return z
    return None


def _concur_create(z: vm.ZohoVendor, rules: vm.VendorRules) -> ConcurCreate:
    values = dict(z.values)
    if not values.get("country_code") and rules.default_country:
        values["country_code"] = rules.default_country
    body = vm.concur_body(values, z.effective_code(), rules.address_code)
    problem = None
    try:
        vm.validate_concur_vendor(body)
    except Exception as exc:  # marshmallow ValidationError: reported, never sent
        messages = getattr(exc, "messages", str(exc))
        problem = "; ".join(vm_flatten(messages))
    return ConcurCreate(z, body, problem=problem)


def vm_flatten(messages: Any) -> list[str]:
    return rules_store.flatten(messages)


# --------------------------------------------------------------------------- the pass


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
        inputs = _gather(db, connection_id, clients, only_zoho=only_zoho, full=full)
        return PassReport("dry_run", plan_pass(inputs, connection_id, None))
    owner = owner or new_owner()
    with connection_lock(
        db, connection_id, lease_seconds=settings.lease_seconds, owner=owner
    ) as lock:
        if lock is None:
            return PassReport("busy")
        try:
            clients = clients or make_clients(db, settings, connection_id)
            inputs = _gather(db, connection_id, clients, only_zoho=only_zoho, full=full)
            plan = plan_pass(inputs, connection_id, clients)
            return _execute(db, settings, plan, inputs, clients, lock, owner, hooks or {})
        finally:
            # However the pass ends, it works on no record any more: a lease it kept would hide
            # an open create from the sweeper and from workers until the lease ran out.
            with db.session() as session:
                ledger.release_all(session, owner)


def _hook(hooks: dict[str, Callable[..., None]], name: str, *args: Any) -> None:
    fn = hooks.get(name)
    if fn is not None:
        fn(*args)


def _execute(
    db: Database,
    settings: Settings,
    plan: Plan,
    inputs: _Inputs,
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
    _hook(hooks, "before_writes", plan)

    # Open creates that turned out to have landed.
    for record_id, how in plan.recovered:
        _finish_intent(db, record_id, owner, lease_seconds=settings.lease_seconds, adopted=how)

    # New links first: they are the truth about which vendors are the same.
    for pair in plan.pairs:
        if pair.link_id is None:
            pair.link_id = _insert_link(db, cid, pair)
            if pair.link_id is not None:
                report.linked += 1
    try:
        lock.renew()
        _update_pairs(db, plan, inputs, clients, report)
        lock.renew()
        _create_in_concur(db, settings, plan, clients, report, owner, hooks)
        lock.renew()
        _create_in_zoho(db, settings, plan, inputs, clients, report, owner, lock)
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
            _audit(db, cid, "ambiguous", a.detail or a.reason, a.as_dict())
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
        _write_cursor(db, cid, cursor)
    _audit(
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


def _insert_link(db: Database, connection_id: int, pair: Pair) -> int | None:
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


def _save_snapshots(
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


def _update_pairs(
    db: Database, plan: Plan, inputs: _Inputs, clients: Clients, report: PassReport
) -> None:
    rules = plan.rules
    cid = plan.connection_id
    # Pairs needing nothing but fresh snapshots.
    for pair in plan.pairs:
        if pair.diff.empty and pair.snapshots_stale and pair.link_id is not None:
            _save_snapshots(db, pair.link_id, pair.zoho, pair.concur)
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
                _audit(
                    db,
                    cid,
                    "updated",
                    f"Concur vendor {pair.concur.ref} updated from Zoho contact {pair.zoho.contact_id}",
                    {"side": "concur", **pair.describe()},
                )
            else:
                failed.add(id(pair))
                report.failures.append(f"Concur {pair.concur.ref}: {status.message}")
                _audit(
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
                _audit(
                    db,
                    cid,
                    "failed",
                    f"Zoho contact {pair.zoho.contact_id} not updated: {exc}",
                    {"side": "zoho", **pair.describe()},
                )
                continue
            zoho_after = vm.zoho_vendor(contact, rules) if contact else pair.zoho
            report.updated_in_zoho += 1
            _audit(
                db,
                cid,
                "updated",
                f"Zoho contact {pair.zoho.contact_id} updated from Concur vendor {pair.concur.ref}",
                {"side": "zoho", **pair.describe()},
            )
        for conflict in pair.diff.conflicts:
            report.conflicts += 1
            _audit(
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
        _save_snapshots(
            db, pair.link_id, zoho_after, concur_after, zoho_written=zoho_after is not pair.zoho
        )


# --------------------------------------------------------------------------- creates (write-ahead)


def _intent(
    db: Database,
    connection_id: int,
    *,
    source_type: str,
    source_system: str,
    source_id: str,
    target_system: str,
    stable_ref: str,
    source_ref: str | None,
    payload: dict[str, Any],
    mapped: dict[str, Any],
    owner: str,
    lease_seconds: float,
) -> tuple[int | None, str | None]:
    """Write the create ahead through the ledger's posting path, before the POST.

    The record (flow ``vendors``) is brought to ``validated`` at the post step, claimed with
    ``ledger.claim`` and moved to ``posting`` by ``ledger.begin_post``, exactly as the
    pipeline's post step does it: so the sweeper, the pipeline and the next pass all read it
    the same way (a lease, ``post_attempts`` > 0 means "search before creating again").

    Returns ``(record id, None)``, or ``(None, why)`` when the create must not be sent now: a
    failed earlier attempt for the same vendor data is on record (an operator fixes and replays
    it; the pass does not retry it blindly), or a worker holds the record's lease right now (it
    is re-driving this very create and searches before posting).
    """
    version = "create"
    now = utcnow()
    with db.session() as session:
        # The common case: no earlier attempt. The record is born ``validated`` at the post step
        # (one INSERT, ON CONFLICT DO NOTHING on the ledger's natural key); the state walk below
        # is for a vendor that already has a record.
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        new_id = session.execute(
            insert(SyncRecord)
            .values(
                connection_id=connection_id,
                flow=FLOW,
                source_system=source_system,
                source_type=source_type,
                source_id=source_id,
                source_version=version,
                source_ref=(source_ref or "")[:255] or None,
                stable_ref=stable_ref,
                target_system=target_system,
                state=S.VALIDATED.value,
                step=Step.POST.value,
                attempts=0,
                post_attempts=0,
                source_payload=payload,
                mapped_payload=mapped,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=["connection_id", "flow", "source_id", "source_version"]
            )
            .returning(SyncRecord.id)
        ).scalar_one_or_none()
        if new_id is not None:
            record_id = int(new_id)
        else:
            record_id = _walk_to_validated(
                session,
                connection_id,
                source_type=source_type,
                source_system=source_system,
                source_id=source_id,
                target_system=target_system,
                stable_ref=stable_ref,
                source_ref=source_ref,
                payload=payload,
                mapped=mapped,
            )
            if record_id is None:
                return None, "earlier create failed; fix the vendor or replay its record"
        _free_dead_pass_lease(session, record_id, owner)
        record = ledger.claim(session, record_id, Step.POST, owner, lease_seconds=lease_seconds)
        if record is None:
            return None, "create in progress elsewhere (a worker holds its record)"
        ledger.begin_post(
            session,
            record,
            owner=owner,
            audit_step=FLOW,
            message=f"write-ahead: creating {target_system} vendor {stable_ref!r} "
            f"from {source_system} {source_ref or source_id}"
            + ("; an earlier create may have landed" if record.post_attempts else ""),
            source_payload=payload,
            mapped_payload=mapped,
            stable_ref=stable_ref,
        )
        return record.id, None


def _free_dead_pass_lease(session: Any, record_id: int, owner: str) -> None:
    """Clear a lease left by another *pass* (killed before it could give it back): we hold the
    connection lock, so that pass is not running. A worker's lease is left alone."""
    session.execute(
        update(SyncRecord)
        .where(
            SyncRecord.id == record_id,
            SyncRecord.lease_owner.startswith(PASS_OWNER_PREFIX, autoescape=True),
            SyncRecord.lease_owner != owner,
        )
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def _walk_to_validated(
    session: Any,
    connection_id: int,
    *,
    source_type: str,
    source_system: str,
    source_id: str,
    target_system: str,
    stable_ref: str,
    source_ref: str | None,
    payload: dict[str, Any],
    mapped: dict[str, Any],
) -> int | None:
    """The open create record of a vendor that has one, put back at the post step (``validated``
    or still ``posting``); a new version once the last create posted. None: failed as is."""
    for n in range(1, 50):
        version = "create" if n == 1 else f"create-{n}"
        record, _created = ledger.get_or_create(
            session,
            connection_id=connection_id,
            flow=FLOW,
            source_system=source_system,
            source_type=source_type,
            source_id=source_id,
            source_version=version,
            target_system=target_system,
            source_ref=source_ref,
            stable_ref=stable_ref,
            source_payload=payload,
            trigger="vendors",
        )
        if record.state != S.POSTED.value:
            break
    if record.state in (S.FAILED.value, S.DEAD.value):
        if vm.fingerprint(record.source_payload or {}) == vm.fingerprint(payload):
            return None
        ledger.resume(session, record, reason="vendor changed since the failed create")
    elif record.state == S.WAITING.value or record.state == S.NEEDS_REAUTH.value:
        ledger.resume(session, record, reason="vendor reconciliation retries the create")
    chain = [
        (S.RECEIVED, S.FETCHED, Step.MAP),
        (S.FETCHED, S.MAPPED, Step.VALIDATE),
        (S.MAPPED, S.VALIDATED, Step.POST),
    ]
    for frm, to, step in chain:
        if record.state == frm.value:
            ledger.transition(
                session,
                record,
                to,
                owner=None,
                step=step,
                audit_step=FLOW,
                outcome="ok",
                source_payload=payload,
                mapped_payload=mapped,
            )
    return record.id


def _finish_intent(
    db: Database,
    record_id: int,
    owner: str,
    *,
    lease_seconds: float,
    target_id: str | None = None,
    adopted: str | None = None,
    error: str | None = None,
) -> bool:
    """Close a create record: ``posted`` (created or found on the target) or ``failed``.

    The pass takes the record's lease the ledger's way (``claim``); False when a worker holds
    it right now (it is re-driving the create and will find the vendor itself).
    """
    with db.session() as session:
        record = session.get(SyncRecord, record_id)
        if record is None or record.state == S.POSTED.value:
            return True
        if record.state in (S.WAITING.value, S.FAILED.value, S.DEAD.value, S.NEEDS_REAUTH.value):
            # Resume parked/failed records to the post step first so the moves below are legal.
            ledger.resume(session, record, reason="vendor reconciliation found the vendor")
        _free_dead_pass_lease(session, record_id, owner)
        claimed = ledger.claim(session, record_id, Step.POST, owner, lease_seconds=lease_seconds)
        if claimed is None:
            return False
        record = claimed
        if record.state == S.VALIDATED.value:
            ledger.transition(
                session,
                record,
                S.POSTING,
                owner=owner,
                step=Step.POST,
                audit_step=FLOW,
                outcome="posting",
                release_lease=False,
            )
        if error is not None:
            ledger.transition(
                session,
                record,
                S.FAILED,
                owner=owner,
                audit_step=FLOW,
                message=error[:2000],
                error_code="rejected",
            )
            return True
        ledger.transition(
            session,
            record,
            S.POSTED,
            owner=owner,
            step=Step.AUDIT,
            audit_step=FLOW,
            outcome="adopted" if adopted else "posted",
            message=(adopted and f"found on the target; not created again ({adopted})")
            or f"created {record.target_system} vendor {target_id}",
            target_id=target_id or record.stable_ref,
            attempts=0,
        )
        return True


def _release_intent(
    db: Database, record_id: int, owner: str, reason: str, report: PassReport
) -> None:
    """A create whose outcome is unknown: the record stays ``posting`` (searched before any new
    create) and gives its lease back (``ledger.post_outcome_unknown``), so it is re-driven
    through the pipeline's post step at once (``report.unresolved``, enqueued by the task that
    ran the pass) or by the sweeper, not left to the next pass."""
    with db.session() as session:
        if ledger.post_outcome_unknown(session, record_id, owner, reason=reason, audit_step=FLOW):
            report.unresolved.append(record_id)


def _link_created(
    db: Database,
    connection_id: int,
    record_id: int,
    owner: str,
    zoho: vm.ZohoVendor,
    concur: vm.ConcurVendor,
    *,
    direction: str,
) -> None:
    """Link, snapshot and close the create record in one transaction.

    If the pass lost the record's lease meanwhile (it ran longer than a lease and a worker
    re-drives the create), nothing is written here: that worker searches, finds the vendor just
    created and links it.
    """
    try:
        _link_created_in(db, connection_id, record_id, owner, zoho, concur, direction=direction)
    except LeaseLost:
        log.warning("vendor create record %s: lease lost; its re-drive links it", record_id)


def _link_created_in(
    db: Database,
    connection_id: int,
    record_id: int,
    owner: str,
    zoho: vm.ZohoVendor,
    concur: vm.ConcurVendor,
    *,
    direction: str,
) -> None:
    with db.session() as session:
        link = VendorLink(
            connection_id=connection_id,
            zoho_contact_id=zoho.contact_id,
            concur_vendor_code=concur.code,
            concur_address_code=concur.address_code,
            matched_by="created",
            zoho_snapshot=zoho_snapshot(zoho),
            concur_snapshot=concur_snapshot(concur),
            synced_at=utcnow(),
        )
        session.add(link)
        record = session.get(SyncRecord, record_id)
        assert record is not None
        target = concur.ref if direction == ZOHO_TO_CONCUR else zoho.contact_id
        ledger.transition(
            session,
            record,
            S.POSTED,
            owner=owner,
            step=Step.AUDIT,
            audit_step=FLOW,
            outcome="posted",
            message=f"created {record.target_system} vendor {target}",
            target_id=target,
        )
        ledger.audit(
            session,
            record,
            step=FLOW,
            outcome="created",
            message=(
                f"Concur vendor {concur.ref} created from Zoho contact {zoho.contact_id}"
                if direction == ZOHO_TO_CONCUR
                else f"Zoho contact {zoho.contact_id} created from Concur vendor {concur.ref}"
            ),
            details={
                "side": "concur" if direction == ZOHO_TO_CONCUR else "zoho",
                "zoho_contact_id": zoho.contact_id,
                "concur_vendor": concur.ref,
                "name": zoho.values.get("name"),
            },
        )


def _create_in_concur(
    db: Database,
    settings: Settings,
    plan: Plan,
    clients: Clients,
    report: PassReport,
    owner: str,
    hooks: dict[str, Callable[..., None]],
) -> None:
    cid = plan.connection_id
    ready: list[ConcurCreate] = []
    for create in plan.create_in_concur:
        record_id, why = _intent(
            db,
            cid,
            source_type=ZOHO_TO_CONCUR,
            source_system="zoho",
            source_id=create.zoho.contact_id,
            target_system="concur",
            stable_ref=create.ref,
            source_ref=create.zoho.values.get("name"),
            payload=dict(create.zoho.values),
            mapped=create.body,
            owner=owner,
            lease_seconds=settings.lease_seconds,
        )
        if record_id is None:
            plan.skipped.append({"zoho_contact_id": create.zoho.contact_id, "reason": why})
            continue
        create.record_id = record_id
        if create.problem:
            report.failures.append(f"Zoho {create.zoho.contact_id}: {create.problem}")
            _finish_intent(
                db, record_id, owner, lease_seconds=settings.lease_seconds,
                error=f"not sent: {create.problem}",
            )  # fmt: skip
            continue
        ready.append(create)
    for batch in concur_vendors.batches(ready):
        try:
            statuses = concur_vendors.write_batch(clients.concur, "POST", [c.body for c in batch])
        except (RetryableError, ApiError) as exc:
            for c in batch:
                assert c.record_id is not None
                _release_intent(db, c.record_id, owner, str(exc), report)
            raise
        _hook(hooks, "after_concur_create", batch, statuses)
        for create, status in zip(batch, statuses, strict=True):
            assert create.record_id is not None
            if status.ok:
                echoed = status.vendor if status.vendor.get("VendorCode") else create.body
                concur = vm.concur_vendor({**create.body, **echoed})
                _link_created(
                    db, cid, create.record_id, owner, create.zoho, concur, direction=ZOHO_TO_CONCUR
                )
                report.created_in_concur += 1
            elif status.code == 409:
                # Already there (an earlier POST landed): the next pass finds and links it.
                _release_intent(db, create.record_id, owner, status.message, report)
                report.failures.append(f"Concur {create.ref}: {status.message}")
            else:
                _finish_intent(
                    db, create.record_id, owner, lease_seconds=settings.lease_seconds,
                    error=status.message,
                )  # fmt: skip
                report.failures.append(f"Concur {create.ref}: {status.message}")
                report.zoho_left += 1


def _create_in_zoho(
    db: Database,
    settings: Settings,
    plan: Plan,
    inputs: _Inputs,
    clients: Clients,
    report: PassReport,
    owner: str,
    lock: ConnectionLock,
) -> None:
    if not plan.create_in_zoho:
        return
    cid = plan.connection_id
    rules = plan.rules
    currency_ids = zoho_contacts.currency_ids(clients.zoho)
    for n, create in enumerate(plan.create_in_zoho):
        if n and n % 50 == 0:
            lock.renew()
        c = create.concur
        currency = create.values.get("currency_code")
        currency_id = currency_ids.get(str(currency or "").upper()) if currency else None
        body = vm.zoho_body(create.values, rules, code=c.code, currency_id=currency_id)
        problem = None
        if currency and currency_id is None:
            problem = f"currency {currency} is not enabled in the Zoho organization"
        else:
            try:
                vm.validate_zoho_contact(body)
            except Exception as exc:
                problem = "; ".join(vm_flatten(getattr(exc, "messages", str(exc))))
        record_id, why = _intent(
            db,
            cid,
            source_type=CONCUR_TO_ZOHO,
            source_system="concur",
            source_id=c.ref,
            target_system="zoho",
            stable_ref=str(create.values.get("name") or ""),
            source_ref=create.values.get("name"),
            payload=dict(create.values),
            mapped=body,
            owner=owner,
            lease_seconds=settings.lease_seconds,
        )
        if record_id is None:
            plan.skipped.append({"concur_vendor": c.ref, "reason": why})
            continue
        create.record_id = record_id
        if problem:
            _finish_intent(
                db, record_id, owner, lease_seconds=settings.lease_seconds,
                error=f"not sent: {problem}",
            )  # fmt: skip
            report.failures.append(f"Concur {c.ref}: {problem}")
            continue
        try:
            contact = zoho_contacts.create(clients.zoho, body)
        except (RetryableError, RateLimitedError) as exc:
            _release_intent(db, record_id, owner, str(exc), report)
            raise
        except ApiError as exc:
            _finish_intent(
                db, record_id, owner, lease_seconds=settings.lease_seconds, error=str(exc)
            )
            report.failures.append(f"Concur {c.ref}: {exc}")
            continue
        z = vm.zoho_vendor(contact, rules)
        _link_created(db, cid, record_id, owner, z, c, direction=CONCUR_TO_ZOHO)
        report.created_in_zoho += 1


# --------------------------------------------------------------------------- the ledger path


def _link_only(
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
    from connector.errors import InvalidRequestError

    cid = record.connection_id
    rules = _rules(db, cid)
    with connection_lock(db, cid, lease_seconds=settings.lease_seconds) as lock:
        if lock is None:
            raise VendorSyncBusy(cid)
        if clients is None:
            observer = audit.recorder(db, record_id=record.id, connection_id=cid, step=FLOW)
            clients = Clients(
                connections.zoho_client(db, settings, cid, on_response=observer),
                connections.concur_client(db, settings, cid, on_response=observer),
            )
        if record.source_type == ZOHO_TO_CONCUR:
            link = link_for_zoho(db, cid, record.source_id)
            if link is not None:
                return f"{link.concur_vendor_code}/{link.concur_address_code}"
            contact = zoho_contacts.get(clients.zoho, record.source_id)
            z = vm.zoho_vendor(contact, rules)
            code, addr = _key_of(record.stable_ref or "")
            if not code:
                code, addr = z.effective_code(), rules.address_code
            found = concur_vendors.find(clients.concur, code, addr or None)
            if found:
                c = vm.concur_vendor(found[0])
                _link_only(db, cid, z, c, "recovered")
                return c.ref
            if not create:
                return None
            made = _concur_create(z, rules)
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
            _link_only(db, cid, z, c, "created")
            return c.ref
        # CONCUR_TO_ZOHO
        code, addr = _key_of(record.source_id)
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
                _link_only(db, cid, z, c, "recovered")
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
        _link_only(db, cid, z, c, "created")
        return z.contact_id


# --------------------------------------------------------------------------- one vendor


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


__all__ = [
    "FLOW",
    "ConnectionLock",
    "ConnectorError",
    "PassReport",
    "Plan",
    "VendorSyncBusy",
    "connection_lock",
    "link_for_zoho",
    "reconcile",
    "request_vendor_sync",
    "sync_one",
]
