"""The record state machine (brief §3) as plain functions over a SQLAlchemy session.

Three guarantees live here, so that every flow gets them for free:

- **One record per source version.** ``get_or_create`` inserts with ON CONFLICT DO NOTHING on the
  natural key, so a webhook and a poll racing for the same version meet on the same row.
- **One worker per record.** ``claim`` is a compare-and-set on ``lease_owner``/``lease_expires_at``
  (one UPDATE; it works the same on PostgreSQL and SQLite, where row locks don't exist). Every
  later write by that worker repeats the check, so a worker whose lease was taken over by the
  sweeper cannot overwrite the new owner's progress (``LeaseLost``).
- **Only legal moves, all audited.** ``transition`` refuses moves outside ``TRANSITIONS`` and
  appends an ``audit_events`` row in the same transaction as the state change.

Callers commit. Nothing here talks to Zoho, Concur, Celery or Flask.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from connector.db import utcnow
from connector.errors import IllegalTransition, LeaseLost
from connector.models import AuditEvent, RecordState, Step, SyncRecord

S = RecordState

#: States in which a record is being worked on by the pipeline (a lease may be held).
ACTIVE_STATES = frozenset({S.RECEIVED, S.FETCHED, S.MAPPED, S.VALIDATED, S.POSTING})
#: States that wait for time or a person; ``resume`` puts them back on their step.
PARKED_STATES = frozenset({S.WAITING, S.NEEDS_REAUTH, S.FAILED, S.DEAD})
TERMINAL_STATES = frozenset({S.POSTED})

_TROUBLE = {S.WAITING, S.NEEDS_REAUTH, S.FAILED, S.DEAD}

#: Legal moves. Parked states go back to the state a step starts from (``resume``).
TRANSITIONS: dict[RecordState, frozenset[RecordState]] = {
    S.RECEIVED: frozenset({S.FETCHED, *_TROUBLE}),
    S.FETCHED: frozenset({S.MAPPED, *_TROUBLE}),
    S.MAPPED: frozenset({S.VALIDATED, *_TROUBLE}),
    S.VALIDATED: frozenset({S.POSTING, *_TROUBLE}),
    # POSTING -> POSTING: a retry after an ambiguous failure re-enters the post step.
    S.POSTING: frozenset({S.POSTED, S.POSTING, *_TROUBLE}),
    S.POSTED: frozenset(),
    S.WAITING: frozenset(
        {S.RECEIVED, S.FETCHED, S.MAPPED, S.VALIDATED, S.WAITING, S.NEEDS_REAUTH, S.FAILED, S.DEAD}
    ),
    S.NEEDS_REAUTH: frozenset(
        {S.RECEIVED, S.FETCHED, S.MAPPED, S.VALIDATED, S.WAITING, S.FAILED, S.DEAD}
    ),
    S.FAILED: frozenset({S.RECEIVED, S.FETCHED, S.MAPPED, S.VALIDATED, S.DEAD}),
    S.DEAD: frozenset({S.RECEIVED, S.FETCHED, S.MAPPED, S.VALIDATED}),
}

#: The state a record must be in for a worker to claim each step.
STEP_INPUT: dict[Step, frozenset[RecordState]] = {
    Step.FETCH: frozenset({S.RECEIVED}),
    Step.MAP: frozenset({S.FETCHED}),
    Step.VALIDATE: frozenset({S.MAPPED}),
    Step.POST: frozenset({S.VALIDATED, S.POSTING}),
    Step.AUDIT: frozenset({S.POSTED}),
}

#: The state a record resumes in when it goes back to a step (after waiting, a replay, re-auth).
#: A record that had started posting resumes in ``validated``: its ``post_attempts`` counter
#: still tells the post step to search the target before posting again.
RESUME_STATE: dict[Step, RecordState] = {
    Step.FETCH: S.RECEIVED,
    Step.MAP: S.FETCHED,
    Step.VALIDATE: S.MAPPED,
    Step.POST: S.VALIDATED,
}

NEXT_STEP: dict[Step, Step | None] = {
    Step.FETCH: Step.MAP,
    Step.MAP: Step.VALIDATE,
    Step.VALIDATE: Step.POST,
    Step.POST: Step.AUDIT,
    Step.AUDIT: None,
}


def check_transition(from_state: str, to_state: str) -> None:
    """Raise ``IllegalTransition`` unless the state machine allows the move."""
    if RecordState(to_state) not in TRANSITIONS[RecordState(from_state)]:
        raise IllegalTransition(f"a record cannot go from {from_state!r} to {to_state!r}")


# --------------------------------------------------------------------------- creation


def get_or_create(
    session: Session,
    *,
    connection_id: int,
    flow: str,
    source_system: str,
    source_type: str,
    source_id: str,
    source_version: str,
    target_system: str,
    source_ref: str | None = None,
    stable_ref: str | None = None,
    source_payload: dict[str, Any] | None = None,
    trigger: str = "webhook",
) -> tuple[SyncRecord, bool]:
    """Return the record for this source version, creating it once; ``(record, created)``.

    A second delivery of the same version returns the first record untouched, whatever state it
    is in: the UNIQUE key, not a read-then-insert, decides, so concurrent callers cannot both
    create.
    """
    now = utcnow()
    values = {
        "connection_id": connection_id,
        "flow": flow,
        "source_system": source_system,
        "source_type": source_type,
        "source_id": source_id,
        "source_version": source_version,
        "source_ref": source_ref,
        "stable_ref": stable_ref,
        "target_system": target_system,
        "state": S.RECEIVED.value,
        "step": Step.FETCH.value,
        "attempts": 0,
        "post_attempts": 0,
        "source_payload": source_payload,
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(SyncRecord)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["connection_id", "flow", "source_id", "source_version"]
        )
        .returning(SyncRecord.id)
    )
    new_id = session.execute(stmt).scalar_one_or_none()
    natural_key = and_(
        SyncRecord.connection_id == connection_id,
        SyncRecord.flow == flow,
        SyncRecord.source_id == source_id,
        SyncRecord.source_version == source_version,
    )
    record = session.execute(
        select(SyncRecord).where(natural_key).execution_options(populate_existing=True)
    ).scalar_one()
    if new_id is not None:
        audit(
            session,
            record,
            step="receive",
            outcome="created",
            to_state=S.RECEIVED,
            message=f"{source_type} {source_ref or source_id} version {source_version} via {trigger}",
        )
    return record, new_id is not None


# --------------------------------------------------------------------------- leases


def claim(
    session: Session,
    record_id: int,
    step: Step,
    owner: str,
    *,
    lease_seconds: float,
    now: dt.datetime | None = None,
) -> SyncRecord | None:
    """Take the record for ``step`` with a lease; ``None`` if another worker holds it or it has
    moved past that step (a redelivered message then has nothing to do).
    """
    now = now or utcnow()
    result = session.execute(
        update(SyncRecord)
        .where(
            SyncRecord.id == record_id,
            SyncRecord.step == step.value,
            SyncRecord.state.in_([s.value for s in STEP_INPUT[step]]),
            or_(
                SyncRecord.lease_owner.is_(None),
                SyncRecord.lease_owner == owner,
                SyncRecord.lease_expires_at < now,
            ),
        )
        .values(
            lease_owner=owner,
            lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
            attempts=SyncRecord.attempts + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.execute(
        select(SyncRecord)
        .where(SyncRecord.id == record_id)
        .execution_options(populate_existing=True)
    ).scalar_one()


def release(session: Session, record_id: int, owner: str) -> bool:
    """Give the lease back (after a step, or before a broker retry) if we still hold it."""
    result = session.execute(
        update(SyncRecord)
        .where(SyncRecord.id == record_id, SyncRecord.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- transitions


def transition(
    session: Session,
    record: SyncRecord,
    to_state: RecordState,
    *,
    owner: str | None,
    step: Step | None = None,
    outcome: str | None = None,
    message: str | None = None,
    error_code: str | None = None,
    error_class: str | None = None,
    release_lease: bool = True,
    task_id: str | None = None,
    audit_step: str | None = None,
    details: dict[str, Any] | None = None,
    **fields: Any,
) -> SyncRecord:
    """Move ``record`` to ``to_state`` if the machine allows it and ``owner`` still holds it.

    ``owner=None`` is for operator actions (replay, sweeper) on records nobody leases; it then
    requires that no live lease exists. The UPDATE is conditional on the state we read, so two
    writers racing on one record cannot both win.
    """
    from_state = RecordState(record.state)
    check_transition(from_state, to_state)
    now = utcnow()
    values: dict[str, Any] = {"state": to_state.value, "updated_at": now, **fields}
    if step is not None:
        values["step"] = step.value
    if release_lease:
        values["lease_owner"] = None
        values["lease_expires_at"] = None
    if to_state in _TROUBLE:
        values.setdefault("last_error_code", error_code)
        values.setdefault("last_error_message", message)
    elif to_state in ACTIVE_STATES or to_state in TERMINAL_STATES:
        values.setdefault("last_error_code", None)
        values.setdefault("last_error_message", None)
        values.setdefault("next_attempt_at", None)
        values.setdefault("waiting_since", None)
    if to_state is S.POSTED:
        values.setdefault("posted_at", now)

    conditions = [SyncRecord.id == record.id, SyncRecord.state == from_state.value]
    if owner is not None:
        conditions.append(SyncRecord.lease_owner == owner)
    else:
        conditions.append(or_(SyncRecord.lease_owner.is_(None), SyncRecord.lease_expires_at < now))
    result = session.execute(
        update(SyncRecord)
        .where(*conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(
            f"record {record.id} changed under us (expected state {from_state.value!r}"
            + (f" leased by {owner!r})" if owner else " and no live lease)")
        )
    for key, value in values.items():
        setattr(record, key, value)
    audit(
        session,
        record,
        step=audit_step or (step.value if step else record.step),
        outcome=outcome or to_state.value,
        from_state=from_state,
        to_state=to_state,
        message=message,
        error_class=error_class,
        task_id=task_id,
        details=details,
    )
    return record


def begin_post(
    session: Session,
    record: SyncRecord,
    *,
    owner: str,
    task_id: str | None = None,
    audit_step: str = "post",
    message: str | None = None,
    **fields: Any,
) -> SyncRecord:
    """Commit ``posting`` (``post_attempts`` + 1) under ``owner``'s lease, before the POST.

    The one write-ahead every flow uses (the pipeline's post step and the vendors engine's
    creates), so a record whose POST may have landed always looks the same to the sweeper
    (``expired_leases``) and to the next attempt (``post_attempts > 0``: search first). The
    caller holds the lease (``claim`` for ``Step.POST``); the lease is kept for the POST.
    """
    return transition(
        session,
        record,
        S.POSTING,
        owner=owner,
        step=Step.POST,
        release_lease=False,
        task_id=task_id,
        audit_step=audit_step,
        outcome="posting",
        message=message,
        post_attempts=record.post_attempts + 1,
        **fields,
    )


def post_outcome_unknown(
    session: Session,
    record_id: int,
    owner: str,
    *,
    reason: str,
    audit_step: str = "post",
    code: str = "unknown",
) -> bool:
    """A POST whose answer was lost: the record stays ``posting`` and gives its lease back.

    Keeping ``posting`` (with ``post_attempts`` > 0) makes the next attempt search the target
    by the stable reference before it posts again. Giving the lease back at once is what lets
    that next attempt happen: a lease left to run out would keep the record invisible to the
    sweeper, and unclaimable by a worker, for a whole lease although nobody is working on it.
    False if ``owner`` no longer held the record (someone else carries on).
    """
    now = utcnow()
    result = session.execute(
        update(SyncRecord)
        .where(
            SyncRecord.id == record_id,
            SyncRecord.state == S.POSTING.value,
            SyncRecord.lease_owner == owner,
        )
        .values(
            lease_owner=None,
            lease_expires_at=None,
            last_error_code=code,
            last_error_message=reason[:2000],
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    record = session.get(SyncRecord, record_id)
    audit(
        session,
        record,
        step=audit_step,
        outcome="unknown",
        message=f"the POST may or may not have landed; searched before any new POST: {reason}"[
            :2000
        ],
    )
    return True


def release_all(session: Session, owner: str) -> int:
    """Give back every lease ``owner`` still holds (a vendors pass ending, however it ends)."""
    result = session.execute(
        update(SyncRecord)
        .where(SyncRecord.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def park(
    session: Session,
    record: SyncRecord,
    *,
    owner: str | None,
    reason: str,
    next_attempt_at: dt.datetime,
    code: str = "waiting",
    error_class: str | None = None,
    task_id: str | None = None,
) -> SyncRecord:
    """Put the record in ``waiting`` with a human reason until ``next_attempt_at``."""
    return transition(
        session,
        record,
        S.WAITING,
        owner=owner,
        message=reason,
        error_code=code,
        error_class=error_class,
        task_id=task_id,
        next_attempt_at=next_attempt_at,
        waiting_since=record.waiting_since or utcnow(),
    )


def resume(
    session: Session, record: SyncRecord, *, reason: str, owner: str | None = None
) -> SyncRecord:
    """Put a parked record back on the step it stopped at (replay, due retry, re-auth)."""
    step = Step(record.step)
    if step is Step.AUDIT:
        raise IllegalTransition(f"record {record.id} is posted; a replay never re-posts it")
    return transition(
        session,
        record,
        RESUME_STATE[step],
        owner=owner,
        outcome="resumed",
        message=reason,
        audit_step="resume",
        next_attempt_at=None,
    )


def audit(
    session: Session,
    record: SyncRecord | None,
    *,
    step: str,
    outcome: str,
    connection_id: int | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    message: str | None = None,
    error_class: str | None = None,
    task_id: str | None = None,
    http_method: str | None = None,
    http_path: str | None = None,
    http_status: int | None = None,
    duration_ms: int | None = None,
    correlation_id: str | None = None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit row. Callers pass redacted text only; nothing here sees a token."""
    event = AuditEvent(
        record_id=record.id if record is not None else None,
        connection_id=record.connection_id if record is not None else connection_id,
        at=utcnow(),
        step=step,
        outcome=outcome,
        from_state=str(from_state) if from_state else None,
        to_state=str(to_state) if to_state else None,
        message=message,
        error_class=error_class,
        task_id=task_id,
        http_method=http_method,
        http_path=http_path,
        http_status=http_status,
        duration_ms=duration_ms,
        correlation_id=correlation_id,
        request_id=request_id,
        details=details,
    )
    session.add(event)
    return event


# --------------------------------------------------------------------------- sweeper queries


def expired_leases(
    session: Session,
    *,
    now: dt.datetime | None = None,
    stale_after: float,
    limit: int = 500,
) -> Sequence[SyncRecord]:
    """Active records nobody is moving: a lease that ran out (worker killed mid-step), or no
    lease and no change for ``stale_after`` seconds (the broker message was lost before any
    worker claimed it).
    """
    now = now or utcnow()
    stale = now - dt.timedelta(seconds=stale_after)
    return (
        session.execute(
            select(SyncRecord)
            .where(
                SyncRecord.state.in_([s.value for s in ACTIVE_STATES]),
                or_(
                    SyncRecord.lease_expires_at < now,
                    and_(SyncRecord.lease_owner.is_(None), SyncRecord.updated_at < stale),
                ),
                or_(SyncRecord.next_attempt_at.is_(None), SyncRecord.next_attempt_at <= now),
            )
            .order_by(SyncRecord.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )


def due_waiting(
    session: Session, *, now: dt.datetime | None = None, limit: int = 500
) -> Sequence[SyncRecord]:
    """Waiting records whose back-off has run out."""
    now = now or utcnow()
    return (
        session.execute(
            select(SyncRecord)
            .where(SyncRecord.state == S.WAITING.value, SyncRecord.next_attempt_at <= now)
            .order_by(SyncRecord.next_attempt_at)
            .limit(limit)
        )
        .scalars()
        .all()
    )


def take_over(session: Session, record: SyncRecord, *, now: dt.datetime | None = None) -> bool:
    """Clear an expired lease so the record can be re-driven; False if someone renewed it."""
    now = now or utcnow()
    result = session.execute(
        update(SyncRecord)
        .where(
            SyncRecord.id == record.id,
            SyncRecord.state == record.state,
            or_(SyncRecord.lease_owner.is_(None), SyncRecord.lease_expires_at < now),
        )
        .values(lease_owner=None, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    audit(
        session,
        record,
        step="sweeper",
        outcome="redriven",
        from_state=record.state,
        to_state=record.state,
        message=f"lease expired or message lost at step {record.step!r}; re-driven "
        f"(attempt {record.attempts + 1})",
    )
    return True


def records_by_ids(session: Session, ids: Iterable[int]) -> Sequence[SyncRecord]:
    return session.execute(select(SyncRecord).where(SyncRecord.id.in_(list(ids)))).scalars().all()
