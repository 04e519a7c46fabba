"""Expenses flow steps through ``connector.pipeline.run_step`` against the sandbox.

Real sandbox (Zoho Books + SAP Concur over HTTP), real database (SQLite and PostgreSQL), no
Celery: each test drives its records step by step in this process.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from expenses_support import (
    RULES,
    check_journal,
    drive,
    expected_journal,
    import_rules,
    journal_validator,
    redrive,
    spec_errors,
)
from sqlalchemy import select

from connector import connections, sync
from connector.db import Database
from connector.models import AuditEvent, SyncRecord
from connector.zoho import catalog
from connector.zoho.journals import Journals
from flows import FLOWS, expenses_lookups

JOURNALS_PATH = "/zoho/*/api/books/v3/journals"


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    # The sandbox is reset for every test; per-process Zoho caches must not outlive it.
    catalog.clear_cache()
    expenses_lookups.clear_caches()


@pytest.fixture
def env(db: Database, sandbox_settings: Any, connected: int) -> dict[str, Any]:
    settings = sandbox_settings
    return {
        "db": db,
        "settings": settings,
        "cid": connected,
        "zoho": connections.zoho_client(db, settings, connected),
        "concur": connections.concur_client(db, settings, connected).expense_reports,
    }


def poll_records(env: dict[str, Any]) -> dict[str, int]:
    """Run the back-stop pass; report id -> record id of every approved report."""
    result = FLOWS.sync(env["db"], env["settings"], env["cid"], "expenses")
    with env["db"].session() as s:
        rows = s.execute(select(SyncRecord).where(SyncRecord.flow == "expenses")).scalars()
        by_report = {r.source_id: r.id for r in rows}
    assert {rid for rid, _ in result.records} <= set(by_report.values())
    return by_report


def record(db: Database, record_id: int) -> SyncRecord:
    with db.session() as s:
        rec = s.get(SyncRecord, record_id)
        s.expunge(rec)
        return rec


def audits(db: Database, record_id: int, outcome: str | None = None) -> list[AuditEvent]:
    with db.session() as s:
        q = select(AuditEvent).where(AuditEvent.record_id == record_id)
        if outcome:
            q = q.where(AuditEvent.outcome == outcome)
        rows = list(s.execute(q.order_by(AuditEvent.id)).scalars())
        for row in rows:
            s.expunge(row)
        return rows


def concur_data(env: dict[str, Any], report_id: str) -> tuple[dict[str, Any], list, list]:
    api = env["concur"]
    return api.get(report_id), api.entries(report_id), api.allocations(report_id)


def test_approved_reports_become_balanced_journals(env: dict[str, Any], admin: Any) -> None:
    db, settings = env["db"], env["settings"]
    import_rules(db, env["cid"], RULES)
    by_report = poll_records(env)
    assert len(by_report) == 6  # the seeded approved reports (USD, EUR, JPY; splits; cash+card)
    validator = journal_validator()
    currencies = {c["currency_code"]: c for c in env["zoho"].currencies.iter_all()}
    seen = {"currencies": set(), "three_way": False, "personal": False, "both_payments": False}
    for report_id, rid in by_report.items():
        assert drive(db, settings, rid) == "posted", record(db, rid).last_error_message
        rec = record(db, rid)
        body = rec.mapped_payload["journal"]
        assert spec_errors(validator, body) == []
        assert body["reference_number"] == report_id == rec.stable_ref
        journal = Journals(env["zoho"]).get(rec.target_id)
        header, entries, allocations = concur_data(env, report_id)
        ccy = header["CurrencyCode"]
        places = int(currencies[ccy]["price_precision"])
        expected = expected_journal(header, entries, allocations)
        check_journal(journal, expected, places)
        assert expected["total"] == Decimal(str(header["TotalApprovedAmount"]))
        seen["currencies"].add(ccy)
        seen["personal"] |= any(e["IsPersonal"] for e in entries)
        seen["both_payments"] |= len(expected["credits"]) == 2
        seen["three_way"] |= any(Decimal(a["Percentage"]) == Decimal("33.33") for a in allocations)
        if ccy == "JPY":
            assert all(isinstance(li["amount"], int) for li in body["line_items"])
        if ccy != "USD":
            rate = currencies[ccy]["exchange_rate"]
            assert body["exchange_rate"] == rate and journal["exchange_rate"] == rate
            (row,) = audits(db, rid, "exchange_rate")
            assert row.details["source"] == "zoho:exchangerates"
            assert row.details["rate"] == str(rate) and row.details["effective_date"]
        else:
            assert "exchange_rate" not in body
        # Every outbound call of the record is in its audit trail.
        calls = [a for a in audits(db, rid) if a.http_method]
        assert ("POST", "/journals") in {(a.http_method, a.http_path) for a in calls}
    assert seen == {
        "currencies": {"USD", "EUR", "JPY"},
        "three_way": True,
        "personal": True,
        "both_payments": True,
    }
    assert admin.duplicates()["zoho"]["journals_by_reference_number"] == []
    # A second pass finds the same versions: nothing new, nothing posted twice.
    assert FLOWS.sync(db, settings, env["cid"], "expenses").records == []


def test_unmapped_expense_type_waits_then_posts_after_rules_import(env: dict[str, Any]) -> None:
    db, settings = env["db"], env["settings"]
    # No expenses: rules yet: the flow is off for the connection and collects nothing.
    result = FLOWS.sync(db, settings, env["cid"], "expenses")
    assert result.records == [] and "flow is off" in result.summary
    assert sync.read_cursor(db, env["cid"], "expenses") is None

    report_id = next(iter(env["concur"].iter_approved()))["ID"]
    _, entries, _ = concur_data(env, report_id)
    missing = next(e["ExpenseTypeCode"] for e in entries if not e["IsPersonal"])
    partial = {"expenses": {**RULES["expenses"], "accounts": dict(RULES["expenses"]["accounts"])}}
    del partial["expenses"]["accounts"][missing]
    import_rules(db, env["cid"], partial)
    rid = poll_records(env)[report_id]
    assert drive(db, settings, rid) == "waiting"
    rec = record(db, rid)
    assert rec.last_error_message == (
        f"expense type '{missing}' has no account mapping and no default_account is set"
    )
    assert rec.last_error_code == "mapping" and rec.step == "map"
    assert redrive(db, settings, rid) == "waiting"  # still unmapped: waits again, longer

    import_rules(db, env["cid"], RULES)
    assert redrive(db, settings, rid) == "posted"


def test_missing_account_waits_then_posts_once_the_accountant_adds_it(
    env: dict[str, Any],
) -> None:
    db, settings = env["db"], env["settings"]
    report_id = next(iter(env["concur"].iter_approved()))["ID"]
    _, entries, _ = concur_data(env, report_id)
    code = next(e["ExpenseTypeCode"] for e in entries if not e["IsPersonal"])
    document = {"expenses": {**RULES["expenses"], "accounts": {**RULES["expenses"]["accounts"]}}}
    document["expenses"]["accounts"][code] = "Travel Per Diem"
    import_rules(db, env["cid"], document)
    rid = poll_records(env)[report_id]

    assert drive(db, settings, rid) == "waiting"
    rec = record(db, rid)
    assert rec.last_error_message == "account 'Travel Per Diem' not found in chart of accounts"
    assert rec.last_error_code == "account"
    assert redrive(db, settings, rid) == "waiting"  # still missing: waits again, longer

    created = env["zoho"].request(
        "POST",
        "/chartofaccounts",
        json={"account_name": "Travel Per Diem", "account_type": "expense", "account_code": "6160"},
    )["chart_of_account"]
    # No cache clearing here: the miss itself makes the flow re-read the chart of accounts.
    assert redrive(db, settings, rid) == "posted"
    journal = Journals(env["zoho"]).get(record(db, rid).target_id)
    assert created["account_id"] in {li["account_id"] for li in journal["line_items"]}


def test_commit_then_fail_on_post_adopts_the_journal_instead_of_posting_twice(
    env: dict[str, Any], admin: Any
) -> None:
    db, settings = env["db"], env["settings"]
    import_rules(db, env["cid"], RULES)
    report_id, rid = next(iter(poll_records(env).items()))
    admin.add_fault("POST", JOURNALS_PATH, "commit_then_fail", count=1)
    assert drive(db, settings, rid) == "posted"
    rec = record(db, rid)
    assert rec.post_attempts == 2
    (found,) = Journals(env["zoho"]).find_by_reference(report_id)
    assert found["journal_id"] == rec.target_id
    assert [a.outcome for a in audits(db, rid) if a.step == "post" and a.to_state == "posted"] == [
        "adopted"
    ]
    assert admin.duplicates()["zoho"]["journals_by_reference_number"] == []


def test_transient_errors_retry_and_post_once(env: dict[str, Any], admin: Any) -> None:
    db, settings = env["db"], env["settings"]
    import_rules(db, env["cid"], RULES)
    report_id, rid = next(iter(poll_records(env).items()))
    admin.add_fault("GET", "/concur/*/api/v3.0/expense/entries", 429, count=1)
    admin.add_fault("POST", JOURNALS_PATH, 500, count=1)
    admin.add_fault("POST", JOURNALS_PATH, 429, count=1)
    assert drive(db, settings, rid) == "posted"
    assert len(Journals(env["zoho"]).find_by_reference(report_id)) == 1
    retries = [a for a in audits(db, rid, "retry")]
    assert {a.step for a in retries} == {"fetch", "post"} and len(retries) == 3


def test_reapproved_report_posts_the_new_version_and_flags_both_journals(
    env: dict[str, Any], admin: Any, sandbox: Any
) -> None:
    db, settings = env["db"], env["settings"]
    import_rules(db, env["cid"], RULES)
    by_report = poll_records(env)
    report_id, first = next(iter(by_report.items()))
    assert drive(db, settings, first) == "posted"
    first_journal = record(db, first).target_id

    # Concur: the processor sends the report back, an entry is corrected, it is approved again.
    company = sandbox.state.concur.store.company(sandbox_company(sandbox, report_id))
    from sandbox.concur.expense import recompute_totals

    with sandbox.state.lock:
        report = company.reports[report_id]
        report["ApprovalStatusCode"], report["PaymentStatusCode"] = "A_RESU", "P_NOTP"
        entry = next(
            company.entries[i]
            for i in company.entries_by_report[report_id]
            if not company.entries[i]["IsPersonal"]
        )
        entry["_approved"] = entry["_posted"] = entry["_posted"] - Decimal(1)
        recompute_totals(company, report)
    admin_concur(sandbox).approve(report_id)

    result = FLOWS.sync(db, settings, env["cid"], "expenses")
    assert len(result.records) == 1
    second = result.records[0][0]
    assert record(db, second).source_id == report_id
    assert record(db, second).source_version != record(db, first).source_version
    assert drive(db, settings, second) == "posted"
    rec = record(db, second)
    assert rec.target_id != first_journal
    assert rec.flags["new_version"]["journal_id"] == rec.target_id
    assert [p["journal_id"] for p in rec.flags["new_version"]["previous"]] == [first_journal]
    (flag,) = audits(db, second, "new_version")
    assert first_journal in flag.message and rec.target_id in flag.message
    # One journal per version: polling again and re-driving both records changes nothing.
    assert FLOWS.sync(db, settings, env["cid"], "expenses").records == []
    assert drive(db, settings, first) == "posted" and drive(db, settings, second) == "posted"
    assert len(Journals(env["zoho"]).find_by_reference(report_id)) == 2


def test_a_version_concur_moved_past_is_not_posted(env: dict[str, Any], sandbox: Any) -> None:
    db, settings = env["db"], env["settings"]
    import_rules(db, env["cid"], RULES)
    report_id, rid = next(iter(poll_records(env).items()))
    company = sandbox.state.concur.store.company(sandbox_company(sandbox, report_id))
    with sandbox.state.lock:
        company.reports[report_id]["ApprovalStatusCode"] = "A_RESU"
    assert drive(db, settings, rid) == "failed"
    rec = record(db, rid)
    assert "not approved" in rec.last_error_message and rec.target_id is None
    assert Journals(env["zoho"]).find_by_reference(report_id) == []


# --------------------------------------------------------------------------- sandbox helpers


def sandbox_company(sandbox: Any, report_id: str) -> str:
    for company in sandbox.state.concur.store.companies.values():
        if report_id in company.reports:
            return str(company.id)
    raise KeyError(report_id)


def admin_concur(sandbox: Any) -> Any:
    from sandbox.concur.admin import ConcurAdmin

    return ConcurAdmin(sandbox.url)
