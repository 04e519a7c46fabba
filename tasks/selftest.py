"""``connector selftest``: one record through the real broker, worker and ledger."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import select

from connector import ledger
from connector.db import get_database
from connector.models import AuditEvent, Connection, RecordState, SyncRecord
from tasks.pipeline import enqueue

SELFTEST_CONNECTION = "selftest"


def run_selftest(*, timeout: float = 60.0, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    db = get_database()
    with db.session() as session:
        connection = session.execute(
            select(Connection).where(Connection.name == SELFTEST_CONNECTION)
        ).scalar_one_or_none()
        if connection is None:
            connection = Connection(name=SELFTEST_CONNECTION, status="disabled")
            session.add(connection)
            session.flush()
        record, _ = ledger.get_or_create(
            session,
            connection_id=connection.id,
            flow="selftest",
            source_system="selftest",
            source_type="probe",
            source_id=uuid.uuid4().hex,
            source_version="1",
            target_system="selftest",
            source_ref="selftest probe",
            source_payload=payload or {"echo": "hello"},
            trigger="selftest",
        )
        record_id = record.id
    started = time.monotonic()
    enqueue(record_id, "fetch")
    state = RecordState.RECEIVED.value
    while time.monotonic() - started < timeout:
        with db.session() as session:
            state = session.execute(
                select(SyncRecord.state).where(SyncRecord.id == record_id)
            ).scalar_one()
            steps = session.execute(
                select(AuditEvent.step).where(
                    AuditEvent.record_id == record_id, AuditEvent.outcome == "completed"
                )
            ).first()
        if steps is not None:
            break
        time.sleep(0.2)  # polling the ledger for a human-facing command; not a race workaround
    return {"record_id": record_id, "state": state, "seconds": round(time.monotonic() - started, 3)}
