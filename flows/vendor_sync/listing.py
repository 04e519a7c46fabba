"""Listing both sides for a pass: what the plan is decided from.

Concur is listed completely every pass; Zoho completely at least daily (or while a vendor
is left unlinked) and otherwise from the cursor, re-reading only contacts changed since
their snapshot. A rate-limited detail read defers the rest of the listing to the next run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from connector.db import Database, utcnow
from connector.errors import (
    NotFoundError,
    RateLimitedError,
)
from connector.models import SyncRecord, VendorLink
from connector.zoho import contacts as zoho_contacts
from flows.vendor_sync.state import (
    Clients,
    known_zoho,
    load_links,
    load_rules,
    open_intents,
    read_cursor,
)
from mappings import vendors as vm

#: A full Zoho listing at least this often, even when incremental passes would do.
FULL_LISTING_EVERY = dt.timedelta(hours=24)


@dataclass
class Inputs:
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


def gather(
    db: Database,
    connection_id: int,
    clients: Clients,
    *,
    only_zoho: str | None,
    full: bool | None,
) -> Inputs:
    rules = load_rules(db, connection_id)
    links = load_links(db, connection_id)
    intents = open_intents(db, connection_id)
    cursor = read_cursor(db, connection_id)

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
        known, known_lmt = known_zoho(snap)
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
        values, known_lmt = known_zoho(snap)
        if listing == "full" or values is None:
            continue
        zoho[cid] = vm.ZohoVendor(cid, values, snap.get("code"), known_lmt)
    return Inputs(
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
