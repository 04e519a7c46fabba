"""Helpers shared by the expenses tests: rules for the sandbox, driving a record, checking a journal.

Not a test module (no ``test_`` prefix). The step and intake tests import it from their own
folder; the end-to-end test puts this folder on ``sys.path`` first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector import pipeline, rules
from connector.db import Database, utcnow
from connector.models import Step, SyncRecord
from flows import FLOWS

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"
JOURNALS_SPEC = SPECS / "zoho-books" / "journals.yml"

#: Sandbox Concur expense types and payment types -> sandbox Zoho accounts; cost centres by the
#: allocation's Custom1 list *value* ("Sales"), which is the Zoho option name.
ACCOUNTS = {
    "AIRFR": "Airfare",
    "HOTEL": "Lodging",
    "MEALS": "Meals and Entertainment",
    "CARRT": "Ground Transportation",
    "TAXIX": "Ground Transportation",
    "OFFSP": "Office Supplies",
    "TELEC": "Telephone Expense",
}
RULES: dict[str, Any] = {
    "expenses": {
        "accounts": dict(ACCOUNTS),
        "credit_accounts": {"CASH": "Employee Reimbursements", "CBCP": "Corporate Card"},
        "cost_centre": {"field": "Custom1", "tag": "Cost Center", "match": "value"},
    }
}


def import_rules(db: Database, connection_id: int, document: dict[str, Any]) -> None:
    """Store the rules schema-checked only (as if imported before Zoho was connected)."""
    from mappings.rules import register_flow_sections

    register_flow_sections()
    rules.import_rules(db, connection_id, document, None)


def drive(db: Database, settings: Any, record_id: int, *, max_steps: int = 30) -> str:
    """Run the record's steps in this process until it stops; transient retries run at once."""
    with db.session() as s:
        step = Step(s.get(SyncRecord, record_id).step)
    for _ in range(max_steps):
        result = FLOWS.run_step(
            db, record_id, step, owner="test-driver", lease_seconds=120, settings=settings
        )
        if result.action in ("next", "retry") and result.next_step is not None:
            step = result.next_step
            continue
        with db.session() as s:
            return s.get(SyncRecord, record_id).state
    raise AssertionError(f"record {record_id} did not stop within {max_steps} steps")


def redrive(db: Database, settings: Any, record_id: int) -> str:
    """What the sweeper does once a waiting record's back-off has elapsed, then drive it."""
    with db.session() as s:
        rec = s.get(SyncRecord, record_id)
        rec.next_attempt_at = utcnow() - dt.timedelta(seconds=1)
    due = pipeline.due_for_redrive(db, stale_after=300)
    assert record_id in {rid for rid, _ in due}, due
    return drive(db, settings, record_id)


def journal_validator() -> Any:
    """Zoho's ``create-a-journal-request`` schema (skips, or fails under CI, without the spec)."""
    from openapi_schema_validator import OAS30Validator

    if not JOURNALS_SPEC.is_file():
        message = f"Zoho Books journals spec not found at {JOURNALS_SPEC}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    spec = yaml.safe_load(JOURNALS_SPEC.read_text())
    return OAS30Validator(
        {"$ref": "#/components/schemas/create-a-journal-request", "components": spec["components"]}
    )


def spec_errors(validator: Any, body: dict[str, Any]) -> list[str]:
    wire = json.loads(json.dumps(body))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(wire)
    ]


def expected_journal(
    report: dict[str, Any], entries: list[dict[str, Any]], allocations: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the journal must hold, computed from Concur's raw v3 data independently of the flow:
    the total, the credit per payment type, and per (account, cost centre) the debit amounts
    before rounding (checked to the currency unit)."""
    total = Decimal(0)
    credits: dict[str, Decimal] = defaultdict(Decimal)
    debits: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    lines = 0
    allocs_by_entry: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in allocations:
        allocs_by_entry[a["EntryID"]].append(a)
    for e in entries:
        if e.get("IsPersonal"):
            continue
        amount = Decimal(str(e["ApprovedAmount"]))
        total += amount
        credits[e["PaymentTypeID"]] += amount
        account = ACCOUNTS[e["ExpenseTypeCode"]]
        shares = allocs_by_entry.get(e["ID"]) or [{"Percentage": "100"}]
        for a in shares:
            cc = (a.get("Custom1") or {}).get("Value")
            debits[(account, cc)] += amount * Decimal(str(a["Percentage"])) / 100
            lines += 1
    return {
        "total": total,
        "currency": report["CurrencyCode"],
        "credits": dict(credits),
        "debits": dict(debits),
        "debit_lines": lines,
    }


CREDIT_NAMES = {"CASH": "Employee Reimbursements", "CBCP": "Corporate Card"}


def check_journal(journal: dict[str, Any], expected: dict[str, Any], places: int) -> None:
    """A journal as Zoho returns it matches the report: balanced, total, credits, debits, tags."""
    unit = Decimal(1).scaleb(-places)
    side: dict[str, Decimal] = defaultdict(Decimal)
    debits: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    credits: dict[str, Decimal] = defaultdict(Decimal)
    debit_lines = 0
    for line in journal["line_items"]:
        amount = Decimal(str(line["amount"]))
        assert amount == amount.quantize(unit), line
        side[line["debit_or_credit"]] += amount
        if line["debit_or_credit"] == "debit":
            debit_lines += 1
            tags = line.get("tags") or []
            cc = next((t["tag_option_name"] for t in tags if t["tag_name"] == "Cost Center"), None)
            debits[(line["account_name"], cc)] += amount
        else:
            credits[line["account_name"]] += amount
    assert side["debit"] == side["credit"] == expected["total"], (side, expected["total"])
    assert Decimal(str(journal["total"])) == expected["total"]
    assert journal["currency_code"] == expected["currency"]
    assert debit_lines == expected["debit_lines"]
    assert dict(credits) == {CREDIT_NAMES[k]: v for k, v in expected["credits"].items()}
    assert set(debits) == set(expected["debits"])
    for key, exact in expected["debits"].items():
        # Each allocation line is within one unit of its exact share (largest remainder).
        lines_here = sum(
            1
            for li in journal["line_items"]
            if li["debit_or_credit"] == "debit" and li["account_name"] == key[0]
        )
        assert abs(debits[key] - exact) <= unit * lines_here, (key, debits[key], exact)
