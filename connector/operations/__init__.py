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

The operations live in ``connector.operations.records`` (list, show, links),
``connector.operations.replay`` (replay, verify, purge) and ``connector.operations.problems``
(problem groups, fix hints, overview, records waiting too long); this module holds what they
share: the states an operator may act on, the error they raise and how a selection is read.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from connector.db import utcnow
from connector.errors import ConnectorError
from connector.models import Connection, RecordState, SyncRecord

if TYPE_CHECKING:
    pass

S = RecordState

#: States a replay may restart (a record in an active state is the sweeper's business).
REPLAYABLE_STATES = frozenset({S.WAITING, S.NEEDS_REAUTH, S.FAILED, S.DEAD})
#: States shown as problems on ``/ops`` and in the alerts.
PROBLEM_STATES = (S.NEEDS_REAUTH, S.DEAD, S.FAILED, S.WAITING)
#: Every state in the order a record meets them: the columns of ``/ops`` and the choices of
#: ``connector records list --state``.
STATE_ORDER: tuple[str, ...] = tuple(s.value for s in S)

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


def select_records(
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


def local_user() -> str | None:
    """The operating-system user running a command, for "replay requested by" (None if unknown)."""
    try:
        return getpass.getuser()
    except Exception:
        return None


def connection_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = session.execute(select(Connection.id, Connection.name).where(Connection.id.in_(wanted)))
    return {cid: name for cid, name in rows}


def iso(value: dt.datetime | None) -> str | None:
    """Timestamps in lists and JSON output: to the second, so they line up and diff cleanly."""
    return value.isoformat(timespec="seconds") if value else None
