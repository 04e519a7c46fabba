"""Outbound calls into the audit trail: ``CallRecord`` -> one ``audit_events`` row.

``ApiClient(on_response=recorder(db, record_id=…))`` writes a row per HTTP attempt a record's
step makes: method, path (no query), status, duration, our correlation id and the vendor's
request id. Never a header or a body, so never a token.

Flows never build that observer themselves: a step asks its ``StepContext`` (``ctx.zoho(record,
step)``), and code that runs outside a record (a polling pass, a vendors pass, a backfill) asks
``audited_zoho`` / ``audited_concur`` here, so every audited client is wired the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from connector import connections, ledger
from connector.api.base import CallRecord
from connector.concur.client import ConcurClient
from connector.config import Settings
from connector.db import Database
from connector.models import SyncRecord
from connector.zoho.client import ZohoBooksClient


def call_fields(call: CallRecord) -> dict[str, Any]:
    """The audit columns a call fills."""
    return {
        "http_method": call.method,
        "http_path": call.path[:512],
        "http_status": call.status,
        "duration_ms": round(call.duration_ms),
        "correlation_id": call.correlation_id,
        "request_id": call.request_id,
        "error_class": call.error,
    }


def record_call(
    session: Session,
    call: CallRecord,
    *,
    record_id: int | None = None,
    connection_id: int | None = None,
    step: str = "call",
    task_id: str | None = None,
) -> None:
    """Append the row for one call (the caller commits)."""
    record = session.get(SyncRecord, record_id) if record_id is not None else None
    ledger.audit(
        session,
        record,
        connection_id=connection_id,
        step=step,
        outcome="ok" if call.error is None else "error",
        task_id=task_id,
        details={"system": call.system, "attempt": call.attempt}
        if call.attempt > 1
        else {"system": call.system},
        **call_fields(call),
    )


def recorder(
    db: Database,
    *,
    record_id: int | None = None,
    connection_id: int | None = None,
    step: str = "call",
    task_id: str | None = None,
) -> Callable[[CallRecord], None]:
    """An ``on_response`` observer writing each call in its own short transaction."""

    def observe(call: CallRecord) -> None:
        with db.session() as session:
            record_call(
                session,
                call,
                record_id=record_id,
                connection_id=connection_id,
                step=step,
                task_id=task_id,
            )

    return observe


def audited_zoho(
    db: Database,
    settings: Settings,
    connection_id: int,
    *,
    step: str,
    record_id: int | None = None,
    task_id: str | None = None,
    record_calls: bool = True,
) -> ZohoBooksClient:
    """The connection's Zoho client, each call an audit row (``recorder``) on the connection
    and, inside a step, on ``record_id``.

    ``record_calls=False`` (a dry run) gives the same client unaudited.
    """
    return connections.zoho_client(
        db,
        settings,
        connection_id,
        on_response=_observer(db, connection_id, step, record_id, task_id, record_calls),
    )


def audited_concur(
    db: Database,
    settings: Settings,
    connection_id: int,
    *,
    step: str,
    record_id: int | None = None,
    task_id: str | None = None,
    record_calls: bool = True,
) -> ConcurClient:
    """The connection's Concur client, audited as ``audited_zoho`` audits the Zoho one."""
    return connections.concur_client(
        db,
        settings,
        connection_id,
        on_response=_observer(db, connection_id, step, record_id, task_id, record_calls),
    )


def _observer(
    db: Database,
    connection_id: int,
    step: str,
    record_id: int | None,
    task_id: str | None,
    record_calls: bool,
) -> Callable[[CallRecord], None] | None:
    """The one ``recorder`` both helpers use. A row on a record takes the record's connection
    (``ledger.audit``), so naming the connection too changes nothing there."""
    if not record_calls:
        return None
    return recorder(
        db, record_id=record_id, connection_id=connection_id, step=step, task_id=task_id
    )
