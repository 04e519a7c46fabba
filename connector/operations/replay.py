"""Putting records back to work, and the only deletion an operator may do (docs/operations.md).

Replay restarts a record at the step that failed, verify asks the target whether a posted record
is still there (never posting), purge drops old ``dead`` records and leaves one summary audit row
each; the rules are in ``connector.operations``."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from connector import ledger
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import ConnectorError, IllegalTransition, LeaseLost
from connector.models import AuditEvent, Connection, ConnectionStatus, SyncRecord
from connector.operations import REPLAYABLE_STATES, Enqueue, OperationError, S, iso, select_records
from connector.steps import StepContext

if TYPE_CHECKING:
    from connector.registry import Registry


@dataclass
class ReplayOutcome:
    """What happened to one record: ``queued``, ``found``, ``missing``, ``skipped`` or ``error``."""

    record_id: int
    action: str
    detail: str
    step: str | None = None

    def line(self) -> str:
        """The outcome as one line, the same in ``connector replay`` and ``celery -A tasks dead``."""
        return f"{self.record_id:>8}  {self.action:8} {self.detail}"


@dataclass
class ReplayReport:
    outcomes: list[ReplayOutcome] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for o in self.outcomes if o.action == action)

    @property
    def queued(self) -> list[int]:
        return [o.record_id for o in self.outcomes if o.action == "queued"]

    def counts(self) -> dict[str, int]:
        return dict(Counter(o.action for o in self.outcomes))

    def counts_text(self) -> str:
        """``"2 queued, 1 skipped"`` (empty when nothing happened): the summary every front end
        prints, so the CLI and the ``/ops`` banner count the same way."""
        return ", ".join(f"{n} {a}" for a, n in self.counts().items())

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "records": [o.__dict__ for o in self.outcomes],
        }


def replay(
    db: Database,
    ids: Sequence[int] | None = None,
    *,
    state: str | Iterable[str] | None = None,
    connection: str | int | None = None,
    flow: str | None = None,
    since: dt.datetime | None = None,
    requested_by: str,
    enqueue: Enqueue,
    verify: bool = False,
    allowed_states: Iterable[str] = REPLAYABLE_STATES,
    limit: int | None = None,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> ReplayReport:
    """Restart records at the step they stopped at; verify (never re-post) posted ones.

    ``registry`` (the caller's ``flows.FLOWS``) is what a verification asks for the record's
    flow; without it a posted record is reported as not verifiable, never re-posted.

    Either ``ids`` or a filter (``state``, ``connection``, ``flow``, ``since``) picks the
    records. Each record is resumed in its own transaction, and enqueued only after that commit;
    if the broker refuses, the record is already back in an active state and the sweeper
    re-drives it.
    """
    if not ids and state is None:
        raise OperationError("name record ids, or a --state to replay")
    allowed = {str(s) for s in allowed_states}
    states = [state] if isinstance(state, str) else state
    report = ReplayReport()
    with db.session() as session:
        stmt = select_records(
            session, ids=ids or None, connection=connection, flow=flow, states=states, since=since
        )
        stmt = stmt.order_by(SyncRecord.id)
        if limit:
            stmt = stmt.limit(limit)
        selected = list(session.execute(stmt.with_only_columns(SyncRecord.id)).scalars())
    if ids:
        for missing in sorted(set(ids) - set(selected)):
            report.outcomes.append(
                ReplayOutcome(missing, "skipped", "no such record (or filtered out)")
            )

    to_verify: list[int] = []
    to_enqueue: list[tuple[int, str]] = []
    for record_id in selected:
        with db.session() as session:
            record = session.get(SyncRecord, record_id)
            if record is None:  # purged meanwhile
                report.outcomes.append(ReplayOutcome(record_id, "skipped", "no such record"))
                continue
            outcome = _resume_one(
                session, record, requested_by=requested_by, allowed=allowed, verify=verify
            )
        if outcome is None:
            to_verify.append(record_id)
        else:
            report.outcomes.append(outcome)
            if outcome.action == "queued" and outcome.step:
                to_enqueue.append((record_id, outcome.step))

    for record_id, step in to_enqueue:
        try:
            enqueue(record_id, step)
        except Exception as exc:  # broker down: the sweeper re-drives the resumed record
            for o in report.outcomes:
                if o.record_id == record_id:
                    o.detail += (
                        f"; enqueue failed ({type(exc).__name__}), the sweeper will re-drive it"
                    )
    for record_id in to_verify:
        report.outcomes.append(
            verify_posted(
                db, record_id, requested_by=requested_by, settings=settings, registry=registry
            )
        )
    report.outcomes.sort(key=lambda o: o.record_id)
    return report


def replay_dead(
    db: Database,
    ids: Sequence[int] | None,
    *,
    flow: str | None = None,
    connection: str | int | None = None,
    requested_by: str,
    enqueue: Enqueue,
) -> ReplayReport:
    """``celery -A tasks dead retry``: the given records, or every dead one (``ids`` None),
    narrowed by flow and connection. Only ``dead`` records move; a named record in any other
    state is reported and left alone."""
    return replay(
        db,
        list(ids) if ids else None,
        state=None if ids else S.DEAD.value,
        flow=flow,
        connection=connection,
        requested_by=requested_by,
        enqueue=enqueue,
        allowed_states={S.DEAD.value},
    )


def _resume_one(
    session: Session, record: SyncRecord, *, requested_by: str, allowed: set[str], verify: bool
) -> ReplayOutcome | None:
    """Resume one record; ``None`` means "posted, verify it" (done outside the transaction)."""
    if record.state == S.POSTED:
        if verify:
            return None
        return ReplayOutcome(
            record.id,
            "skipped",
            f"already posted as {record.target_system} {record.target_id}; a replay never re-posts "
            "(use --verify to check the target still has it)",
        )
    if record.state not in allowed:
        if record.state in {s.value for s in REPLAYABLE_STATES}:
            return ReplayOutcome(
                record.id, "skipped", f"state is {record.state}, not {'/'.join(sorted(allowed))}"
            )
        return ReplayOutcome(
            record.id,
            "skipped",
            f"in progress ({record.state}, step {record.step}); the sweeper re-drives it if it stalls",
        )
    if record.state == S.NEEDS_REAUTH:
        connection = session.get(Connection, record.connection_id)
        if connection is not None and connection.status == ConnectionStatus.NEEDS_REAUTH:
            return ReplayOutcome(
                record.id,
                "skipped",
                f"connection {connection.name!r} still needs re-authorization; "
                "its records resume when it is reconnected",
            )
    from_state = record.state
    reason = f"replay requested by {requested_by}"
    try:
        ledger.audit(
            session,
            record,
            step="replay",
            outcome="requested",
            from_state=from_state,
            message=f"{reason} (was {from_state} at step {record.step}: "
            f"{record.last_error_code or '-'})",
        )
        ledger.resume(session, record, reason=reason)
    except (IllegalTransition, LeaseLost) as exc:
        session.rollback()
        return ReplayOutcome(record.id, "error", f"not resumed: {exc}")
    # A fresh attempt budget: the record starts its step over, as if new.
    session.execute(
        update(SyncRecord)
        .where(SyncRecord.id == record.id)
        .values(attempts=0)
        .execution_options(synchronize_session=False)
    )
    return ReplayOutcome(
        record.id,
        "queued",
        f"{from_state} -> {record.state}, restarting at {record.step}",
        record.step,
    )


def verify_posted(
    db: Database,
    record_id: int,
    *,
    requested_by: str,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> ReplayOutcome:
    """Ask the target whether a posted record is still there; audit the answer; never post."""
    with db.session() as session:
        record = session.get(SyncRecord, record_id)
        if record is None:
            return ReplayOutcome(record_id, "skipped", "no such record")
        session.expunge(record)
    if settings is None:
        from connector.config import get_settings

        settings = get_settings()
    ctx = StepContext(db, settings, f"verify:{requested_by}")
    try:
        if registry is None:
            raise KeyError("no flows given to verify with")
        found = registry.handler(record.flow).find_existing(ctx, record)
    except (ConnectorError, KeyError) as exc:
        outcome = ReplayOutcome(
            record_id, "error", f"could not verify: {type(exc).__name__}: {exc}"
        )
    else:
        if found is None:
            outcome = ReplayOutcome(
                record_id,
                "missing",
                f"{record.target_system} has nothing under reference {record.stable_ref or record.source_id!r} "
                f"(was {record.target_id}); not re-posted",
            )
        elif str(found) == str(record.target_id):
            outcome = ReplayOutcome(record_id, "found", f"{record.target_system} {found} is there")
        else:
            outcome = ReplayOutcome(
                record_id,
                "found",
                f"{record.target_system} has {found} under the reference, ledger says {record.target_id}",
            )
    with db.session() as session:
        live = session.get(SyncRecord, record_id)
        if live is not None:
            ledger.audit(
                session,
                live,
                step="verify",
                outcome=outcome.action,
                message=f"verify requested by {requested_by}: {outcome.detail}",
            )
    return outcome


def purge_dead(
    db: Database,
    *,
    older_than: dt.timedelta,
    connection: str | int | None = None,
    flow: str | None = None,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> list[int]:
    """Delete ``dead`` records unchanged for ``older_than``; returns their ids.

    Each purged record leaves one audit row on its connection (``step=purge``) naming the source
    record, its last error and when it died; its own audit rows go with it.
    """
    cutoff = (now or utcnow()) - older_than
    with db.session() as session:
        records = (
            session.execute(
                select_records(
                    session, connection=connection, flow=flow, states=[S.DEAD], before=cutoff
                ).order_by(SyncRecord.id)
            )
            .scalars()
            .all()
        )
        ids = [r.id for r in records]
        if dry_run or not ids:
            return ids
        for r in records:
            ledger.audit(
                session,
                None,
                connection_id=r.connection_id,
                step="purge",
                outcome="purged",
                from_state=r.state,
                message=f"purged dead {r.flow} record {r.id} ({r.source_type} "
                f"{r.source_ref or r.source_id} version {r.source_version}); last error "
                f"{r.last_error_code or '-'}: {r.last_error_message or '-'}",
                details={
                    "record_id": r.id,
                    "flow": r.flow,
                    "source_system": r.source_system,
                    "source_type": r.source_type,
                    "source_id": r.source_id,
                    "source_version": r.source_version,
                    "source_ref": r.source_ref,
                    "attempts": r.attempts,
                    "last_error_code": r.last_error_code,
                    "dead_since": iso(r.updated_at),
                },
            )
        session.flush()
        session.execute(
            delete(SyncRecord)
            .where(SyncRecord.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
        # SQLite without enforced foreign keys would keep orphans; delete them explicitly.
        session.execute(
            delete(AuditEvent)
            .where(AuditEvent.record_id.in_(ids))
            .execution_options(synchronize_session=False)
        )
        return ids
