"""Expenses intake: ESS ``statusChanged`` events and the back-stop poll meet on one record."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest
from expenses_support import RULES, import_rules
from sqlalchemy import func, select

from connector import inbox, sync
from connector.connections import concur_client
from connector.db import Database
from connector.models import Step, SyncCursor, SyncRecord, WebhookEvent
from flows import FLOWS, expenses_intake


@pytest.fixture
def env(db: Database, sandbox_settings: Any, connected: int) -> dict[str, Any]:
    import_rules(db, connected, RULES)
    return {
        "db": db,
        "settings": sandbox_settings,
        "cid": connected,
        "concur": concur_client(db, sandbox_settings, connected).expense_reports,
    }


def approve(admin_url: str, report_id: str, action: str = "approve") -> dict[str, Any]:
    from sandbox.concur.admin import ConcurAdmin

    return ConcurAdmin(admin_url).transition(report_id, action)["facts"]  # type: ignore[no-any-return]


def deliver(env: dict[str, Any], facts: dict[str, Any], event_id: str | None = None) -> int:
    """Store a statusChanged event as the receiver does; returns the inbox row id."""
    event = {
        "id": event_id or str(uuid.uuid4()),
        "correlationId": str(uuid.uuid4()),
        "route": "stable",
        "topic": "public.concur.expense.report",
        "eventType": "statusChanged",
        "timeStamp": "2025-06-02T10:00:00Z",
        "facts": facts,
    }
    with env["db"].session() as s:
        return inbox.store(
            s,
            source="concur",
            dedupe_key=event["id"],
            body=json.dumps(event).encode(),
            headers={},
            connection_id=env["cid"],
            event_type="statusChanged",
        ).event_id


def event_row(db: Database, event_id: int) -> WebhookEvent:
    with db.session() as s:
        row = s.get(WebhookEvent, event_id)
        s.expunge(row)
        return row


def records(db: Database) -> list[SyncRecord]:
    with db.session() as s:
        rows = list(s.execute(select(SyncRecord).where(SyncRecord.flow == "expenses")).scalars())
        for row in rows:
            s.expunge(row)
        return rows


def pending_report(env: dict[str, Any]) -> str:
    items = env["concur"].iter_reports(user="ALL", approvalStatusCode="A_PEND")
    return str(next(iter(items))["ID"])


def test_approval_event_creates_the_record_keyed_by_the_approval_version(
    env: dict[str, Any], sandbox: Any
) -> None:
    db = env["db"]
    report_id = pending_report(env)
    facts = approve(sandbox.url, report_id)
    event_id = deliver(env, facts)
    queued = FLOWS.process_event(db, event_id, env["settings"])
    assert len(queued) == 1 and queued[0][1] is Step.FETCH
    (rec,) = records(db)
    header = env["concur"].get(report_id)
    assert rec.id == queued[0][0] and rec.source_id == report_id == rec.stable_ref
    assert rec.source_version == expenses_intake.approval_version(header)
    assert rec.source_version.startswith("pp=") and rec.state == "received"
    row = event_row(db, event_id)
    assert row.status == "processed" and row.record_id == rec.id
    # The same event delivered twice is one inbox row; processing it again does nothing.
    assert deliver(env, facts, event_id=json.loads(row.body)["id"]) == event_id
    assert FLOWS.process_event(db, event_id, env["settings"]) == []
    # Another event for the same approval (ESS retries with a new id) finds the same record.
    again = deliver(env, facts)
    assert FLOWS.process_event(db, again, env["settings"]) == [(rec.id, Step.FETCH)]
    assert len(records(db)) == 1


@pytest.mark.parametrize(
    ("trigger", "change", "starts"),
    [
        ("either", {"currentPaymentStatus": "P_NOTP"}, True),  # approval alone
        ("approval", {"currentPaymentStatus": "P_NOTP"}, True),
        ("payment", {"currentPaymentStatus": "P_NOTP"}, False),
        ("payment", {"currentApprovalStatus": "A_PEND"}, True),  # payment alone
        ("approval", {"currentApprovalStatus": "A_PEND"}, False),
    ],
)
def test_the_trigger_setting_decides_which_events_start_the_flow(
    env: dict[str, Any], sandbox: Any, trigger: str, change: dict[str, str], starts: bool
) -> None:
    facts = {**approve(sandbox.url, pending_report(env)), **change}
    settings = dataclasses.replace(env["settings"], expenses_approval_trigger=trigger)
    event_id = deliver(env, facts)
    assert bool(FLOWS.process_event(env["db"], event_id, settings)) is starts
    row = event_row(env["db"], event_id)
    if starts:
        assert row.status == "processed"
    else:
        assert row.status == "ignored" and f"EXPENSES_APPROVAL_TRIGGER={trigger}" in row.note


def test_events_that_are_not_an_approval_are_stored_and_ignored(
    env: dict[str, Any], sandbox: Any
) -> None:
    db = env["db"]
    report_id = pending_report(env)
    sent_back = approve(sandbox.url, report_id, "sendback")
    submitted = approve(sandbox.url, report_id, "submit")
    approved = approve(sandbox.url, report_id)
    paid = approve(sandbox.url, report_id, "pay")
    ids = [deliver(env, f) for f in (sent_back, submitted, paid)]
    for event_id in ids:
        assert FLOWS.process_event(db, event_id, env["settings"]) == []
        row = event_row(db, event_id)
        assert row.status == "ignored" and row.note.startswith("statusChanged without approval")
    assert "P_PROC -> P_PAID" in event_row(db, ids[2]).note
    assert records(db) == []
    # An approval event that arrives after the report was paid still names the approved report.
    assert len(FLOWS.process_event(db, deliver(env, approved), env["settings"])) == 1
    # A report Concur no longer has: ignored with the reason, nothing created.
    ghost = deliver(env, {**approved, "reportId": "NOSUCHREPORT0000000"})
    assert FLOWS.process_event(db, ghost, env["settings"]) == []
    assert "not in Concur" in event_row(db, ghost).note
    assert len(records(db)) == 1


def test_event_and_poll_meet_on_one_record_in_either_order(
    env: dict[str, Any], sandbox: Any
) -> None:
    db, settings = env["db"], env["settings"]
    first, second = [
        r["ID"] for r in env["concur"].iter_reports(user="ALL", approvalStatusCode="A_PEND")
    ][:2]
    # Event first, then the poll.
    event_id = deliver(env, approve(sandbox.url, first))
    (created,) = FLOWS.process_event(db, event_id, settings)
    polled = FLOWS.sync(db, settings, env["cid"], "expenses")
    assert created[0] not in {rid for rid, _ in polled.records}
    # Poll first, then the event.
    facts = approve(sandbox.url, second)
    polled = FLOWS.sync(db, settings, env["cid"], "expenses")
    assert len(polled.records) == 1
    late = deliver(env, facts)
    assert FLOWS.process_event(db, late, settings) == polled.records  # not started yet: re-sent
    assert event_row(db, late).record_id == polled.records[0][0]
    with db.session() as s:
        counts = dict(
            s.execute(
                select(SyncRecord.source_id, func.count()).group_by(SyncRecord.source_id)
            ).all()
        )
    assert counts[first] == 1 and counts[second] == 1
    assert len(counts) == 6 + 2  # six seeded approved reports plus the two approved here


def test_a_connection_without_expenses_rules_ignores_events(
    env: dict[str, Any], sandbox: Any
) -> None:
    db = env["db"]
    import_rules(db, env["cid"], {"vendors": {}})  # rules, but no expenses: section
    event_id = deliver(env, approve(sandbox.url, pending_report(env)))
    assert FLOWS.process_event(db, event_id, env["settings"]) == []
    row = event_row(db, event_id)
    assert row.status == "ignored" and "expenses flow is off" in row.note
    assert records(db) == []


def test_poll_cursor_advances_to_the_newest_report_seen(env: dict[str, Any], sandbox: Any) -> None:
    db, settings, cid = env["db"], env["settings"], env["cid"]
    assert sync.read_cursor(db, cid, "expenses") is None
    first = FLOWS.sync(db, settings, cid, "expenses")
    approved = list(env["concur"].iter_approved())
    assert len(first.records) == len(approved) == 6
    newest = max(r["LastModifiedDate"] for r in approved)
    assert sync.read_cursor(db, cid, "expenses") == expenses_intake.stamp(newest)

    assert FLOWS.sync(db, settings, cid, "expenses").records == []
    report_id = pending_report(env)
    approve(sandbox.url, report_id)
    third = FLOWS.sync(db, settings, cid, "expenses")
    assert [records_by_id(db)[rid].source_id for rid, _ in third.records] == [report_id]
    cursor = sync.read_cursor(db, cid, "expenses")
    assert cursor == expenses_intake.stamp(env["concur"].get(report_id)["LastModifiedDate"])
    assert cursor > newest[:23]
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(SyncCursor)).scalar() == 1


def records_by_id(db: Database) -> dict[int, SyncRecord]:
    return {r.id: r for r in records(db)}
