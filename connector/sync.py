"""Polling passes: the back-stop that finds what webhooks missed, one per flow.

Each flow names its pass (``Flow(poll=fn)`` in ``flows/__init__.py``). A pass reads its cursor from
``sync_cursors``, lists what changed in the source since then, creates ledger records with
``ledger.get_or_create`` (so a record a webhook already created is found, not duplicated), and
returns ``(record_id, step)`` pairs to enqueue; it advances the cursor only after the records
are committed. Beat runs every registered pass per connection; ``connector sync ID --flow X``
runs one now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select

from connector.config import Settings
from connector.db import Database, utcnow
from connector.models import Step, SyncCursor

if TYPE_CHECKING:
    from connector.registry import Registry


@dataclass
class PassResult:
    """What one pass did: records to enqueue and a line for the operator."""

    records: list[tuple[int, Step]] = field(default_factory=list)
    summary: str = ""


SyncPass = Callable[[Database, Settings, int], PassResult]


def run(
    db: Database, settings: Settings, connection_id: int, flow: str, *, registry: Registry
) -> PassResult:
    return registry.poll(flow)(db, settings, connection_id)


def read_cursor(db: Database, connection_id: int, flow: str) -> str | None:
    with db.session() as session:
        return session.execute(
            select(SyncCursor.cursor).where(
                SyncCursor.connection_id == connection_id, SyncCursor.flow == flow
            )
        ).scalar_one_or_none()


def write_cursor(db: Database, connection_id: int, flow: str, cursor: str) -> None:
    with db.session() as session:
        row = session.execute(
            select(SyncCursor).where(
                SyncCursor.connection_id == connection_id, SyncCursor.flow == flow
            )
        ).scalar_one_or_none()
        if row is None:
            session.add(SyncCursor(connection_id=connection_id, flow=flow, cursor=cursor))
        else:
            row.cursor = cursor
            row.updated_at = utcnow()
