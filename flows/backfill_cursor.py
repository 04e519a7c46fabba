"""Where a backfill stands, saved with each page so an interrupted run resumes (docs/backfill.md).

The cursor is written in the same transaction as the page's ledger records, so a crash never
leaves records without the cursor that accounts for them, nor a cursor ahead of its records.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.db import Database, utcnow
from connector.models import SyncCursor

_FLOW_CODE = {"payables": "p", "expenses": "e", "vendors": "v"}


def cursor_key(flow: str, since: dt.date) -> str:
    """``bf:p:2025-01-01``: the backfill's row in ``sync_cursors`` (whose ``flow`` column holds
    16 characters), distinct from the poll's ``payables`` row and per ``since``."""
    if flow not in _FLOW_CODE:
        raise ValueError(f"unknown flow {flow!r}")
    return f"bf:{_FLOW_CODE[flow]}:{since.isoformat()}"


@dataclass
class Cursor:
    """Where a backfill stands: the list part (``bill``/``invoice``...) and page to read next."""

    part: int = 0
    #: Zoho: the next page (1-based); Concur: the next offset; None: the start of ``part``.
    position: int | None = None
    found: int = 0
    new: int = 0
    done: bool = False
    runs: int = 0

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def load_cursor(db: Database, connection_id: int, flow: str, since: dt.date) -> Cursor:
    with db.session() as session:
        text = session.execute(
            select(SyncCursor.cursor).where(
                SyncCursor.connection_id == connection_id,
                SyncCursor.flow == cursor_key(flow, since),
            )
        ).scalar_one_or_none()
    return Cursor.loads(text)


def save_cursor_in(
    session: Session, connection_id: int, flow: str, since: dt.date, cursor: Cursor
) -> None:
    """Write the cursor in the caller's transaction (the one that made the page's records)."""
    key = cursor_key(flow, since)
    row = session.execute(
        select(SyncCursor).where(SyncCursor.connection_id == connection_id, SyncCursor.flow == key)
    ).scalar_one_or_none()
    if row is None:
        session.add(SyncCursor(connection_id=connection_id, flow=key, cursor=cursor.dumps()))
    else:
        row.cursor = cursor.dumps()
        row.updated_at = utcnow()


def reset_cursor(db: Database, connection_id: int, flow: str, since: dt.date) -> None:
    with db.session() as session:
        save_cursor_in(session, connection_id, flow, since, Cursor())
