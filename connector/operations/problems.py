"""What is wrong, grouped so a person fixes a cause once: problem groups with a fix hint, the
per-connection overview, records waiting too long (``/ops``, the alert digest, the CLI).

Alike errors differ only in names, ids and numbers; blanking those makes one group of a hundred
records that share a cause, and the hint tables say what to do about each kind."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from connector.db import Database, utcnow
from connector.models import AuditEvent, Connection, ConnectionStatus, SyncRecord
from connector.operations import (
    PROBLEM_STATES,
    REPLAYABLE_STATES,
    Enqueue,
    OperationError,
    S,
    resolve_connection,
    select_records,
)
from connector.operations.replay import ReplayReport, replay

if TYPE_CHECKING:
    pass


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


def reauth_hint(connection: Connection | None, system: str | None = None) -> str:
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
        return reauth_hint(connection)
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
        stmt = select_records(session, connection=connection, flow=flow, states=state_list)
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
                "hint": reauth_hint(c) if c.status == ConnectionStatus.NEEDS_REAUTH else None,
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
