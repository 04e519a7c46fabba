"""Concur expense report -> Zoho journal mapping: rounding, rules, lookups and park reasons."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import MappingError, ParkError, ValidationFailed
from mappings.concur_reports import (
    ConcurReport,
    assemble_report,
    canonical_field_name,
    payment_type_of,
)
from mappings.expenses import NothingToPost, map_report, report_version, stable_reference
from mappings.expenses_lookups import ZohoLookups
from mappings.expenses_rules import ExpensesRules, parse_expenses_rules
from mappings.expenses_validation import validate_journal
from mappings.journals import DESCRIPTION_MAX_LENGTH, NOTES_MAX_LENGTH

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "concur"

# --------------------------------------------------------------------------- Zoho organization

ACCOUNTS = [
    ("Travel Expense", "expense", True),
    ("Lodging", "expense", True),
    ("Meals and Entertainment", "expense", True),
    ("Ground Transportation", "expense", True),
    ("Other Expenses", "other_expense", True),
    ("Legacy Travel (do not use)", "expense", False),
    ("Employee Reimbursements", "other_current_liability", True),
    ("Corporate Card Payable", "credit_card", True),
    ("Business Checking", "bank", True),
    ("Accounts Payable", "accounts_payable", True),
]
COST_CENTRES = ["Sales", "Engineering", "Marketing", "Operations", "Legacy"]
CURRENCIES = [("USD", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3)]


def org(
    base: str = "USD",
    *,
    drop_accounts: tuple[str, ...] = (),
    tag_mandatory: bool = False,
    with_tag: bool = True,
) -> ZohoLookups:
    """A Zoho organization as the flow would load it (numeric-string ids, like Zoho's)."""
    accounts = [
        {
            "account_id": str(460000000010001 + n),
            "account_name": name,
            "account_type": kind,
            "is_active": active,
        }
        for n, (name, kind, active) in enumerate(ACCOUNTS)
        if name not in drop_accounts
    ]
    options = [
        {"option_id": str(460000000048001 + n), "option_name": name, "is_active": name != "Legacy"}
        for n, name in enumerate(COST_CENTRES)
    ]
    tags = (
        [
            {
                "tag_id": "460000000094001",
                "tag_name": "Cost Center",
                "is_mandatory": tag_mandatory,
                "options": options,
            }
        ]
        if with_tag
        else []
    )
    currencies = [
        {
            "currency_id": str(460000000000097 + n),
            "currency_code": code,
            "price_precision": places,
            "is_base_currency": code == base,
        }
        for n, (code, places) in enumerate(CURRENCIES)
    ]
    return ZohoLookups.from_api(accounts=accounts, tags=tags, currencies=currencies)


ORG = org()


def account_id(name: str, lookups: ZohoLookups = ORG) -> str:
    return lookups.accounts_by_name[name][0].account_id


def option_id(name: str) -> int:
    return int(ORG.tags["Cost Center"].options[name].option_id)


RULES_SECTION: dict[str, Any] = {
    "accounts": {
        "AIRFR": "Travel Expense",
        "LODNG": "Lodging",
        "MEALS": "Meals and Entertainment",
        "CARRT": "Ground Transportation",
    },
    "credit_accounts": {"CASH": "Employee Reimbursements", "CBCP": "Corporate Card Payable"},
    "cost_centre": {
        "field": "Custom1",
        "tag": "Cost Center",
        "options": {
            "CC-100": "Sales",
            "CC-200": "Engineering",
            "CC-300": "Marketing",
            "CC-400": "Operations",
        },
    },
    "journal_date": "approval",
    "status": "published",
}


def rules(**changes: Any) -> ExpensesRules:
    section = copy.deepcopy(RULES_SECTION)
    for key, value in changes.items():
        if value is None:
            section.pop(key, None)
        else:
            section[key] = value
    return parse_expenses_rules(section)


# --------------------------------------------------------------------------- Concur data


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def raw_fixture(name: str) -> tuple[dict[str, Any], Any, Any]:
    return (
        fixture(f"report_{name}.json"),
        fixture(f"entries_{name}.json"),
        fixture(f"allocations_{name}.json"),
    )


def load(name: str) -> ConcurReport:
    return assemble_report(*raw_fixture(name))


REPORT_ID = "5D0C2A7E91B34F86A1C0"


def raw_report(currency: str = "USD", **extra: Any) -> dict[str, Any]:
    return {
        "ID": REPORT_ID,
        "Name": "Customer visit",
        "OwnerName": "Martin, Bob",
        "OwnerLoginID": "bob.martin@acme.example",
        "CurrencyCode": currency,
        "ApprovalStatusCode": "A_APPR",
        "PaymentStatusCode": "P_PROC",
        "SubmitDate": "2025-06-02T10:00:00.000",
        "ProcessingPaymentDate": "2025-06-03T11:00:00.000",
        "PaidDate": None,
        "LastModifiedDate": "2025-06-03T11:00:00.000",
        **extra,
    }


def raw_entry(
    n: int,
    amount: Any,
    *,
    expense_type: str = "AIRFR",
    payment: str = "CASH",
    personal: bool = False,
) -> dict[str, Any]:
    return {
        "ID": f"gWqE{n}$pX",
        "ReportID": REPORT_ID,
        "ExpenseTypeCode": expense_type,
        "ExpenseTypeName": expense_type.title(),
        "PaymentTypeID": payment,
        "PaymentTypeName": payment.title(),
        "ApprovedAmount": 0 if personal else amount,
        "PostedAmount": amount,
        "TransactionAmount": amount,
        "TransactionCurrencyCode": "USD",
        "TransactionDate": "2025-05-30T00:00:00",
        "IsPersonal": personal,
        "VendorDescription": "Vendor",
    }


def raw_alloc(n: int, entry: int, percentage: Any, code: str | None = "CC-100") -> dict[str, Any]:
    alloc: dict[str, Any] = {
        "ID": f"gWaA{entry}x{n}",
        "EntryID": f"gWqE{entry}$pX",
        "Percentage": percentage,
        "IsHidden": False,
    }
    if code is not None:
        alloc["Custom1"] = {"Type": "List", "Code": code, "Value": code, "ListItemID": "gWs1"}
    return alloc


def built(
    entries: list[dict[str, Any]],
    allocations: list[dict[str, Any]] | None = None,
    currency: str = "USD",
    **extra: Any,
) -> ConcurReport:
    return assemble_report(
        raw_report(currency, **extra), {"Items": entries}, {"Items": allocations or []}
    )


# --------------------------------------------------------------------------- body helpers


def amounts(body: dict[str, Any], side: str) -> list[Decimal]:
    return [Decimal(repr(x["amount"])) for x in body["line_items"] if x["debit_or_credit"] == side]


def total(body: dict[str, Any], side: str) -> Decimal:
    return sum(amounts(body, side), Decimal(0))


def credit_by_account(body: dict[str, Any]) -> dict[str, Decimal]:
    return {
        x["account_id"]: Decimal(repr(x["amount"]))
        for x in body["line_items"]
        if x["debit_or_credit"] == "credit"
    }


def park_reason(report: ConcurReport, r: ExpensesRules, lookups: ZohoLookups = ORG) -> ParkError:
    with pytest.raises(ParkError) as info:
        map_report(report, r, lookups, exchange_rate=Decimal("1.085"))
    return info.value


# =========================================================================== rules section


def test_rules_parse_with_defaults_and_one_spelling_of_custom_fields() -> None:
    r = parse_expenses_rules(
        {
            "accounts": {"AIRFR": "Travel Expense"},
            "credit_accounts": {"CASH": "Employee Reimbursements"},
            "cost_centre": {"field": "Custom01", "tag": "Cost Center"},
        }
    )
    assert r.journal_date == "approval" and r.status == "published"
    assert r.default_account is None
    assert r.cost_centre is not None and r.cost_centre.field == "Custom1"
    assert r.cost_centre.option_name("CC-7") == "CC-7"  # same name when not listed
    assert r.cost_centre.match == "code"


def test_rules_default_account_alone_is_enough() -> None:
    r = parse_expenses_rules(
        {
            "default_account": "Other Expenses",
            "credit_accounts": {"CASH": "Employee Reimbursements"},
        }
    )
    assert r.account_for("ANYTHING") == "Other Expenses"


def test_rules_problems_are_all_reported_at_once() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_expenses_rules(
            {
                "journal_date": "yesterday",
                "status": "posted",
                "cost_centre": {"field": "Department", "tag": "Cost Center", "colour": "red"},
                "credit_acounts": {"CASH": "Employee Reimbursements"},
            }
        )
    message = str(info.value)
    for fragment in (
        "expenses.journal_date",
        "expenses.status",
        "expenses.cost_centre.field",
        "expenses.cost_centre.colour",
        "expenses.credit_acounts",  # the typo is named...
        "expenses.credit_accounts",  # ...and the key it should have been is missing
    ):
        assert fragment in message, fragment
    assert "journal_date" in info.value.errors


def test_rules_need_some_debit_account() -> None:
    with pytest.raises(ValidationFailed, match="default_account"):
        parse_expenses_rules({"credit_accounts": {"CASH": "Employee Reimbursements"}})


# =========================================================================== Concur reading


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        pytest.param("Custom1", "Custom1", id="v3-expense"),
        pytest.param("Custom01", "Custom1", id="zero-padded"),
        pytest.param("custom9", "Custom9", id="v4-customData"),
        pytest.param("CUSTOM020", "Custom20", id="shouting"),
        pytest.param("OrgUnit02", "OrgUnit2", id="org-unit"),
    ],
)
def test_custom_field_names_have_one_spelling(name: str, canonical: str) -> None:
    assert canonical_field_name(name) == canonical


@pytest.mark.parametrize("name", ["Department", "Custom", "Custom0", "Custom1a"])
def test_custom_field_name_rejects_others(name: str) -> None:
    with pytest.raises(ValueError, match="not a Concur custom field"):
        canonical_field_name(name)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param({"PaymentTypeID": "CBCP"}, "CBCP", id="id-only"),
        pytest.param({"PaymentTypeCode": "IBIP", "PaymentTypeID": "gWpt$s1"}, "IBIP", id="code"),
        pytest.param({"PaymentTypeCode": "", "PaymentTypeID": "CASH"}, "CASH", id="empty-code"),
        pytest.param({}, "", id="none"),
    ],
)
def test_payment_type_code_choice(item: dict[str, Any], expected: str) -> None:
    assert payment_type_of(item) == expected


def test_assemble_reads_the_fixture_as_concur_returns_it() -> None:
    report = load("usd_mixed")
    assert report.id == "0F3A9C1B7E5D4A2C8B61"
    assert report.currency == "USD"
    assert report.owner_name == "Chen, Alice"
    # Personal entry set aside; four business entries across two entries pages.
    assert len(report.entries) == 4 and len(report.personal_entries) == 1
    assert report.approved_total == Decimal("482.35") == report.reported_approved_total
    car = next(e for e in report.entries if e.expense_type_code == "CARRT")
    # ApprovedAmount is in the report currency; TransactionAmount is what Sixt charged in EUR.
    assert car.approved_amount == Decimal("86.80")
    assert (car.transaction_amount, car.transaction_currency) == (Decimal("80.00"), "EUR")
    assert [a.percentage for a in car.allocations] == [
        Decimal("33.33333333"),
        Decimal("33.33333333"),
        Decimal("33.33333334"),
    ]
    cc = car.allocations[0].custom("Custom01")
    assert cc is not None and (cc.code, cc.value) == ("CC-100", "Sales")
    assert all(isinstance(e.approved_amount, Decimal) for e in report.entries)


def test_assemble_dedupes_repeated_items_and_ignores_strangers() -> None:
    entries = [raw_entry(1, 10), raw_entry(1, 10), {**raw_entry(2, 99), "ReportID": "OTHER"}]
    allocs = [raw_alloc(1, 1, 100), raw_alloc(1, 1, 100), raw_alloc(1, 7, 100)]
    report = built(entries, allocs)
    assert [e.id for e in report.entries] == ["gWqE1$pX"]
    assert len(report.entries[0].allocations) == 1


def test_assemble_reports_every_malformed_item() -> None:
    bad_entry = {**raw_entry(1, 10), "ApprovedAmount": "ten"}
    bad_alloc = {"ID": "a", "EntryID": "gWqE1$pX"}  # no Percentage
    with pytest.raises(ValidationFailed) as info:
        assemble_report(
            {"Name": "x"}, {"Items": [bad_entry]}, {"Items": [bad_alloc]}
        )  # and no ID/CurrencyCode
    assert set(info.value.errors) == {"report", "entries[0]", "allocations[0]"}


def test_zero_padded_custom_field_keys_map_the_same() -> None:
    report_json, entries, allocs = raw_fixture("usd_mixed")
    padded = copy.deepcopy(allocs)
    for page in padded:
        for item in page["Items"]:
            item["Custom01"] = item.pop("Custom1")
    plain = map_report(load("usd_mixed"), rules(), ORG, exchange_rate=None)
    zero = map_report(
        assemble_report(report_json, entries, padded), rules(), ORG, exchange_rate=None
    )
    assert plain == zero


# =========================================================================== the journal


def test_usd_report_with_cash_and_company_card() -> None:
    body = map_report(load("usd_mixed"), rules(), ORG, exchange_rate=None)

    assert body["reference_number"] == "0F3A9C1B7E5D4A2C8B61"
    assert body["journal_date"] == "2025-06-04"  # ProcessingPaymentDate: approvals completed
    assert body["status"] == "published"
    assert body["currency_id"] == ORG.currencies["USD"].currency_id
    assert "exchange_rate" not in body
    assert "Q2 Berlin Offsite" in body["notes"] and "Chen, Alice" in body["notes"]

    assert amounts(body, "debit") == [
        Decimal(x)
        for x in (
            "33.33",
            "33.33",
            "33.34",  # airfare 100.00 three ways
            "250.00",  # hotel on the company card
            "22.78",
            "22.77",  # meal 45.55 half and half: the odd cent goes first
            "28.93",
            "28.93",
            "28.94",  # car 86.80 by 33.33333333/33.33333333/33.33333334
        )
    ]
    # Credits per payment type; the personal 30.00 minibar charge is neither debited nor credited.
    assert credit_by_account(body) == {
        account_id("Employee Reimbursements"): Decimal("232.35"),
        account_id("Corporate Card Payable"): Decimal("250.00"),
    }
    assert total(body, "debit") == total(body, "credit") == Decimal("482.35")
    airfare = [x for x in body["line_items"] if x["account_id"] == account_id("Travel Expense")]
    assert [x["tags"][0]["tag_option_id"] for x in airfare] == [
        option_id("Sales"),
        option_id("Engineering"),
        option_id("Marketing"),
    ]
    validate_journal(body, currency_precision=2)


@pytest.mark.parametrize(
    ("currency", "amount", "percentages", "expected"),
    [
        pytest.param("USD", "100.00", ["33.33", "33.33", "33.34"], ["33.33", "33.33", "33.34"]),
        pytest.param(
            "USD",
            "100.00",
            ["33.33333333", "33.33333333", "33.33333334"],
            ["33.33"] * 2 + ["33.34"],
        ),
        pytest.param("USD", "100.00", ["33.34", "33.33", "33.33"], ["33.34", "33.33", "33.33"]),
        pytest.param("USD", "10.00", ["33.33", "33.33", "33.34"], ["3.33", "3.33", "3.34"]),
        pytest.param("USD", "0.05", ["50", "50"], ["0.03", "0.02"], id="odd-cent-50-50"),
        pytest.param("USD", "45.55", ["50", "50"], ["22.78", "22.77"], id="odd-cent-45.55"),
        pytest.param("USD", "0.01", ["50", "50"], ["0.01"], id="one-cent-zero-line-dropped"),
        pytest.param("JPY", "10000", ["33.33", "33.33", "33.34"], ["3333", "3333", "3334"]),
        pytest.param("JPY", "100", ["33.33", "33.33", "33.34"], ["33", "33", "34"]),
        pytest.param("JPY", "1001", ["50", "50"], ["501", "500"], id="jpy-odd-yen"),
        pytest.param("KWD", "10.000", ["33.33", "33.33", "33.34"], ["3.333", "3.333", "3.334"]),
    ],
)
def test_allocation_split_is_exact_per_entry(
    currency: str, amount: str, percentages: list[str], expected: list[str]
) -> None:
    allocs = [raw_alloc(n, 1, p) for n, p in enumerate(percentages)]
    report = built([raw_entry(1, amount)], allocs, currency=currency)
    rate = None if currency == "USD" else Decimal("0.0064")
    body = map_report(report, rules(), ORG, exchange_rate=rate)
    assert amounts(body, "debit") == [Decimal(x) for x in expected]
    assert total(body, "credit") == total(body, "debit") == Decimal(amount)
    places = ORG.currencies[currency].precision
    if places == 0:
        assert all(isinstance(x["amount"], int) for x in body["line_items"])
    validate_journal(body, currency_precision=places)


def test_jpy_report_in_a_usd_organization() -> None:
    body = map_report(load("jpy"), rules(), ORG, exchange_rate=Decimal("0.0064"))
    assert body["currency_id"] == ORG.currencies["JPY"].currency_id
    assert body["exchange_rate"] == 0.0064
    assert [x["amount"] for x in body["line_items"]] == [3333, 3333, 3334, 501, 500, 10000, 1001]
    assert all(type(x["amount"]) is int for x in body["line_items"])
    assert total(body, "debit") == total(body, "credit") == Decimal(11001)
    assert '"amount": 3333,' in json.dumps(body)  # no "3333.0" on the wire
    validate_journal(body, currency_precision=0)


def test_eur_report_in_a_usd_organization_keeps_report_currency_amounts() -> None:
    body = map_report(load("eur"), rules(), ORG, exchange_rate=Decimal("1.085"))
    assert body["currency_id"] == ORG.currencies["EUR"].currency_id
    assert body["exchange_rate"] == 1.085
    # The hotel was paid in GBP (350.00) but posted and approved as 412.50 EUR.
    assert amounts(body, "debit") == [Decimal("412.50"), Decimal("124.09"), Decimal("62.03")]
    assert total(body, "credit") == Decimal("598.62")
    validate_journal(body, currency_precision=2)


def test_eur_report_in_a_eur_organization_sends_no_rate() -> None:
    body = map_report(load("eur"), rules(), org(base="EUR"), exchange_rate=Decimal("1.085"))
    assert "exchange_rate" not in body


def test_foreign_report_without_a_rate_waits() -> None:
    with pytest.raises(ParkError) as info:
        map_report(load("eur"), rules(), ORG, exchange_rate=None)
    assert info.value.dependency == "currency"
    assert info.value.reason == "no exchange rate from EUR to USD is available"


def test_currency_not_enabled_waits() -> None:
    report = built([raw_entry(1, "10.00")], [raw_alloc(0, 1, 100)], currency="GBP")
    error = park_reason(report, rules())
    assert error.reason == "currency 'GBP' is not enabled in the organization"
    assert (error.dependency, error.key) == ("currency", "GBP")


@pytest.mark.parametrize(
    ("rule", "extra", "expected"),
    [
        pytest.param("approval", {}, "2025-06-03", id="approval=ProcessingPaymentDate"),
        pytest.param("submit", {}, "2025-06-02"),
        pytest.param("processing_payment", {}, "2025-06-03"),
        pytest.param("paid", {"PaidDate": "2025-06-20T08:00:00.000"}, "2025-06-20"),
    ],
)
def test_journal_date_rule(rule: str, extra: dict[str, Any], expected: str) -> None:
    report = built([raw_entry(1, "10.00")], [raw_alloc(0, 1, 100)], **extra)
    body = map_report(report, rules(journal_date=rule), ORG, exchange_rate=None)
    assert body["journal_date"] == expected


def test_journal_date_paid_waits_until_paid() -> None:
    report = built([raw_entry(1, "10.00")], [raw_alloc(0, 1, 100)])
    error = park_reason(report, rules(journal_date="paid"))
    assert error.dependency == "report"
    assert error.reason == "report has no paid date (PaidDate) yet (journal_date: paid)"


def test_event_approval_instant_is_only_a_fallback() -> None:
    from datetime import datetime

    event_time = datetime.fromisoformat("2025-06-05T10:00:00")
    report_json, entries, allocs = raw_fixture("usd_mixed")
    report = assemble_report(report_json, entries, allocs, approved_at=event_time)
    assert map_report(report, rules(), ORG, exchange_rate=None)["journal_date"] == "2025-06-04"
    report_json["ProcessingPaymentDate"] = None
    report = assemble_report(report_json, entries, allocs, approved_at=event_time)
    assert map_report(report, rules(), ORG, exchange_rate=None)["journal_date"] == "2025-06-05"


def test_status_draft() -> None:
    body = map_report(load("usd_mixed"), rules(status="draft"), ORG, exchange_rate=None)
    assert body["status"] == "draft"


def test_refund_entry_becomes_a_credit_on_the_expense_account() -> None:
    report = built(
        [raw_entry(1, "200.00"), raw_entry(2, "-50.00")],
        [raw_alloc(0, 1, 100), raw_alloc(0, 2, 100)],
    )
    body = map_report(report, rules(), ORG, exchange_rate=None)
    travel = account_id("Travel Expense")
    sides = [(x["account_id"], x["debit_or_credit"], x["amount"]) for x in body["line_items"]]
    assert sides == [
        (travel, "debit", 200.0),
        (travel, "credit", 50.0),
        (account_id("Employee Reimbursements"), "credit", 150.0),
    ]
    validate_journal(body, currency_precision=2)


def test_all_personal_report_has_nothing_to_post() -> None:
    report = built([raw_entry(1, "30.00", personal=True)], [raw_alloc(0, 1, 100)])
    with pytest.raises(NothingToPost):
        map_report(report, rules(), ORG, exchange_rate=None)


def test_entry_without_allocations_is_one_untagged_line() -> None:
    body = map_report(built([raw_entry(1, "12.34")]), rules(), ORG, exchange_rate=None)
    assert amounts(body, "debit") == [Decimal("12.34")]
    assert "tags" not in body["line_items"][0]


def test_mandatory_tag_without_a_value_waits() -> None:
    report = built([raw_entry(1, "12.34")], [raw_alloc(0, 1, 100, code=None)])
    error = park_reason(report, rules(), org(tag_mandatory=True))
    assert error.dependency == "tag"
    assert "no Custom1 value for the mandatory reporting tag 'Cost Center'" in error.reason


def test_cost_centre_by_list_value() -> None:
    cost_centre = {"field": "Custom1", "tag": "Cost Center", "match": "value"}
    report_json, entries, allocs = raw_fixture("usd_mixed")
    body = map_report(
        assemble_report(report_json, entries, allocs),
        rules(cost_centre=cost_centre),
        ORG,
        exchange_rate=None,
    )
    assert body["line_items"][0]["tags"][0]["tag_option_id"] == option_id("Sales")


def test_without_cost_centre_rule_no_tags_are_sent() -> None:
    body = map_report(load("usd_mixed"), rules(cost_centre=None), ORG, exchange_rate=None)
    assert all("tags" not in x for x in body["line_items"])


def test_long_names_are_clipped_to_zoho_lengths() -> None:
    report = built(
        [{**raw_entry(1, "10.00"), "VendorDescription": "V" * 300}],
        [raw_alloc(0, 1, 100)],
        Name="N" * 800,
    )
    body = map_report(report, rules(), ORG, exchange_rate=None)
    assert len(body["notes"]) <= NOTES_MAX_LENGTH
    assert all(len(x["description"]) <= DESCRIPTION_MAX_LENGTH for x in body["line_items"])


@settings(max_examples=150, deadline=None)
@given(
    entries=st.lists(
        st.tuples(
            st.integers(min_value=-50_000, max_value=5_000_000),  # cents
            st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=5),
            st.sampled_from(["CASH", "CBCP"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_report_balances_and_totals_the_approved_sum(
    entries: list[tuple[int, list[int], str]],
) -> None:
    raw_entries, raw_allocs = [], []
    for n, (cents, weights, payment) in enumerate(entries):
        raw_entries.append(raw_entry(n, str(Decimal(cents) / 100), payment=payment))
        scale = Decimal(100) / sum(weights)
        for k, w in enumerate(weights):
            raw_allocs.append(raw_alloc(k, n, str((w * scale).quantize(Decimal("0.00000001")))))
    report = built(raw_entries, raw_allocs)
    if all(cents == 0 for cents, _, _ in entries):
        with pytest.raises(NothingToPost):
            map_report(report, rules(), ORG, exchange_rate=None)
        return
    body = map_report(report, rules(), ORG, exchange_rate=None)
    validate_journal(body, currency_precision=2)  # balanced, positive, 2 decimals
    liabilities = {account_id("Employee Reimbursements"), account_id("Corporate Card Payable")}
    expense_net = sum(
        (
            Decimal(repr(x["amount"])) * (1 if x["debit_or_credit"] == "debit" else -1)
            for x in body["line_items"]
            if x["account_id"] not in liabilities
        ),
        Decimal(0),
    )
    assert expense_net == report.approved_total


# =========================================================================== park reasons


@pytest.mark.parametrize(
    ("changes", "drop", "dependency", "reason"),
    [
        pytest.param(
            {"accounts": {k: v for k, v in RULES_SECTION["accounts"].items() if k != "LODNG"}},
            (),
            "mapping",
            "expense type 'LODNG' has no account mapping and no default_account is set",
            id="unmapped-type",
        ),
        pytest.param(
            {},
            ("Lodging",),
            "account",
            "account 'Lodging' not found in chart of accounts",
            id="missing-account",
        ),
        pytest.param(
            {"accounts": {**RULES_SECTION["accounts"], "LODNG": "Legacy Travel (do not use)"}},
            (),
            "account",
            "account 'Legacy Travel (do not use)' is inactive",
            id="inactive-account",
        ),
        pytest.param(
            {"accounts": {**RULES_SECTION["accounts"], "LODNG": "Business Checking"}},
            (),
            "account",
            "account 'Business Checking' is of type 'bank', which cannot be debited for an expense",
            id="bank-as-expense",
        ),
        pytest.param(
            {"credit_accounts": {"CASH": "Travel Expense", "CBCP": "Corporate Card Payable"}},
            (),
            "account",
            "account 'Travel Expense' is of type 'expense', "
            "which cannot be credited for an expense payment",
            id="expense-as-credit",
        ),
        pytest.param(
            {"credit_accounts": {"CASH": "Accounts Payable", "CBCP": "Corporate Card Payable"}},
            (),
            "account",
            "account 'Accounts Payable' is of type 'accounts_payable', "
            "which cannot be credited for an expense payment",
            id="payable-needs-vendor",
        ),
        pytest.param(
            {"credit_accounts": {"CASH": "Employee Reimbursements"}},
            (),
            "mapping",
            "payment type 'CBCP' has no account mapping in credit_accounts",
            id="unmapped-payment-type",
        ),
        pytest.param(
            {"cost_centre": {"field": "Custom1", "tag": "Cost Centre"}},
            (),
            "tag",
            "reporting tag 'Cost Centre' not found",
            id="missing-tag",
        ),
        pytest.param(
            {
                "cost_centre": {
                    "field": "Custom1",
                    "tag": "Cost Center",
                    "options": {"CC-100": "Sales", "CC-200": "Engineering", "CC-400": "Operations"},
                }
            },
            (),
            "tag",
            "tag option 'CC-300' not found under 'Cost Center'",
            id="option-same-name-missing",
        ),
        pytest.param(
            {
                "cost_centre": {
                    "field": "Custom1",
                    "tag": "Cost Center",
                    "options": {
                        "CC-100": "Legacy",
                        "CC-200": "Engineering",
                        "CC-300": "Marketing",
                        "CC-400": "Operations",
                    },
                }
            },
            (),
            "tag",
            "tag option 'Legacy' (Concur 'CC-100') under 'Cost Center' is inactive",
            id="option-inactive",
        ),
    ],
)
def test_missing_dependency_waits_with_the_exact_reason(
    changes: dict[str, Any], drop: tuple[str, ...], dependency: str, reason: str
) -> None:
    error = park_reason(load("usd_mixed"), rules(**changes), org(drop_accounts=drop))
    assert error.reason == reason
    assert error.dependency == dependency
    assert [p["reason"] for p in error.context["problems"]] == [reason]


def test_unmapped_type_uses_default_account() -> None:
    body = map_report(
        load("usd_mixed"),
        rules(accounts={"AIRFR": "Travel Expense"}, default_account="Other Expenses"),
        ORG,
        exchange_rate=None,
    )
    other = account_id("Other Expenses")
    assert sum(
        (Decimal(repr(x["amount"])) for x in body["line_items"] if x["account_id"] == other),
        Decimal(0),
    ) == Decimal("382.35")


def test_missing_tag_option_from_concur_data() -> None:
    report_json, entries, allocs = raw_fixture("usd_mixed")
    allocs[0]["Items"][0]["Custom1"]["Code"] = "CC-999"
    error = park_reason(assemble_report(report_json, entries, allocs), rules())
    assert error.reason == "tag option 'CC-999' not found under 'Cost Center'"
    assert (error.dependency, error.key) == ("tag", "Cost Center:CC-999")


def test_only_mapping_problems_raise_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        map_report(
            load("usd_mixed"),
            rules(
                accounts={"AIRFR": "Travel Expense"},
                credit_accounts={"CASH": "Employee Reimbursements"},
            ),
            ORG,
            exchange_rate=None,
        )
    reasons = [p["reason"] for p in info.value.context["problems"]]
    assert info.value.key == "LODNG"
    assert reasons == [
        "expense type 'LODNG' has no account mapping and no default_account is set",
        "payment type 'CBCP' has no account mapping in credit_accounts",
        "expense type 'MEALS' has no account mapping and no default_account is set",
        "expense type 'CARRT' has no account mapping and no default_account is set",
    ]


def test_every_problem_is_listed_in_one_park_error() -> None:
    report_json, entries, allocs = raw_fixture("usd_mixed")
    allocs[0]["Items"][0]["Custom1"]["Code"] = "CC-999"
    report_json["CurrencyCode"] = "GBP"
    for page in entries:
        for item in page["Items"]:
            if item["ExpenseTypeCode"] == "CARRT":
                item["ExpenseTypeCode"] = "TAXIX"
    report = assemble_report(report_json, entries, allocs)
    r = rules(
        accounts={
            "AIRFR": "Travel Expense",
            "LODNG": "Lodging",
            "MEALS": "Legacy Travel (do not use)",
        },
        credit_accounts={"CASH": "Employee Reimbursements", "CBCP": "Business Checking Typo"},
    )
    error = park_reason(report, r, org(drop_accounts=("Lodging",)))
    expected = {
        "currency 'GBP' is not enabled in the organization",
        "tag option 'CC-999' not found under 'Cost Center'",
        "account 'Lodging' not found in chart of accounts",
        "account 'Business Checking Typo' not found in chart of accounts",
        "account 'Legacy Travel (do not use)' is inactive",
        "expense type 'TAXIX' has no account mapping and no default_account is set",
    }
    got = {p["reason"] for p in error.context["problems"]}
    assert got == expected
    assert error.reason.startswith(f"{len(expected)} problems: ")
    assert all(reason in error.reason for reason in expected)
    assert not isinstance(error, MappingError)
    assert error.dependency == "mapping"  # the first thing to fix
    assert error.key == "TAXIX"


def test_same_missing_account_is_reported_once() -> None:
    report = built(
        [raw_entry(1, "10.00", expense_type="LODNG"), raw_entry(2, "20.00", expense_type="LODNG")],
        [raw_alloc(0, 1, 100), raw_alloc(0, 2, 100)],
    )
    error = park_reason(report, rules(), org(drop_accounts=("Lodging",)))
    assert error.reason == "account 'Lodging' not found in chart of accounts"


def test_allocations_not_covering_the_entry_wait() -> None:
    report = built([raw_entry(1, "10.00")], [raw_alloc(0, 1, 60), raw_alloc(1, 1, 30)])
    error = park_reason(report, rules())
    assert error.dependency == "report"
    assert error.reason == "allocations of entry 'gWqE1$pX' (AIRFR) add up to 90%, not 100%"


def test_concur_total_mismatch_waits() -> None:
    report = built([raw_entry(1, "10.00")], [raw_alloc(0, 1, 100)], TotalApprovedAmount=25.0)
    error = park_reason(report, rules())
    assert error.reason == (
        "Concur's TotalApprovedAmount 25.0 USD does not match the approved entries' sum 10.00 USD"
    )


# =========================================================================== validate_journal


def _valid_body() -> dict[str, Any]:
    return map_report(load("usd_mixed"), rules(), ORG, exchange_rate=None)


def test_validate_accepts_what_the_mapper_makes() -> None:
    validate_journal(_valid_body(), currency_precision=2)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(lambda b: b.pop("journal_date"), "journal_date", id="no-date"),
        pytest.param(lambda b: b.update(journal_date="2025-02-30"), "calendar", id="bad-date"),
        pytest.param(lambda b: b.pop("reference_number"), "reference_number", id="no-ref"),
        pytest.param(lambda b: b["line_items"][0].update(amount=33.34), "not balanced", id="0.01"),
        pytest.param(lambda b: b["line_items"][0].update(amount=0), "greater than zero", id="zero"),
        pytest.param(lambda b: b["line_items"][0].update(amount="33.33"), "number", id="string"),
        pytest.param(lambda b: b["line_items"][0].update(amount=33.333), "decimal", id="3dp"),
        pytest.param(lambda b: b["line_items"][0].update(side="debit"), "side", id="unknown"),
        pytest.param(lambda b: b.update(status="posted"), "status", id="status"),
        pytest.param(lambda b: b.update(exchange_rate=-1), "exchange_rate", id="rate"),
        pytest.param(
            lambda b: b.update(
                line_items=[x for x in b["line_items"] if x["debit_or_credit"] == "debit"]
            ),
            "at least one debit and one credit",
            id="one-sided",
        ),
    ],
)
def test_validate_rejects(mutate: Any, fragment: str) -> None:
    body = _valid_body()
    mutate(body)
    with pytest.raises(ValidationFailed) as info:
        validate_journal(body, currency_precision=2)
    assert fragment in str(info.value)


def test_validate_lists_all_problems() -> None:
    body = _valid_body()
    body.pop("journal_date")
    body.pop("reference_number")
    body["line_items"][0]["amount"] = 0
    body["line_items"][1]["debit_or_credit"] = "both"
    with pytest.raises(ValidationFailed) as info:
        validate_journal(body, currency_precision=2)
    message = str(info.value)
    assert message.startswith("journal is invalid (5 problem(s))")
    assert "journal_date" in info.value.errors and "_rules" in info.value.errors


def test_jpy_amount_with_decimals_is_rejected() -> None:
    body = map_report(load("jpy"), rules(), ORG, exchange_rate=Decimal("0.0064"))
    body["line_items"][0]["amount"] = 3333.5
    body["line_items"][1]["amount"] = 3332.5
    with pytest.raises(ValidationFailed, match="more than 0 decimal"):
        validate_journal(body, currency_precision=0)


# =========================================================================== versions


def _with(report_changes: dict[str, Any] | None = None, amount: str = "10.00") -> ConcurReport:
    return built([raw_entry(1, amount)], [raw_alloc(0, 1, 100)], **(report_changes or {}))


def test_stable_reference_is_the_report_id() -> None:
    assert stable_reference(load("usd_mixed")) == "0F3A9C1B7E5D4A2C8B61"


def test_version_is_stable_and_ignores_number_spelling() -> None:
    assert report_version(_with()) == report_version(_with(amount="10.0"))
    assert report_version(_with()).startswith("h1:")


@pytest.mark.parametrize(
    ("changes", "amount"),
    [
        pytest.param({}, "10.01", id="approved-amount-changed"),
        pytest.param(
            {"ProcessingPaymentDate": "2025-06-09T09:00:00.000"}, "10.00", id="re-approved"
        ),
        pytest.param({"SubmitDate": "2025-06-08T09:00:00.000"}, "10.00", id="resubmitted"),
    ],
)
def test_version_changes_when_the_report_comes_back(changes: dict[str, Any], amount: str) -> None:
    assert report_version(_with(changes, amount)) != report_version(_with())


def test_version_survives_payment() -> None:
    paid = {
        "PaymentStatusCode": "P_PAID",
        "PaidDate": "2025-06-20T08:00:00.000",
        "LastModifiedDate": "2025-06-20T08:00:00.000",
    }
    assert report_version(_with(paid)) == report_version(_with())
