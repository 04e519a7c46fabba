"""Payables intake: a signed Zoho webhook becomes one record per document version; the back-stop
poll finds the same record for the same version and moves its cursor only forward."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from connector import connections, sync
from connector.db import Database
from connector.models import MappingRules, Step, SyncCursor, SyncRecord, WebhookEvent
from flows import FLOWS, payables_documents, payables_intake
from tests.flows import payables_support as ps


@pytest.fixture
def env(db: Database, sandbox_settings: Any, connected: int, admin: Any, sandbox: Any) -> Any:
    ps.set_up(db, sandbox_settings, connected, sandbox.url)

    class Env:
        pass

    e = Env()
    e.db, e.settings, e.cid, e.admin, e.sandbox = db, sandbox_settings, connected, admin, sandbox
    return e


def records(db: Database) -> list[SyncRecord]:
    with db.session() as s:
        rows = s.execute(select(SyncRecord).order_by(SyncRecord.id)).scalars().all()
        for r in rows:
            s.expunge(r)
        return list(rows)


def wait_for_events(db: Database, count: int, timeout: float = 10.0) -> list[WebhookEvent]:
    deadline = time.monotonic() + timeout
    while True:
        with db.session() as s:
            rows = s.execute(select(WebhookEvent).order_by(WebhookEvent.id)).scalars().all()
            for r in rows:
                s.expunge(r)
        if len(rows) >= count or time.monotonic() > deadline:
            return list(rows)
        time.sleep(0.05)


@pytest.mark.parametrize("fmt", ["json", "form"])
def test_signed_webhook_becomes_one_record_per_version(env: Any, fmt: str) -> None:
    enqueued: list[int] = []
    secret = connections.webhook_secret(env.db, env.settings, env.cid)
    with ps.Receiver(env.settings, env.db, enqueued.append) as receiver:
        env.admin.zoho_set_webhook(ps.ORG, receiver.hook(env.cid), secret, format=fmt,
                                   entities=["bill", "invoice"])  # fmt: skip
        bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=12)
        invoice = env.admin.zoho_create(
            ps.ORG, "invoice", customer_name="Globex Corporation", amount=30
        )
        env.admin.flush_deliveries()
        assert all(a["ok"] for a in env.admin.deliveries()["attempts"])
    events = wait_for_events(env.db, 2)
    assert [e.event_type for e in events] == ["bill", "invoice"] and enqueued == [
        e.id for e in events
    ]

    out = [FLOWS.process_event(env.db, e.id) for e in events]
    [bill_rec, invoice_rec] = records(env.db)
    assert out == [[(bill_rec.id, Step.FETCH)], [(invoice_rec.id, Step.FETCH)]]
    assert FLOWS.process_event(env.db, events[0].id) == []  # processed once
    assert bill_rec.source_id == f"bill:{bill['bill_id']}" and bill_rec.source_type == "bill"
    assert invoice_rec.source_id == f"invoice:{invoice['invoice_id']}"
    assert bill_rec.stable_ref == bill["bill_number"] and bill_rec.target_system == "concur"
    assert bill_rec.source_version == payables_documents.hint_version("bill", bill)
    assert bill_rec.source_version.endswith("Z")  # UTC, whatever the org's offset
    with env.db.session() as s:
        assert s.get(WebhookEvent, events[0].id).record_id == bill_rec.id

    # The fetch re-reads the same version: no "changed since the hint" note.
    ps.drive(env.db, env.settings, bill_rec.id)
    fetched = ps.record(env.db, bill_rec.id)
    assert fetched.state == "posted" and "fetched_version" not in (fetched.flags or {})


def test_poll_and_webhook_for_the_same_version_make_one_record(env: Any) -> None:
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=12)
    first = FLOWS.sync(env.db, env.settings, env.cid, "payables")
    assert [rid for rid, _ in first.records] == [r.id for r in records(env.db)]
    [rec] = records(env.db)
    assert rec.source_version == payables_documents.hint_version("bill", bill)

    with env.db.session() as s:
        made = payables_intake.ensure_record(s, env.cid, "bill", bill, trigger="webhook")
        assert made is not None and made[0].id == rec.id and made[1] is False
    assert len(records(env.db)) == 1

    ps.drive(env.db, env.settings, rec.id)
    assert ps.record(env.db, rec.id).state == "posted"
    again = FLOWS.sync(env.db, env.settings, env.cid, "payables")  # overlap re-reads it
    assert again.records == [] and len(records(env.db)) == 1
    assert len(ps.requests_numbered(env.sandbox, bill["bill_number"])) == 1


def test_cursor_starts_at_the_connection_and_only_moves_forward(env: Any) -> None:
    empty = FLOWS.sync(env.db, env.settings, env.cid, "payables")
    assert (
        empty.records == []
    )  # the seeded documents predate the connection: a backfill, not missed
    assert records(env.db) == []
    start = dt.datetime.fromisoformat(sync.read_cursor(env.db, env.cid, "payables"))

    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=12)
    env.admin.advance_clock(30)
    invoice = env.admin.zoho_create(
        ps.ORG, "invoice", customer_name="Globex Corporation", amount=30
    )
    result = FLOWS.sync(env.db, env.settings, env.cid, "payables")
    assert len(result.records) == 2 and "bills: 1 seen, 1 new" in result.summary
    cursor = dt.datetime.fromisoformat(sync.read_cursor(env.db, env.cid, "payables"))
    assert cursor > start
    assert cursor.strftime("%Y-%m-%dT%H:%M:%SZ") == payables_documents.hint_version(
        "invoice", invoice
    )

    env.admin.advance_clock(30)
    edited = env.admin.zoho_edit(ps.ORG, "bill", bill["bill_id"], amount=13)
    result = FLOWS.sync(env.db, env.settings, env.cid, "payables")
    versions = {(r.source_id, r.source_version) for r in records(env.db)}
    assert (
        len(result.records) == 1
        and ("bill:" + bill["bill_id"], payables_documents.hint_version("bill", edited)) in versions
    )
    later = dt.datetime.fromisoformat(sync.read_cursor(env.db, env.cid, "payables"))
    assert later > cursor

    quiet = FLOWS.sync(env.db, env.settings, env.cid, "payables")
    assert (
        quiet.records == []
        and dt.datetime.fromisoformat(sync.read_cursor(env.db, env.cid, "payables")) == later
    )
    with env.db.session() as s:
        assert s.execute(select(func.count()).select_from(SyncCursor)).scalar() == 1


def test_poll_pages_through_every_change(env: Any) -> None:
    env.admin.generate("zoho.bills", 450, organization_id=ps.ORG)
    result = FLOWS.sync(env.db, env.settings, env.cid, "payables")
    assert len(result.records) == 450
    calls = env.admin.stats()["per_endpoint"]
    assert (
        sum(n for k, n in calls.items() if k.startswith("GET") and k.rstrip("/").endswith("/bills"))
        >= 3
    )


@pytest.mark.parametrize(
    "include",
    [pytest.param(["bills"], id="bills-only"), pytest.param(ps.OMIT, id="default-is-bills")],
)
def test_excluded_kind_is_ignored_by_webhook_and_poll(env: Any, include: Any) -> None:
    """Invoices are sales documents: without ``include: [bills, invoices]`` they never become
    Concur payables, whether the webhook or the poll names them."""
    from connector import inbox

    ps.import_rules(env.db, env.cid, include=include)
    invoice = env.admin.zoho_create(
        ps.ORG, "invoice", customer_name="Globex Corporation", amount=30
    )
    with env.db.session() as s:
        stored = inbox.store(s, source="zoho", dedupe_key="x", body=b'{"invoice": {}}', headers={},
                             connection_id=env.cid, event_type="invoice")  # fmt: skip
        s.get(WebhookEvent, stored.event_id).body = __import__("json").dumps({"invoice": invoice})
    assert FLOWS.process_event(env.db, stored.event_id) == []
    with env.db.session() as s:
        event = s.get(WebhookEvent, stored.event_id)
        assert event.status == "ignored" and "not in payables.include" in event.note
    assert FLOWS.sync(env.db, env.settings, env.cid, "payables").records == []
    assert records(env.db) == []


def test_poll_is_quiet_without_payables_rules(env: Any) -> None:
    with env.db.session() as s:
        s.execute(MappingRules.__table__.delete())
    env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=12)
    result = FLOWS.sync(env.db, env.settings, env.cid, "payables")
    assert result.records == [] and "no payables rules" in result.summary


def test_versions_agree_whatever_the_offset() -> None:
    from mappings.payables import document_version
    from mappings.zoho_documents import load_zoho_document

    hint = {"bill_id": "1", "last_modified_time": "2026-11-28T02:17:40-0800"}
    same = {"bill_id": "1", "last_modified_time": "2026-11-28T10:17:40+0000"}
    assert payables_documents.hint_version("bill", hint) == payables_documents.hint_version(
        "bill", same
    )
    assert payables_documents.hint_version("bill", hint) == "2026-11-28T10:17:40Z"
    full = {
        **hint,
        "bill_number": "B-1",
        "vendor_id": "9",
        "date": "2026-11-28",
        "total": 1,
        "status": "open",
        "line_items": [],
    }
    assert document_version(load_zoho_document({"bill": full})) == payables_documents.hint_version(
        "bill", hint
    )
