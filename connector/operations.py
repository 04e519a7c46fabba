"""What an operator does to the ledger: list, show, replay, verify, purge, and see problems grouped.

One implementation behind three front ends: the ``connector`` CLI (``connector replay``,
``connector records``), the ``celery -A tasks dead`` commands and the ``/ops`` page. Nothing here
imports Click, Celery or Flask; whoever needs a record put back on the queue passes ``enqueue``
(``tasks.pipeline.enqueue`` in production, a list's ``append`` in a test).

Rules every front end inherits:

- **A replay restarts a record at the step that failed** (``ledger.resume``), with its attempt
  counter reset, and appends "replay requested by <who>" to its audit trail. The record keeps
  its id, its stable reference and its ``post_attempts``, so a record whose earlier POST may have
  landed searches the target before posting again.
- **A posted record is never re-posted.** ``verify`` asks the flow's ``find_existing`` whether
  the target still has it and reports found / missing; it never posts.
- **Purge deletes only ``dead`` records** older than the given age. Their audit rows go with
  them (foreign-key cascade); one summary row per purged record stays on the connection's trail,
  so the history says what was dropped and why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.orm import Session

from connector import ledger
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import ConnectorError, IllegalTransition, LeaseLost
from connector.models import (
    AuditEvent,
    Connection,
    ConnectionStatus,
    Credential,
    RecordState,
    SyncRecord,
)
from connector.steps import StepContext

if TYPE_CHECKING:
    from connector.registry import Registry

S = RecordState

#: States a replay may restart (a record in an active state is the sweeper's business).
REPLAYABLE_STATES = frozenset({S.WAITING, S.NEEDS_REAUTH, S.FAILED, S.DEAD})
#: States shown as problems on ``/ops`` and in the alerts.
PROBLEM_STATES = (S.NEEDS_REAUTH, S.DEAD, S.FAILED, S.WAITING)

Enqueue = Callable[[int, str], Any]


class OperationError(ConnectorError):
    """Raised when an operator's request names something that does not exist or cannot be done."""

    failure_type = "config"


# =========================================================================== selection


def resolve_connection(session: Session, ref: str | int) -> Connection:
    """A connection by id or by name; ``OperationError`` if there is none."""
    text = str(ref).strip()
    conn = None
    if text.isdigit():
        conn = session.get(Connection, int(text))
    if conn is None:
        conn = session.execute(
            select(Connection).where(Connection.name == text)
        ).scalar_one_or_none()
    if conn is None:
        raise OperationError(f"no connection {text!r} (give its id or name)")
    return conn


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``2h``, ``3d``, ``90m``, ``1w`` (that long ago) or an ISO date/time (UTC if no zone)."""
    now = now or utcnow()
    match = _DURATION.match(text)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        return now - dt.timedelta(seconds=seconds)
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise OperationError(
            f"--since {text!r}: use a duration (30m, 2h, 3d, 1w) or an ISO date (2026-11-28)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _query(
    session: Session,
    *,
    ids: Sequence[int] | None = None,
    connection: str | int | None = None,
    flow: str | None = None,
    states: Iterable[str] | None = None,
    since: dt.datetime | None = None,
    before: dt.datetime | None = None,
) -> Select[tuple[SyncRecord]]:
    stmt = select(SyncRecord)
    if ids is not None:
        stmt = stmt.where(SyncRecord.id.in_(list(ids)))
    if connection is not None:
        stmt = stmt.where(SyncRecord.connection_id == resolve_connection(session, connection).id)
    if flow:
        stmt = stmt.where(SyncRecord.flow == flow)
    if states is not None:
        stmt = stmt.where(SyncRecord.state.in_([str(s) for s in states]))
    if since is not None:
        stmt = stmt.where(SyncRecord.updated_at >= since)
    if before is not None:
        stmt = stmt.where(SyncRecord.updated_at < before)
    return stmt


def _connection_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = session.execute(select(Connection.id, Connection.name).where(Connection.id.in_(wanted)))
    return {cid: name for cid, name in rows}


# =========================================================================== list / show


def summarize(record: SyncRecord, connection_name: str | None = None) -> dict[str, Any]:
    """One line's worth of a record (lists, JSON output, alert samples)."""
    return {
        "id": record.id,
        "connection_id": record.connection_id,
        "connection": connection_name,
        "flow": record.flow,
        "source": f"{record.source_system} {record.source_type}",
        "source_id": record.source_id,
        "source_ref": record.source_ref,
        "source_version": record.source_version,
        "state": record.state,
        "step": record.step,
        "attempts": record.attempts,
        "post_attempts": record.post_attempts,
        "target_system": record.target_system,
        "target_id": record.target_id,
        "last_error_code": record.last_error_code,
        "last_error_message": record.last_error_message,
        "next_attempt_at": _iso(record.next_attempt_at),
        "waiting_since": _iso(record.waiting_since),
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "posted_at": _iso(record.posted_at),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def list_records(
    db: Database,
    *,
    connection: str | int | None = None,
    flow: str | None = None,
    state: str | Iterable[str] | None = None,
    since: dt.datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first (by last change)."""
    states = [state] if isinstance(state, str) else state
    with db.session() as session:
        stmt = _query(session, connection=connection, flow=flow, states=states, since=since)
        records = (
            session.execute(
                stmt.order_by(SyncRecord.updated_at.desc(), SyncRecord.id.desc()).limit(limit)
            )
            .scalars()
            .all()
        )
        names = _connection_names(session, {r.connection_id for r in records})
        return [summarize(r, names.get(r.connection_id)) for r in records]


def show_record(db: Database, record_id: int, *, sandbox_url: str | None = None) -> dict[str, Any]:
    """Everything about one record: summary, payloads, audit trail, target link, fix hint."""
    with db.session() as session:
        record = session.get(SyncRecord, record_id)
        if record is None:
            raise OperationError(f"no record {record_id}")
        connection = session.get(Connection, record.connection_id)
        trail = (
            session.execute(
                select(AuditEvent).where(AuditEvent.record_id == record_id).order_by(AuditEvent.id)
            )
            .scalars()
            .all()
        )
        api_base = None
        if record.target_system in ("zoho", "concur"):
            api_base = session.execute(
                select(Credential.api_base_url).where(
                    Credential.connection_id == record.connection_id,
                    Credential.system == record.target_system,
                )
            ).scalar_one_or_none()
        out = summarize(record, connection.name if connection else None)
        error_class = next((a.error_class for a in reversed(trail) if a.error_class), None)
        out.update(
            stable_ref=record.stable_ref,
            source_payload=record.source_payload,
            mapped_payload=record.mapped_payload,
            error_class=error_class,
            hint=fix_hint(record.state, record.last_error_code, error_class, connection)
            if record.state in {s.value for s in PROBLEM_STATES}
            else None,
            target_url=target_url(record, connection, sandbox_url=sandbox_url, api_base=api_base),
            replayable=record.state in {s.value for s in REPLAYABLE_STATES},
            audit=[_audit_dict(a) for a in trail],
        )
        return out


def _audit_dict(a: AuditEvent) -> dict[str, Any]:
    return {
        "id": a.id,
        "at": _iso(a.at),
        "step": a.step,
        "outcome": a.outcome,
        "from_state": a.from_state,
        "to_state": a.to_state,
        "message": a.message,
        "error_class": a.error_class,
        "http": " ".join(str(p) for p in (a.http_method, a.http_path, a.http_status) if p) or None,
        "duration_ms": a.duration_ms,
        "request_id": a.request_id,
        "task_id": a.task_id,
        "details": a.details,
    }


# =========================================================================== replay


@dataclass
class ReplayOutcome:
    """What happened to one record: ``queued``, ``found``, ``missing``, ``skipped`` or ``error``."""

    record_id: int
    action: str
    detail: str
    step: str | None = None


@dataclass
class ReplayReport:
    outcomes: list[ReplayOutcome] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for o in self.outcomes if o.action == action)

    @property
    def queued(self) -> list[int]:
        return [o.record_id for o in self.outcomes if o.action == "queued"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(Counter(o.action for o in self.outcomes)),
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
        stmt = _query(
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


# =========================================================================== purge


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
                _query(
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
                    "dead_since": _iso(r.updated_at),
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


# =========================================================================== overview


def connections_overview(db: Database) -> list[dict[str, Any]]:
    with db.session() as session:
        conns = session.execute(select(Connection).order_by(Connection.name)).scalars().all()
        problems = dict(
            session.execute(
                select(SyncRecord.connection_id, func.count())
                .where(SyncRecord.state.in_([s.value for s in PROBLEM_STATES]))
                .group_by(SyncRecord.connection_id)
            ).all()
        )
        return [
            {
                "id": c.id,
                "name": c.name,
                "status": c.status,
                "status_reason": c.status_reason,
                "zoho_organization_id": c.zoho_organization_id,
                "concur_company_id": c.concur_company_id,
                "problems": problems.get(c.id, 0),
                "hint": _reauth_hint(c) if c.status == ConnectionStatus.NEEDS_REAUTH else None,
            }
            for c in conns
        ]


def counts_by_flow_state(
    db: Database, *, connection: str | int | None = None
) -> dict[str, dict[str, int]]:
    """``{flow: {state: n}}`` for every flow with records."""
    with db.session() as session:
        stmt = select(SyncRecord.flow, SyncRecord.state, func.count()).group_by(
            SyncRecord.flow, SyncRecord.state
        )
        if connection is not None:
            stmt = stmt.where(
                SyncRecord.connection_id == resolve_connection(session, connection).id
            )
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for flow_name, state, n in session.execute(stmt):
            out[flow_name][state] = n
        return {k: dict(v) for k, v in sorted(out.items())}


# =========================================================================== problem groups

_QUOTED = re.compile(r"(['\"`])(?:(?!\1).){0,200}\1")
_HEXISH = re.compile(r"\b(?=[0-9a-f-]*[a-f])[0-9a-f]{8,}(?:-[0-9a-f]{4,})*\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")


def normalize_message(message: str | None) -> str:
    """A message with its particulars (names, ids, numbers) blanked, for grouping alike errors."""
    if not message:
        return ""
    text = _QUOTED.sub(lambda m: f"{m.group(1)}…{m.group(1)}", message)
    text = _HEXISH.sub("…", text)
    text = _NUMBER.sub("N", text)
    text = " ".join(text.split())
    return text[:200]


_REAUTH = (
    "Re-authorize the connection: `connector connect {system} {name}`; "
    "its parked records resume after that."
)

HINTS_BY_CODE: dict[str, str] = {
    "vendor": "Sync vendors or link it: the vendor reconciliation links vendors that match by "
    "name or code; link this one by hand if they differ, then replay.",
    "account": "Add (or re-activate) the account in Zoho Books, or map it in the connection's "
    "rules file (`connector mappings import`); then replay.",
    "tag": "Create or activate the reporting tag (cost centre) in Zoho Books, or fix the "
    "cost-centre rule in the rules file; then replay.",
    "currency": "Enable the currency in Zoho Books (Settings → Currencies), or correct it on the "
    "source record; then replay.",
    "mapping": "Add the missing mapping to the connection's rules file "
    "(`connector mappings export/import`); then replay.",
    "report": "The Concur report lacks something the journal needs (see the message); fix it in "
    "Concur, then replay.",
    "quota": "Zoho's daily API quota is spent; these records resume by themselves after the reset.",
    "stuck": "A worker kept stopping on this step (time limit, crash, memory): check the worker "
    "log, then replay.",
    "selftest": "Selftest dependency: lift the fault in the payload, then replay.",
    "remit_to": "The Concur vendor has several remit-to addresses and none is chosen: add "
    "`payables.remit_to: {VENDORCODE: ADDRESSCODE}` to the rules file (the message lists the "
    "address codes) or link the contact to one address; then replay.",
    "not_editable": "The Concur payment request is past the stage where it can be changed: "
    "update it in Concur by hand (the message says what changed); replaying will not help.",
    "rejected": "The target refused the vendor (see the message): fix the vendor in the source "
    "system, then replay.",
}

HINTS_BY_CLASS: dict[str, str] = {
    "PermissionDeniedError": "The connected user lacks a scope or role for this call: grant it "
    "(or reconnect as a user who has it), then replay.",
    "NotFoundError": "The object no longer exists in the source or the target: check it there; "
    "replay if it is back, purge if it is gone for good.",
    "ValidationFailed": "The mapped payload breaks a rule (the errors are in the audit trail): "
    "fix the source record or the rules file, then replay.",
    "InvalidRequestError": "The target rejected the payload with the message shown: fix the "
    "source record or the rules file, then replay.",
    "RetryableError": "The target kept failing or timing out: check its status, then replay "
    "(an object that did land is found by its reference, not posted twice).",
    "RateLimitedError": "Rate limits kept rejecting the calls: check the limits in the "
    "configuration (docs/rate-limits.md), then replay.",
}

HINTS_BY_STATE: dict[str, str] = {
    S.WAITING: "Waiting for a dependency; retried with back-off. Fix what the message names to "
    "speed it up, then replay.",
    S.FAILED: "The target refused the record: read the message, fix the cause, then replay.",
    S.DEAD: "Retries ran out: fix the cause shown, then replay.",
}


def _reauth_hint(connection: Connection | None, system: str | None = None) -> str:
    name = connection.name if connection else "<name>"
    if system is None and connection is not None and connection.status_reason:
        reason = connection.status_reason.lower()
        system = "concur" if "concur" in reason else "zoho" if "zoho" in reason else None
    return _REAUTH.format(system=system or "zoho|concur", name=name)


def fix_hint(
    state: str,
    code: str | None,
    error_class: str | None = None,
    connection: Connection | None = None,
) -> str:
    """What a person should do about records in this state with this error."""
    if state == S.NEEDS_REAUTH or error_class in ("ReauthRequired", "TokenExpiredError"):
        return _reauth_hint(connection)
    if code and code in HINTS_BY_CODE:
        return HINTS_BY_CODE[code]
    if error_class and error_class in HINTS_BY_CLASS:
        return HINTS_BY_CLASS[error_class]
    return HINTS_BY_STATE.get(state, "Read the audit trail; replay once the cause is fixed.")


@dataclass
class ProblemGroup:
    """Records in one trouble state that failed the same way."""

    key: str
    state: str
    code: str | None
    message: str
    error_class: str | None
    hint: str
    count: int
    record_ids: list[int]
    connections: list[str]
    flows: list[str]
    oldest: dt.datetime | None
    newest: dt.datetime | None
    sample_message: str | None


def group_key(state: str, code: str | None, message: str) -> str:
    return hashlib.sha1(f"{state}|{code or ''}|{message}".encode()).hexdigest()[:12]  # noqa: S324


def problem_groups(
    db: Database,
    *,
    connection: str | int | None = None,
    flow: str | None = None,
    states: Iterable[str] = PROBLEM_STATES,
    limit: int = 5000,
) -> list[ProblemGroup]:
    """Trouble records grouped by state, error code and normalized message, biggest first."""
    state_list = [str(s) for s in states]
    with db.session() as session:
        stmt = _query(session, connection=connection, flow=flow, states=state_list)
        rows = session.execute(
            stmt.with_only_columns(
                SyncRecord.id,
                SyncRecord.connection_id,
                SyncRecord.flow,
                SyncRecord.state,
                SyncRecord.last_error_code,
                SyncRecord.last_error_message,
                SyncRecord.updated_at,
            )
            .order_by(SyncRecord.updated_at.desc())
            .limit(limit)
        ).all()
        classes = _last_error_classes(session, state_list)
        conns = {
            c.id: c
            for c in session.execute(
                select(Connection).where(Connection.id.in_({r.connection_id for r in rows}))
            ).scalars()
        }
        buckets: dict[tuple[str, str | None, str], list[Any]] = defaultdict(list)
        for r in rows:
            buckets[(r.state, r.last_error_code, normalize_message(r.last_error_message))].append(r)
        groups = []
        for (state, code, message), members in buckets.items():
            error_class = Counter(classes.get(m.id) for m in members).most_common(1)[0][0]
            conn_ids = sorted({m.connection_id for m in members})
            first_conn = conns.get(conn_ids[0]) if len(conn_ids) == 1 else None
            groups.append(
                ProblemGroup(
                    key=group_key(state, code, message),
                    state=state,
                    code=code,
                    message=message,
                    error_class=error_class,
                    hint=fix_hint(state, code, error_class, first_conn),
                    count=len(members),
                    record_ids=[m.id for m in members],
                    connections=[conns[c].name for c in conn_ids if c in conns],
                    flows=sorted({m.flow for m in members}),
                    oldest=min(m.updated_at for m in members),
                    newest=max(m.updated_at for m in members),
                    sample_message=members[0].last_error_message,
                )
            )
    order = {str(s): i for i, s in enumerate(PROBLEM_STATES)}
    groups.sort(key=lambda g: (order.get(g.state, 9), -g.count))
    return groups


def _last_error_classes(session: Session, states: list[str]) -> dict[int, str]:
    """The error class of each trouble record's latest failure (from its audit trail)."""
    latest = (
        select(func.max(AuditEvent.id).label("id"))
        .join(SyncRecord, SyncRecord.id == AuditEvent.record_id)
        .where(SyncRecord.state.in_(states), AuditEvent.error_class.is_not(None))
        .group_by(AuditEvent.record_id)
        .subquery()
    )
    rows = session.execute(
        select(AuditEvent.record_id, AuditEvent.error_class).where(
            AuditEvent.id.in_(select(latest.c.id))
        )
    )
    return {rid: cls for rid, cls in rows if rid is not None}


def replay_group(
    db: Database,
    key: str,
    *,
    requested_by: str,
    enqueue: Enqueue,
    connection: str | int | None = None,
) -> ReplayReport:
    """Replay every record of one problem group (as shown on ``/ops``)."""
    for group in problem_groups(db, connection=connection, states=REPLAYABLE_STATES):
        if group.key == key:
            return replay(db, group.record_ids, requested_by=requested_by, enqueue=enqueue)
    raise OperationError("that group no longer exists (the records moved on); reload the page")


# =========================================================================== stuck work


def waiting_too_long(
    session: Session, *, older_than: dt.timedelta, now: dt.datetime | None = None
) -> dict[tuple[int, str], list[SyncRecord]]:
    """Records ``waiting`` for longer than ``older_than``, by (connection id, flow)."""
    cutoff = (now or utcnow()) - older_than
    records = (
        session.execute(
            select(SyncRecord)
            .where(
                SyncRecord.state == S.WAITING.value,
                or_(
                    SyncRecord.waiting_since < cutoff,
                    (SyncRecord.waiting_since.is_(None) & (SyncRecord.updated_at < cutoff)),
                ),
            )
            .order_by(SyncRecord.id)
        )
        .scalars()
        .all()
    )
    out: dict[tuple[int, str], list[SyncRecord]] = defaultdict(list)
    for r in records:
        out[(r.connection_id, r.flow)].append(r)
    return dict(out)


# =========================================================================== target links


_ZOHO_BOOKS_HOSTS = {
    "zohoapis.com": "books.zoho.com",
    "zohoapis.eu": "books.zoho.eu",
    "zohoapis.in": "books.zoho.in",
    "zohoapis.com.au": "books.zoho.com.au",
    "zohoapis.jp": "books.zoho.jp",
    "zohoapis.ca": "books.zohocloud.ca",
    "zohoapis.com.cn": "books.zoho.com.cn",
    "zohoapis.sa": "books.zoho.sa",
}


def target_url(
    record: SyncRecord,
    connection: Connection | None,
    *,
    sandbox_url: str | None = None,
    api_base: str | None = None,
) -> str | None:
    """A link a person can open to see the posted object, when one can be built.

    Sandbox mode links into the sandbox's page for the organization. Zoho Books links use the
    data centre of the connection's ``api_domain``. Concur has no stable deep link to a payment
    request or vendor, so none is given (the id is shown instead).
    """
    if not record.target_id or record.target_system not in ("zoho", "concur"):
        return None
    if sandbox_url:
        if record.target_system == "zoho" and connection and connection.zoho_organization_id:
            return f"{sandbox_url}/?org={connection.zoho_organization_id}"
        return f"{sandbox_url}/"
    if record.target_system != "zoho" or connection is None or not connection.zoho_organization_id:
        return None
    host = "books.zoho.com"
    if api_base:
        for suffix, books in _ZOHO_BOOKS_HOSTS.items():
            if api_base.rstrip("/").endswith(suffix):
                host = books
    section = {"expenses": "journals", "vendors": "contacts"}.get(record.flow, "journals")
    return f"https://{host}/app/{connection.zoho_organization_id}#/{section}/{record.target_id}"
