"""Polling passes: the back-stop that finds what webhooks missed, one per flow.

Each flow registers a pass (``register("payables", fn)``). A pass reads its cursor from
``sync_cursors``, lists what changed in the source since then, creates ledger records with
``ledger.get_or_create`` (so a record a webhook already created is found, not duplicated), and
returns ``(record_id, step)`` pairs to enqueue; it advances the cursor only after the records
are committed. Beat runs every registered pass per connection; ``connector sync ID --flow X``
runs one now.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from connector.config import Settings
from connector.db import Database, utcnow
from connector.models import Step, SyncCursor


@dataclass
class PassResult:
    """What one pass did: records to enqueue and a line for the operator."""

    records: list[tuple[int, Step]] = field(default_factory=list)
    summary: str = ""


SyncPass = Callable[[Database, Settings, int], PassResult]

#: Flows whose pass lives in a module that registers it on import.
BUILTIN: dict[str, str] = {
    "payables": "connector.flows.payables",
    "expenses": "connector.flows.expenses",
    "vendors": "connector.flows.vendors",
}
_passes: dict[str, SyncPass] = {}


def register(flow: str, fn: SyncPass) -> None:
    _passes[flow] = fn


def get(flow: str) -> SyncPass:
    if flow not in _passes and flow in BUILTIN:
        importlib.import_module(BUILTIN[flow])
    if flow not in _passes:
        raise KeyError(f"no sync pass for flow {flow!r}")
    return _passes[flow]


def available() -> list[str]:
    for flow, module in BUILTIN.items():
        if flow not in _passes:
            try:
                importlib.import_module(module)
            except ImportError:
                continue
    return sorted(_passes)


def run(db: Database, settings: Settings, connection_id: int, flow: str) -> PassResult:
    return get(flow)(db, settings, connection_id)


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
