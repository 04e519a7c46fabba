"""The rules file: one document per connection, every problem at once, Zoho names resolved."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from marshmallow import Schema, fields

from connector import connections, rules
from connector.errors import ValidationFailed
from connector.zoho.catalog import ZohoCatalog, clear_cache
from mappings.rules import register_flow_sections

RULES = """
vendors:
  master: zoho
  address_code: MAIN
payables:
  owner: {LedgerCode: DEFAULT}
  country_code: US
  expense_types:
    "6110": AIRFR
    Lodging: LODNG
  default_expense_type: OFFSP
expenses:
  accounts:
    AIRFR: Airfare
    LODNG: "6120"
  default_account: Travel Expense
  credit_accounts:
    CASH: Employee Reimbursements
    CBCP: Corporate Card
  cost_centre:
    field: Custom1
    tag: Cost Center
    options: {CC-100: Sales, CC-200: Engineering}
  journal_date: approval
  status: draft
"""


@pytest.fixture(autouse=True)
def _flow_sections() -> Any:
    saved = rules.sections()
    register_flow_sections()
    clear_cache()
    yield
    rules._SECTIONS.clear()
    rules._SECTIONS.update(saved)


@pytest.fixture
def catalog(db: Any, sandbox_settings: Any, connected: int) -> ZohoCatalog:
    return ZohoCatalog(connections.zoho_client(db, sandbox_settings, connected))


def test_import_resolves_ids_codes_and_names_and_export_round_trips(
    db: Any, connected: int, catalog: ZohoCatalog
) -> None:
    accounts = {a["account_name"]: a for a in catalog.client.accounts.iter_all()}
    document = rules.parse_text(RULES)
    document["expenses"]["accounts"]["MEALS"] = accounts["Meals and Entertainment"]["account_id"]
    stored = rules.import_rules(db, connected, document, catalog)
    assert stored.version == 1
    resolved = stored.resolved
    assert resolved["expenses"]["accounts"] == {
        "AIRFR": accounts["Airfare"]["account_id"],
        "LODNG": accounts["Lodging"]["account_id"],
        "MEALS": accounts["Meals and Entertainment"]["account_id"],
    }
    assert resolved["expenses"]["default_account"] == accounts["Travel Expense"]["account_id"]
    assert set(resolved["payables"]["expense_types"]) == {
        accounts["Airfare"]["account_id"],
        accounts["Lodging"]["account_id"],
    }
    tag = catalog.tag("Cost Center")
    assert resolved["expenses"]["cost_centre"]["tag"] == tag["tag_id"]
    options = {o["option_name"]: o["option_id"] for o in tag["options"]}
    assert resolved["expenses"]["cost_centre"]["options"] == {
        "CC-100": options["Sales"],
        "CC-200": options["Engineering"],
    }
    # What the operator wrote comes back out, and flows can read either form.
    loaded = rules.load(db, connected)
    assert yaml.safe_load(rules.export_text(loaded)) == document
    assert rules.section(db, connected, "expenses")["default_account"] == "Travel Expense"
    assert rules.section(db, connected, "vendors", resolved=True)["address_code"] == "MAIN"
    assert rules.import_rules(db, connected, document, catalog).version == 2


def test_import_lists_every_problem_at_once_and_stores_nothing(
    db: Any, connected: int, catalog: ZohoCatalog
) -> None:
    bad = rules.parse_text(RULES)
    bad["vendor"] = {"master": "zoho"}
    bad["payables"].pop("owner")
    bad["expenses"]["accounts"]["AIRFR"] = "Airfair"
    bad["expenses"]["cost_centre"]["options"]["CC-300"] = "Marketting"
    bad["vendors"]["master"] = "both"
    with pytest.raises(ValidationFailed) as caught:
        rules.import_rules(db, connected, bad, catalog)
    problems = caught.value.errors
    assert any(p.startswith("vendor: unknown section") for p in problems)
    assert any(p.startswith("payables.owner") for p in problems), problems
    assert any(p.startswith("vendors.master") for p in problems)
    assert "expenses.accounts.AIRFR: no Zoho account with id, code or name 'Airfair'" in problems
    assert any(p.startswith("expenses.cost_centre.options.CC-300") for p in problems)
    assert rules.load(db, connected) is None


def test_a_miss_reloads_the_cached_lists_once(
    db: Any, connected: int, catalog: ZohoCatalog, admin: Any
) -> None:
    assert catalog.account("Airfare") is not None
    calls = admin.stats()["total"]
    assert catalog.account("Airfare") is not None
    assert admin.stats()["total"] == calls  # served from the cache
    assert catalog.account("No Such Account") is None
    after_miss = admin.stats()["total"]
    assert after_miss > calls  # reloaded once on the miss
    assert catalog.account("Still Missing") is None
    assert admin.stats()["total"] == after_miss  # ... and only once per catalog


def test_bad_yaml_is_one_readable_problem() -> None:
    with pytest.raises(ValidationFailed, match="not valid YAML or JSON at line 3"):
        rules.parse_text("vendors:\n  master: [zoho\n")
    with pytest.raises(ValidationFailed, match="mapping of sections"):
        rules.parse_text("- a\n- b\n")


def test_a_flow_can_register_its_own_section_keys() -> None:
    class Extra(Schema):
        threshold = fields.Integer(required=True)

    rules.register_section("vendors", Extra)
    assert rules.validate_document({"vendors": {"threshold": 3}}, None) == {
        "vendors": {"threshold": 3}
    }
    with pytest.raises(ValidationFailed, match=r"vendors\.threshold"):
        rules.validate_document({"vendors": {}}, None)
