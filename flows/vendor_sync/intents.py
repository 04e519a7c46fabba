"""Write-ahead records of vendor creates, on the ledger's posting path.

Every create is a ledger record (flow ``vendors``, ``stable_ref`` = what the target is
searched by) committed in ``posting`` before the POST, claimed and released the ledger's
way, so the pass, the sweeper and the pipeline's post step read it alike.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from connector import ledger
from connector.db import Database, utcnow
from connector.errors import (
    LeaseLost,
)
from connector.models import RecordState, Step, SyncRecord, VendorLink
from flows.vendor_sync.decisions import PassReport
from flows.vendor_sync.lock import PASS_OWNER_PREFIX
from flows.vendor_sync.state import FLOW, ZOHO_TO_CONCUR, concur_snapshot, zoho_snapshot
from mappings import vendors as vm

log = logging.getLogger(__name__)
S = RecordState


def write_ahead(
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


def finish_intent(
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


def release_intent(
    db: Database, record_id: int, owner: str, reason: str, report: PassReport
) -> None:
    """A create whose outcome is unknown: the record stays ``posting`` (searched before any new
    create) and gives its lease back (``ledger.post_outcome_unknown``), so it is re-driven
    through the pipeline's post step at once (``report.unresolved``, enqueued by the task that
    ran the pass) or by the sweeper, not left to the next pass."""
    with db.session() as session:
        if ledger.post_outcome_unknown(session, record_id, owner, reason=reason, audit_step=FLOW):
            report.unresolved.append(record_id)


def link_created(
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
