"""Remit-to address resolution (``flows.remit_to``): a vendor with several Concur
remit-to addresses never reaches Concur without an ``AddressCode`` (Concur refuses it: "more
than one vendor matches"); the record waits with code ``remit_to`` instead, and the rules file
settles it. Run against the sandbox, whose GLOBEX vendor has two addresses (HQ, REMIT2)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import update

from connector import pipeline
from connector.db import Database
from connector.errors import ParkError
from connector.models import SyncRecord, VendorLink
from connector.operations import problems as operations_problems
from flows import backfill, payables_vendors, remit_to
from tests.flows import payables_support as ps


@pytest.fixture
def env(db: Database, sandbox_settings: Any, connected: int, admin: Any, sandbox: Any) -> Any:
    contacts = ps.set_up(db, sandbox_settings, connected, sandbox.url)

    class Env:
        pass

    e = Env()
    e.db, e.settings, e.cid, e.admin, e.sandbox = db, sandbox_settings, connected, admin, sandbox
    e.contacts = contacts
    return e


def unlink_address(env: Any, contact: str) -> None:
    """The contact stays linked to its Concur vendor code, with no address chosen."""
    with env.db.session() as s:
        s.execute(
            update(VendorLink)
            .where(VendorLink.zoho_contact_id == env.contacts[contact]["contact_id"])
            .values(concur_address_code="")
        )
    payables_vendors.forget_vendors()


def globex_invoice(env: Any, amount: float = 40) -> dict[str, Any]:
    return env.admin.zoho_create(
        ps.ORG, "invoice", customer_name="Globex Corporation", amount=amount
    )


def run(env: Any, kind: str, obj: dict[str, Any]) -> tuple[int, SyncRecord]:
    rid = ps.new_record(env.db, env.cid, kind, obj)
    ps.drive(env.db, env.settings, rid)
    return rid, ps.record(env.db, rid)


def retry(env: Any, rid: int, waiting: SyncRecord) -> SyncRecord:
    """The waiting record's next attempt, now (as the re-drive would run it once due)."""
    with env.db.session() as s:
        s.execute(
            update(SyncRecord)
            .where(SyncRecord.id == rid)
            .values(next_attempt_at=waiting.waiting_since)
        )
    assert pipeline.due_for_redrive(env.db, stale_after=300) == [(rid, pipeline.Step.MAP)]
    ps.drive(env.db, env.settings, rid)
    return ps.record(env.db, rid)


def test_several_addresses_and_none_chosen_waits_then_the_rule_settles_it(env: Any) -> None:
    unlink_address(env, "Globex Corporation")
    invoice = globex_invoice(env)
    rid, rec = run(env, "invoice", invoice)
    assert (rec.state, rec.step, rec.last_error_code) == ("waiting", "map", "remit_to")
    assert "Concur vendor GLOBEX" in rec.last_error_message
    assert "(HQ, REMIT2)" in rec.last_error_message
    assert "payables.remit_to" in rec.last_error_message
    assert ps.requests_numbered(env.sandbox, invoice["invoice_number"]) == []
    hint = operations_problems.fix_hint(rec.state, rec.last_error_code)
    assert "payables.remit_to" in hint

    ps.import_rules(env.db, env.cid, remit_to={"GLOBEX": "REMIT2"})
    done = retry(env, rid, rec)
    assert done.state == "posted", done.last_error_message
    [request] = ps.requests_numbered(env.sandbox, invoice["invoice_number"])
    assert request["VendorRemitToIdentifier"]["AddressCode"] == "REMIT2"


def test_the_rule_wins_over_the_links_address(env: Any) -> None:
    ps.import_rules(env.db, env.cid, remit_to={"globex": "REMIT2"})
    invoice = globex_invoice(env)
    _, rec = run(env, "invoice", invoice)
    assert rec.state == "posted", rec.last_error_message
    assert rec.mapped_payload["VendorRemitToIdentifier"]["AddressCode"] == "REMIT2"
    [request] = ps.requests_numbered(env.sandbox, invoice["invoice_number"])
    assert request["VendorRemitToIdentifier"]["AddressCode"] == "REMIT2"


def test_the_links_address_is_carried_to_concur(env: Any) -> None:
    invoice = globex_invoice(env)
    _, rec = run(env, "invoice", invoice)
    assert rec.state == "posted", rec.last_error_message
    assert rec.mapped_payload["VendorRemitToIdentifier"]["AddressCode"] == "HQ"


def test_a_vendors_only_address_is_used_when_the_link_has_none(env: Any) -> None:
    unlink_address(env, "Delta Air Lines")
    bill = env.admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=12)
    _, rec = run(env, "bill", bill)
    assert rec.state == "posted", rec.last_error_message
    [request] = ps.requests_numbered(env.sandbox, bill["bill_number"])
    assert request["VendorRemitToIdentifier"]["AddressCode"] == "MAIN"


def test_backfill_dry_run_reports_the_same_wait(env: Any) -> None:
    unlink_address(env, "Globex Corporation")
    invoice = globex_invoice(env)
    results = backfill.dry_run(
        env.db, env.settings, env.cid, "payables", dt.date.today(), sleep=lambda _s: None
    )
    [out] = [r for r in results if r["source_id"] == f"invoice:{invoice['invoice_id']}"]
    assert out["result"] == "would_wait", out
    assert any("(HQ, REMIT2)" in p for p in out["problems"]), out


# --------------------------------------------------------------------------- pure resolution


def _search(records: list[dict[str, str]]) -> Any:
    calls: list[str] = []

    def search(code: str) -> list[dict[str, str]]:
        calls.append(code)
        return records

    search.calls = calls  # type: ignore[attr-defined]
    return search


TWO = [
    {"VendorCode": "GLOBEX", "AddressCode": "REMIT2"},
    {"VendorCode": "GLOBEX", "AddressCode": "HQ"},
]


@pytest.mark.parametrize(
    ("rules", "link", "records", "expected"),
    [
        pytest.param({"GLOBEX": "REMIT2"}, "HQ", TWO, ("REMIT2", "rule"), id="rule-first"),
        pytest.param({}, "HQ", TWO, ("HQ", "link"), id="then-link"),
        pytest.param({"OTHER": "X"}, "", TWO[:1], ("REMIT2", "only"), id="then-only-address"),
    ],
)
def test_resolution_order(
    rules: dict[str, str], link: str, records: list[dict[str, str]], expected: tuple[str, str]
) -> None:
    search = _search(records)
    got = remit_to.resolve(rules, "globex", link, search, who="vendor 'G'", contact_id="9")
    assert (got.address_code, got.source) == expected
    assert search.calls == ([] if got.source != "only" else ["globex"])  # no lookup unless needed


def test_unresolved_lists_candidates_and_unknown_code_waits_for_the_vendor() -> None:
    with pytest.raises(remit_to.RemitToUnresolved) as caught:
        remit_to.resolve({}, "GLOBEX", " ", _search(TWO), who="customer 'G'", contact_id="9")
    assert (caught.value.dependency, caught.value.key) == ("remit_to", "GLOBEX")
    assert caught.value.candidates == ["HQ", "REMIT2"]
    with pytest.raises(ParkError) as missing:
        remit_to.resolve({}, "NOPE", "", _search([]), who="customer 'G'", contact_id="9")
    assert (missing.value.dependency, missing.value.key) == ("vendor", "9")
