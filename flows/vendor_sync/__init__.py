"""Vendor reconciliation: one vendor master across Zoho Books and SAP Concur (issue #5).

A pass lists both sides, decides with ``mappings.vendors`` (matching, three-way diff) and writes
what it decided: links in ``vendor_links``, updates on either side, creates on either side. The
package is split by concept (docs/vendors.md, "Where the code is"):

- ``lock``: one pass per connection at a time (PostgreSQL advisory lock; a lease row on SQLite).
- ``listing``: what a pass reads from both sides (full or incremental Zoho listing).
- ``plan`` and ``decisions``: the matching decisions (``Plan``) and what a pass did
  (``PassReport``).
- ``execute``: a pass end to end (``reconcile``, ``sync_one``, ``request_vendor_sync``).
- ``updates``, ``creates``, ``intents``: the writes; every create is written ahead as a ledger
  record in ``posting`` so a create whose answer was lost is searched for, never made twice.
- ``resolve``: the pipeline's side of a write-ahead create (sweeper re-drive, operator replay).
- ``state``: constants, clients, the cursor, links and snapshots the others share.

The guarantees ("No duplicates" in docs/vendors.md) hold across those modules: the lock, the
write-ahead record, and search before create (an open create whose target is not in the
listing is searched by ``vendorCode`` / ``contact_name`` before it is posted again).

This module names the package's interface for the flow handler, the tasks, the CLI and
backfill; inside the package, modules import each other directly.
"""

from __future__ import annotations

from flows.vendor_sync.decisions import PassReport, Plan
from flows.vendor_sync.execute import reconcile, request_vendor_sync, sync_one
from flows.vendor_sync.lock import ConnectionLock, VendorSyncBusy, connection_lock
from flows.vendor_sync.resolve import resolve_intent
from flows.vendor_sync.state import (
    CONCUR_TO_ZOHO,
    FLOW,
    SYNC_REQUEST,
    ZOHO_TO_CONCUR,
    Clients,
    link_for_zoho,
    zoho_vendor_contact_id,
)

__all__ = [
    "CONCUR_TO_ZOHO",
    "FLOW",
    "SYNC_REQUEST",
    "ZOHO_TO_CONCUR",
    "Clients",
    "ConnectionLock",
    "PassReport",
    "Plan",
    "VendorSyncBusy",
    "connection_lock",
    "link_for_zoho",
    "reconcile",
    "request_vendor_sync",
    "resolve_intent",
    "sync_one",
    "zoho_vendor_contact_id",
]
