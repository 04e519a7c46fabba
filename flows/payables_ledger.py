"""The payables flow's writes to its own ledger rows while it holds the lease (issue #6).

Several versions of one document can be in flight at once; the post gate serialises them with a
per-document lock and a claim flag, and the steps record side results (flags, references) with
an audit row. All of it checks the lease, so a worker that lost the record writes nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from connector import ledger
from connector.db import utcnow
from connector.errors import LeaseLost
from connector.models import RecordState, SyncRecord
from connector.steps import StepContext
from flows.payables_documents import FLOW


def lock_document(session: Session, record: SyncRecord) -> None:
    """Serialise the versions of one document for the rest of this transaction.

    PostgreSQL: a transaction-scoped advisory lock on the document. SQLite: every transaction
    already starts with ``BEGIN IMMEDIATE`` (one writer at a time), which is the same guarantee.
    """
    if session.get_bind().dialect.name != "postgresql":
        session.execute(select(SyncRecord.id).where(SyncRecord.id == record.id))
        return
    digest = hashlib.sha256(f"{FLOW}:{record.connection_id}:{record.source_id}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def siblings_of(session: Session, record: SyncRecord) -> list[SyncRecord]:
    """The other versions of the record's document, oldest first."""
    return list(
        session.execute(
            select(SyncRecord)
            .where(
                SyncRecord.connection_id == record.connection_id,
                SyncRecord.flow == record.flow,
                SyncRecord.source_id == record.source_id,
                SyncRecord.id != record.id,
            )
            .order_by(SyncRecord.id)
            .execution_options(populate_existing=True)
        )
        .scalars()
        .all()
    )


def claimed(record: SyncRecord) -> bool:
    """A version that passed the post gate in its current post attempt and has not finished
    (it may be calling Concur right now).

    The claim is the ``post_attempts`` value it was taken in: the pipeline bumps that counter
    every time the post step starts, so a claim left over from an earlier attempt (a retry, a
    resume after waiting) does not count until the gate grants it again.
    """
    claim = (record.flags or {}).get("post_claim")
    return (
        record.state == RecordState.POSTING and claim is not None and claim == record.post_attempts
    )


def claim(session: Session, record: SyncRecord, owner: str) -> None:
    live = session.get(SyncRecord, record.id, populate_existing=True)
    assert live is not None
    flags = {**(live.flags or {}), "post_claim": live.post_attempts}
    result = session.execute(
        update(SyncRecord)
        .where(SyncRecord.id == record.id, SyncRecord.lease_owner == owner)
        .values(flags=flags, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"record {record.id} is no longer leased by {owner!r}")
    record.flags = flags


def update_record(
    ctx: StepContext,
    record: SyncRecord,
    *,
    outcome: str | None = None,
    message: str | None = None,
    **values: Any,
) -> None:
    """Write step side results (flags, references) while we hold the lease, with an audit row."""
    with ctx.db.session() as session:
        result = session.execute(
            update(SyncRecord)
            .where(SyncRecord.id == record.id, SyncRecord.lease_owner == ctx.owner)
            .values(**values, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"record {record.id} is no longer leased by {ctx.owner!r}")
        if outcome:
            ledger.audit(
                session, record, step=record.step, outcome=outcome, message=message,
                task_id=ctx.task_id,
            )  # fmt: skip
    for key, value in values.items():
        setattr(record, key, value)


def audit_note(ctx: StepContext, record: SyncRecord, outcome: str, message: str) -> None:
    with ctx.db.session() as session:
        ledger.audit(
            session, record, step=record.step, outcome=outcome, message=message, task_id=ctx.task_id
        )
