"""Inbox events become records through registered handlers; nothing unhandled is dropped."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from connector import inbox, intake, ledger
from connector.db import Database, utcnow
from connector.models import Connection, Step, WebhookEvent
from flows import FLOWS, IntakeHook


def stored(db: Database, source: str, kind: str, payload: dict[str, Any]) -> int:
    with db.session() as s:
        conn = Connection(name=f"intake-{kind}")
        s.add(conn)
        s.flush()
        stored = inbox.store(
            s,
            source=source,
            dedupe_key=f"k-{kind}",
            body=json.dumps(payload).encode(),
            headers={"Authorization": "Bearer SECRET", "Content-Type": "application/json"},
            connection_id=conn.id,
            event_type=kind,
        )
        assert stored.created and stored.status == "received"
        assert "authorization" not in s.get(WebhookEvent, stored.event_id).headers
        return stored.event_id


def test_unhandled_event_is_kept_and_marked_ignored(db: Database) -> None:
    event_id = stored(db, "zoho", "payment", {"payment": {"payment_id": "1"}})
    assert FLOWS.process_event(db, event_id) == []
    with db.session() as s:
        event = s.get(WebhookEvent, event_id)
        assert event.status == "ignored" and "no flow handles zoho 'payment'" in event.note


def test_registered_handler_creates_records_once(db: Database) -> None:
    def handler(session: Any, event: WebhookEvent, payload: dict[str, Any]) -> intake.IntakeResult:
        record, _ = ledger.get_or_create(
            session,
            connection_id=event.connection_id,
            flow="selftest",
            source_system="selftest",
            source_type="probe",
            source_id=payload["probe"]["id"],
            source_version="1",
            target_system="selftest",
        )
        return intake.IntakeResult([(record.id, Step.FETCH)])

    FLOWS.add_intake("selftest", "probe", IntakeHook(handler))
    event_id = stored(db, "selftest", "probe", {"probe": {"id": "P-1"}})
    first = FLOWS.process_event(db, event_id)
    assert len(first) == 1 and first[0][1] is Step.FETCH
    assert FLOWS.process_event(db, event_id) == []  # processed events are not processed twice
    with db.session() as s:
        assert s.get(WebhookEvent, event_id).record_id == first[0][0]


def test_stale_events_are_found_for_the_sweeper(db: Database) -> None:
    event_id = stored(db, "zoho", "bill", {"bill": {"bill_id": "1"}})
    with db.session() as s:
        assert inbox.stale_events(s, older_than=60) == []
        s.get(WebhookEvent, event_id).received_at = utcnow() - dt.timedelta(minutes=5)
    with db.session() as s:
        assert [e.id for e in inbox.stale_events(s, older_than=60)] == [event_id]
