"""The payables handler's steps, run through ``connector.pipeline.run_step`` against the sandbox
(no broker): create, wait for a vendor, fail on Concur's 400, survive a POST whose answer was
lost, voids, and edits (PUT while editable, flag when not, nothing when nothing changed)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from connector import pipeline
from connector.db import Database
from connector.models import SyncRecord, VendorLink
from flows import FLOWS, payables_documents, payables_ledger, payables_post, payables_vendors
from sandbox.concur.admin import ConcurAdmin
from tests.flows import payables_support as ps

PR_PATH = "/concur/*/api/v3.0/invoice/paymentrequest"


@pytest.fixture
def env(db: Database, sandbox_settings: Any, connected: int, admin: Any, sandbox: Any) -> Any:
    contacts = ps.set_up(db, sandbox_settings, connected, sandbox.url)
    accounts = ps.zoho_accounts(db, sandbox_settings, connected)

    class Env:
        pass

    e = Env()
    e.db, e.settings, e.cid, e.admin, e.sandbox = db, sandbox_settings, connected, admin, sandbox
    e.contacts, e.accounts = contacts, accounts
    return e


def run(env: Any, kind: str, obj: dict[str, Any]) -> tuple[int, SyncRecord]:
    rid = ps.new_record(env.db, env.cid, kind, obj)
    ps.drive(env.db, env.settings, rid)
    return rid, ps.record(env.db, rid)


def check_schema(body: dict[str, Any], *, put: bool = False) -> None:
    errors = ps.schema_errors(body, put=put)
    if errors is None:
        pytest.skip("published Concur specs not found (../shared/specs)")
    assert errors == []


def requests_numbered(env: Any, number: str) -> list[dict[str, Any]]:
    return ps.requests_numbered(env.sandbox, number)


def new_version(env: Any) -> None:
    """Zoho timestamps have one-second resolution: move the sandbox clock so an edit is a new
    version."""
    env.admin.advance_clock(5)


# --------------------------------------------------------------------------- happy paths


CASES = [
    pytest.param("bill", "Delta Air Lines", "USD", [("Airfare", 412.5, 2), ("Office Supplies", 19.99, 3)], id="bill-usd"),
    pytest.param("bill", "Deutsche Lufthansa AG", "EUR", [("Airfare", 1234.56, 1)], id="bill-eur"),
    pytest.param("bill", "Delta Air Lines", "JPY", [("Airfare", 48230, 1), ("Travel Expense", 1200, 3)], id="bill-jpy"),
    pytest.param("invoice", "Globex Corporation", "USD", [("Consulting Income", 1500, 4)], id="invoice-usd"),
    pytest.param("invoice", "Soylent Nahrungsmittel GmbH", "EUR", [("Consulting Income", 999.95, 1)], id="invoice-eur"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "contact", "currency", "lines"), CASES)
def test_document_becomes_one_payment_request(
    env: Any, kind: str, contact: str, currency: str, lines: list[tuple[str, float, int]]
) -> None:
    party = "vendor_name" if kind == "bill" else "customer_name"
    doc = env.admin.zoho_create(
        ps.ORG,
        kind,
        **{party: contact},
        currency_code=currency,
        line_items=[
            {"account_id": env.accounts[a], "description": a, "rate": rate, "quantity": q}
            for a, rate, q in lines
        ],
    )
    rid, rec = run(env, kind, doc)
    assert rec.state == "posted", rec.last_error_message
    number = doc[f"{kind}_number"]
    [request] = requests_numbered(env, number)
    code, address, *_ = ps.LINKS[contact]
    assert rec.target_id == request["ID"] and rec.stable_ref == number
    assert request["VendorRemitToIdentifier"]["VendorCode"] == code
    assert request["VendorRemitToIdentifier"]["AddressCode"] == address
    assert request["CurrencyCode"] == currency
    places = 0 if currency == "JPY" else 2
    total = sum(rate * q for _, rate, q in lines)
    assert request["InvoiceAmount"] == f"{total:.{places}f}"
    got = [(line["Description"], line["TotalPrice"]) for line in ps.lines_of(request)]
    assert got == [(a, f"{rate * q:.{places}f}") for a, rate, q in lines]
    expense_types = [line["ExpenseTypeCode"] for line in ps.lines_of(request)]
    assert expense_types == [ps.RULES["expense_types"].get(a, "MISC") for a, _, _ in lines]
    check_schema(rec.mapped_payload)

    rows = ps.audit_rows(env.db, rid)
    assert [r.step for r in rows if r.to_state] == [
        "receive",
        "fetch",
        "map",
        "validate",
        "post",
        "post",
    ]
    assert rows[-1].step == "audit" and rows[-1].outcome == "completed"
    calls = [r for r in rows if r.http_method]
    assert [(r.step, r.http_method, r.http_status) for r in calls] == [
        ("fetch", "GET", 200),
        ("post", "POST", 200),
    ]  # the vendor came from the link's snapshot: no vendor lookup
    assert all(r.duration_ms is not None and r.correlation_id for r in calls)
    assert calls[-1].request_id  # Concur's concur-correlationid


def test_vendor_without_snapshot_is_looked_up_once_and_cached(env: Any) -> None:
    with env.db.session() as s:
        s.execute(update(VendorLink).values(concur_snapshot=None))
    payables_vendors.forget_vendors()
    ids = []
    for amount in (10, 20, 30):
        bill = env.admin.zoho_create(
            ps.ORG, "bill", vendor_name="Marriott International", amount=amount
        )
        rid, rec = run(env, "bill", bill)
        assert rec.state == "posted", rec.last_error_message
        ids.append(rid)
    lookups = [
        r
        for rid in ids
        for r in ps.audit_rows(env.db, rid)
        if r.http_path == "/api/v3.1/invoice/vendors"
    ]
    assert len(lookups) == 1 and lookups[0].step == "map"
    body = ps.record(env.db, ids[0]).mapped_payload
    assert body["VendorRemitToIdentifier"]["Name"] == "Marriott International"
    assert body["CountryCode"] == "US"


# --------------------------------------------------------------------------- waiting


def test_missing_vendor_waits_with_reason_then_posts_once_linked(env: Any) -> None:
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name=ps.UNLINKED_VENDOR, amount=75)
    contact_id = bill["vendor_id"]
    rid, rec = run(env, "bill", bill)
    assert rec.state == "waiting" and rec.step == "map"
    assert rec.last_error_message == (
        f"vendor '{ps.UNLINKED_VENDOR}' (Zoho contact {contact_id}) is not in Concur yet"
    )
    assert rec.last_error_code == "vendor"
    wait = (rec.next_attempt_at - rec.waiting_since).total_seconds()
    assert 59 <= wait <= 61  # default back-off starts at one minute
    assert requests_numbered(env, bill["bill_number"]) == []

    # Still missing at the next try: waits again, longer.
    with env.db.session() as s:
        s.execute(
            update(SyncRecord).where(SyncRecord.id == rid).values(next_attempt_at=rec.waiting_since)
        )
    assert pipeline.due_for_redrive(env.db, stale_after=300) == [(rid, pipeline.Step.MAP)]
    ps.drive(env.db, env.settings, rid)
    again = ps.record(env.db, rid)
    assert again.state == "waiting" and again.next_attempt_at > rec.next_attempt_at

    # The vendors flow creates the vendor in Concur and links it; the next try posts.
    ps.create_concur_vendor(env.sandbox.url, *ps.UNLINKED_CONCUR)
    ps.link(env.db, env.cid, contact_id, "AMAZON", "MAIN",
            {"VendorName": "Amazon Business", "CountryCode": "US", "CurrencyCode": "USD"})  # fmt: skip
    with env.db.session() as s:
        s.execute(
            update(SyncRecord).where(SyncRecord.id == rid).values(next_attempt_at=rec.waiting_since)
        )
    assert pipeline.due_for_redrive(env.db, stale_after=300) == [(rid, pipeline.Step.MAP)]
    ps.drive(env.db, env.settings, rid)
    done = ps.record(env.db, rid)
    assert done.state == "posted" and done.last_error_message is None
    [request] = requests_numbered(env, bill["bill_number"])
    assert request["VendorRemitToIdentifier"]["VendorCode"] == "AMAZON"


def test_missing_rules_wait_with_reason(env: Any) -> None:
    from connector.models import MappingRules

    with env.db.session() as s:
        s.execute(MappingRules.__table__.delete())
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=5)
    _, rec = run(env, "bill", bill)
    assert rec.state == "waiting" and rec.last_error_code == "mapping"
    assert "has no payables rules yet" in rec.last_error_message


@pytest.mark.parametrize("default", [None, "MISC"], ids=["no-default", "default"])
def test_unmapped_account(env: Any, default: str | None) -> None:
    ps.import_rules(
        env.db, env.cid, default_expense_type=default, expense_types={"Airfare": "AIRFR"}
    )
    bill = env.admin.zoho_create(
        ps.ORG,
        "bill",
        vendor_name="Delta Air Lines",
        line_items=[
            {"account_id": env.accounts["Airfare"], "rate": 100, "quantity": 1},
            {"account_id": env.accounts["Lodging"], "rate": 50, "quantity": 1},
            {"account_id": env.accounts["Mileage"], "rate": 5, "quantity": 1},
        ],
    )
    _, rec = run(env, "bill", bill)
    if default is None:
        assert rec.state == "waiting" and rec.last_error_code == "mapping"
        assert "'Lodging', 'Mileage'" in rec.last_error_message
    else:
        assert rec.state == "posted"
        [request] = requests_numbered(env, bill["bill_number"])
        assert [line["ExpenseTypeCode"] for line in ps.lines_of(request)] == [
            "AIRFR",
            "MISC",
            "MISC",
        ]


def test_disabled_currency_waits(env: Any) -> None:
    ps.import_rules(env.db, env.cid, currencies=["USD"])
    bill = env.admin.zoho_create(
        ps.ORG, "bill", vendor_name="Delta Air Lines", currency_code="EUR", amount=8
    )
    _, rec = run(env, "bill", bill)
    assert rec.state == "waiting" and rec.last_error_code == "currency"
    assert "'EUR'" in rec.last_error_message and "not enabled" in rec.last_error_message


# --------------------------------------------------------------------------- failures


def test_concur_400_fails_with_concurs_message(env: Any) -> None:
    ps.import_rules(env.db, env.cid, owner={"LedgerCode": "NOPE"})
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=5)
    rid, rec = run(env, "bill", bill)
    assert rec.state == "failed" and rec.step == "post"
    assert "Invalid LedgerCode NOPE" in rec.last_error_message
    assert requests_numbered(env, bill["bill_number"]) == []
    failed = [r for r in ps.audit_rows(env.db, rid) if r.to_state == "failed"]
    assert failed and failed[0].error_class == "InvalidRequestError"


def test_post_whose_answer_is_lost_is_found_not_posted_again(env: Any) -> None:
    env.admin.add_fault("POST", PR_PATH, "commit_then_fail")
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Staples Business", amount=250.4)
    rid = ps.new_record(env.db, env.cid, "bill", bill)
    first = ps.drive(env.db, env.settings, rid)
    assert first.action == "retry"  # connection reset after Concur stored it
    assert ps.record(env.db, rid).state == "posting"
    ps.drive(env.db, env.settings, rid)
    rec = ps.record(env.db, rid)
    assert rec.state == "posted"
    [request] = requests_numbered(env, bill["bill_number"])
    assert rec.target_id == request["ID"]
    outcomes = [r.outcome for r in ps.audit_rows(env.db, rid)]
    assert "adopted" in outcomes and "posted" not in outcomes
    calls = [(r.http_method, r.http_path) for r in ps.audit_rows(env.db, rid) if r.http_method]
    assert calls.count(("POST", "/api/v3.0/invoice/paymentrequest")) == 1
    assert ("GET", "/api/v3.0/invoice/paymentrequestdigests") in calls
    assert env.admin.duplicates()["concur"]["payment_requests"] == []


@pytest.mark.parametrize("fault", ["500", "503", "429", "drop"])
def test_transient_post_failures_post_exactly_once(env: Any, fault: str) -> None:
    env.admin.add_fault("POST", PR_PATH, fault)
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Staples Business", amount=99)
    rid = ps.new_record(env.db, env.cid, "bill", bill)
    assert ps.drive(env.db, env.settings, rid).action == "retry"
    ps.drive(env.db, env.settings, rid)
    assert ps.record(env.db, rid).state == "posted"
    assert len(requests_numbered(env, bill["bill_number"])) == 1


# --------------------------------------------------------------------------- voids


def test_void_never_posted_is_flagged_not_sent(env: Any) -> None:
    bill = env.admin.zoho_create(
        ps.ORG, "bill", vendor_name="Delta Air Lines", amount=40, status="void"
    )
    rid, rec = run(env, "bill", bill)
    assert rec.state == "failed" and rec.last_error_code == "void"
    assert rec.flags["void"] is True and "never sent to Concur" in rec.flags["needs_attention"]
    assert requests_numbered(env, bill["bill_number"]) == []
    assert "void" in [r.outcome for r in ps.audit_rows(env.db, rid)]


def test_void_after_posting_flags_the_concur_request(env: Any) -> None:
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=40)
    _, first = run(env, "bill", bill)
    assert first.state == "posted"
    new_version(env)
    voided = env.admin.zoho_edit(ps.ORG, "bill", bill["bill_id"], status="void")
    _, rec = run(env, "bill", voided)
    assert rec.id != first.id and rec.state == "failed" and rec.last_error_code == "void"
    assert rec.target_id == first.target_id
    assert f"sent to Concur as payment request {first.target_id}" in rec.last_error_message
    assert "a person must" in rec.flags["needs_attention"]
    assert len(requests_numbered(env, bill["bill_number"])) == 1  # untouched, never a second one


# --------------------------------------------------------------------------- edits


def test_edit_while_editable_updates_the_request_in_place(env: Any) -> None:
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=100)
    _, first = run(env, "bill", bill)
    new_version(env)
    edited = env.admin.zoho_edit(
        ps.ORG,
        "bill",
        bill["bill_id"],
        line_items=[
            {
                "account_id": env.accounts["Airfare"],
                "description": "Fare",
                "rate": 80,
                "quantity": 1,
            },
            {
                "account_id": env.accounts["Office Supplies"],
                "description": "Paper",
                "rate": 45.5,
                "quantity": 2,
            },
        ],
    )
    rid, rec = run(env, "bill", edited)
    assert rec.state == "posted" and rec.target_id == first.target_id
    assert [r.outcome for r in ps.audit_rows(env.db, rid) if r.to_state == "posted"] == ["updated"]
    [request] = requests_numbered(env, bill["bill_number"])
    assert request["InvoiceAmount"] == "171.00"
    assert [(line["Description"], line["TotalPrice"]) for line in ps.lines_of(request)] == [
        ("Fare", "80.00"),
        ("Paper", "91.00"),
    ]
    calls = [(r.http_method, r.http_path) for r in ps.audit_rows(env.db, rid) if r.http_method]
    assert calls == [
        ("GET", f"/bills/{bill['bill_id']}"),
        ("GET", f"/api/v3.0/invoice/paymentrequest/{first.target_id}"),
        ("PUT", "/api/v3.0/invoice/paymentrequest"),
    ]
    current = {"LineItems": {"LineItem": [{"LineItemId": "L1"}]}}
    body = payables_post.put_body(rec.mapped_payload, first.target_id, current)
    assert body["RequestID"] == first.target_id and "LedgerCode" not in body
    assert [line["Action"] for line in body["LineItems"]] == ["DELETE", "INSERT", "INSERT"]
    check_schema(body, put=True)


def test_edit_after_approval_is_flagged_not_changed(env: Any) -> None:
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=100)
    _, first = run(env, "bill", bill)
    ConcurAdmin(env.sandbox.url).advance_payment_request(first.target_id)
    new_version(env)
    edited = env.admin.zoho_edit(ps.ORG, "bill", bill["bill_id"], amount=130)
    rid, rec = run(env, "bill", edited)
    assert rec.state == "failed" and rec.last_error_code == "not_editable"
    assert rec.target_id == first.target_id
    assert (
        "approval status A_APPR" in rec.last_error_message
        and "not changed" in rec.last_error_message
    )
    assert rec.flags["needs_attention"] == rec.last_error_message
    assert "not_changed" in [r.outcome for r in ps.audit_rows(env.db, rid)]
    [request] = requests_numbered(env, bill["bill_number"])
    assert request["InvoiceAmount"] == "100.00"


def test_edit_nothing_concur_sees_sends_nothing(env: Any) -> None:
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=100)
    _, first = run(env, "bill", bill)
    new_version(env)
    edited = env.admin.zoho_edit(ps.ORG, "bill", bill["bill_id"], notes="internal note only")
    rid, rec = run(env, "bill", edited)
    assert rec.state == "posted" and rec.target_id == first.target_id
    assert [r.outcome for r in ps.audit_rows(env.db, rid) if r.to_state == "posted"] == [
        "unchanged"
    ]
    assert [r.http_method for r in ps.audit_rows(env.db, rid) if r.http_method] == [
        "GET"
    ]  # the fetch


def test_stale_hint_carries_the_newer_document_and_the_newer_record_sends_nothing(env: Any) -> None:
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=100)
    old = ps.new_record(env.db, env.cid, "bill", bill)  # the creation webhook, handled late
    new_version(env)
    edited = env.admin.zoho_edit(ps.ORG, "bill", bill["bill_id"], amount=175)
    ps.drive(env.db, env.settings, old)
    rec = ps.record(env.db, old)
    assert rec.state == "posted"
    assert (
        rec.flags["fetched_version"]
        == payables_documents.hint_version("bill", edited)
        != rec.source_version
    )
    assert "changed since the hint" in " ".join(r.message or "" for r in ps.audit_rows(env.db, old))
    [request] = requests_numbered(env, bill["bill_number"])
    assert request["InvoiceAmount"] == "175.00"
    rid, newer = run(env, "bill", edited)  # the edit's webhook
    assert newer.state == "posted" and newer.target_id == rec.target_id
    assert [r.outcome for r in ps.audit_rows(env.db, rid) if r.to_state == "posted"] == [
        "unchanged"
    ]
    assert len(requests_numbered(env, bill["bill_number"])) == 1


def test_older_version_after_newer_is_superseded(env: Any) -> None:
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=100)
    new_version(env)
    edited = env.admin.zoho_edit(ps.ORG, "bill", bill["bill_id"], amount=120)
    newer, rec_new = run(env, "bill", edited)
    assert rec_new.state == "posted"
    # The first version's record only now reaches post (it had mapped the old document).
    old = ps.new_record(env.db, env.cid, "bill", bill)
    with env.db.session() as s:
        s.execute(update(SyncRecord).where(SyncRecord.id == old).values(
            state="validated", step="post", source_payload={"bill": bill},
            mapped_payload=ps.record(env.db, newer).mapped_payload | {"InvoiceAmount": "100.00"}))  # fmt: skip
    ps.drive(env.db, env.settings, old)
    rec_old = ps.record(env.db, old)
    assert rec_old.state == "posted" and rec_old.target_id == rec_new.target_id
    assert [r.outcome for r in ps.audit_rows(env.db, old) if r.to_state == "posted"] == [
        "superseded"
    ]
    [request] = requests_numbered(env, bill["bill_number"])
    assert request["InvoiceAmount"] == "120.00"


def test_two_versions_never_post_at_once(env: Any) -> None:
    """v1's POST is in flight (slow Concur) when v2 reaches post: v2 waits, then updates."""
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=100)
    v1 = ps.new_record(env.db, env.cid, "bill", bill)
    for _ in range(3):  # fetch, map, validate (v1 fetched the first version)
        step = ps.record(env.db, v1).step
        FLOWS.run_step(
            env.db, v1, pipeline.Step(step), owner="a", lease_seconds=60, settings=env.settings
        )
    new_version(env)
    edited = env.admin.zoho_edit(ps.ORG, "bill", bill["bill_id"], amount=150)
    v2 = ps.new_record(env.db, env.cid, "bill", edited)
    for _ in range(3):
        step = ps.record(env.db, v2).step
        FLOWS.run_step(
            env.db, v2, pipeline.Step(step), owner="b", lease_seconds=60, settings=env.settings
        )
    assert ps.record(env.db, v1).step == ps.record(env.db, v2).step == "post"

    env.admin.add_fault("POST", PR_PATH, "delay", delay=1.5)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: outcome.setdefault(
            "v1",
            FLOWS.run_step(
                env.db, v1, pipeline.Step.POST, owner="a", lease_seconds=60, settings=env.settings
            ),
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    while not payables_ledger.claimed(ps.record(env.db, v1)):  # poll the ledger, no fixed sleep
        assert time.monotonic() < deadline, "v1 never claimed the document"
        time.sleep(0.02)
    second = FLOWS.run_step(
        env.db, v2, pipeline.Step.POST, owner="b", lease_seconds=60, settings=env.settings
    )
    assert second.action == "done" and second.state == "waiting"  # waits in the database
    waiting = ps.record(env.db, v2)
    assert "is being posted" in waiting.last_error_message and waiting.last_error_code == "document"
    worker.join(10)
    assert outcome["v1"].state == "posted"
    with env.db.session() as s:
        s.execute(
            update(SyncRecord)
            .where(SyncRecord.id == v2)
            .values(next_attempt_at=waiting.waiting_since)
        )
    assert pipeline.due_for_redrive(env.db, stale_after=300) == [(v2, pipeline.Step.POST)]
    ps.drive(env.db, env.settings, v2)
    rec2 = ps.record(env.db, v2)
    assert rec2.state == "posted" and rec2.target_id == ps.record(env.db, v1).target_id
    [request] = requests_numbered(env, bill["bill_number"])
    assert request["InvoiceAmount"] == "150.00"


def test_audit_step_enqueues_nothing_and_record_is_listed(env: Any) -> None:
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=1)
    rid, rec = run(env, "bill", bill)
    with env.db.session() as s:
        got = s.execute(
            select(SyncRecord.flow, SyncRecord.source_id, SyncRecord.source_ref).where(
                SyncRecord.id == rid
            )
        ).one()
    assert got == (
        "payables",
        f"bill:{bill['bill_id']}",
        f"bill {bill['bill_number']} (Delta Air Lines)",
    )
    assert rec.posted_at is not None and rec.posted_at <= dt.datetime.now(dt.UTC)


def test_vendor_flow_asked_when_link_missing(env: Any) -> None:
    """The vendors flow is asked to sync the unlinked contact; allowed to create vendors in
    Concur, it links it at once and the bill posts without waiting."""
    ps.import_rules(env.db, env.cid)
    from connector import rules

    doc = rules.load(env.db, env.cid).source
    rules.import_rules(env.db, env.cid, {**doc, "vendors": {}}, None)  # default: Zoho is master
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name=ps.UNLINKED_VENDOR, amount=64)
    rid, rec = run(env, "bill", bill)
    notes = [r.message for r in ps.audit_rows(env.db, rid) if r.outcome == "vendor_requested"]
    assert notes and f"Zoho contact {bill['vendor_id']}: linked to Concur vendor" in notes[0]
    assert rec.state == "posted", rec.last_error_message
    with env.db.session() as s:
        code = s.execute(
            select(VendorLink.concur_vendor_code).where(
                VendorLink.zoho_contact_id == bill["vendor_id"]
            )
        ).scalar_one()
    [request] = requests_numbered(env, bill["bill_number"])
    assert request["VendorRemitToIdentifier"]["VendorCode"] == code


def test_earlier_version_whose_post_landed_unrecorded_is_found_and_updated(env: Any) -> None:
    """v1's POST landed but its answer was lost and v1 went dead before it could search; v2 (an
    edit) searches by invoice number and vendor before creating, and updates that request."""
    env.admin.add_fault("POST", PR_PATH, "commit_then_fail")
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=100)
    v1 = ps.new_record(env.db, env.cid, "bill", bill)
    assert ps.drive(env.db, env.settings, v1).action == "retry"
    with env.db.session() as s:  # retries exhausted: the sweeper gave up on it
        s.execute(update(SyncRecord).where(SyncRecord.id == v1).values(state="dead"))
    [landed] = requests_numbered(env, bill["bill_number"])
    new_version(env)
    edited = env.admin.zoho_edit(ps.ORG, "bill", bill["bill_id"], amount=140)
    v2, rec = run(env, "bill", edited)
    assert rec.state == "posted" and rec.target_id == landed["ID"]
    assert [r.outcome for r in ps.audit_rows(env.db, v2) if r.to_state == "posted"] == ["updated"]
    [request] = requests_numbered(env, bill["bill_number"])
    assert request["InvoiceAmount"] == "140.00"


def test_default_custom_field_spelling_is_taken_when_concur_takes_only_plain(env: Any) -> None:
    """The reference page lists ``Custom1``…``Custom24``; a Concur that refuses the Swagger's
    ``Custom05`` still takes what the connector sends by default."""
    assert (
        ConcurAdmin(env.sandbox.url).settings(custom_field_spelling="plain")[
            "custom_field_spelling"
        ]
        == "plain"
    )
    ps.import_rules(env.db, env.cid, reference_custom_field=5)
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=21)
    _, rec = run(env, "bill", bill)
    assert rec.state == "posted", rec.last_error_message
    assert rec.mapped_payload["Custom5"] == bill["bill_id"] and "Custom05" not in rec.mapped_payload
    [request] = requests_numbered(env, bill["bill_number"])
    assert request["Custom5"] == bill["bill_id"]


def test_padded_spelling_stays_a_setting(env: Any) -> None:
    ConcurAdmin(env.sandbox.url).settings(custom_field_spelling="padded")
    ps.import_rules(env.db, env.cid, reference_custom_field=5, custom_field_style="padded")
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=22)
    _, rec = run(env, "bill", bill)
    assert rec.state == "posted", rec.last_error_message
    assert rec.mapped_payload["Custom05"] == bill["bill_id"]
