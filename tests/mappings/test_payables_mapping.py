"""Payables mapping: Zoho bills/invoices -> Concur payment requests (issue #6 §3-§5, §8).

Fixtures in ``tests/fixtures/zoho`` are Zoho ``GET /bills/{id}`` / ``GET /invoices/{id}`` bodies
shaped like the OpenAPI files, loaded with the plain ``json`` module so amounts arrive as floats,
exactly as they would from ``requests``: the loader must still produce exact Decimals.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from connector.errors import MappingError, ParkError, ValidationFailed
from mappings.payables import VendorRef, document_version, is_void, map_document, stable_reference
from mappings.payables_rules import PayablesRules, parse_payables_rules
from mappings.payables_validation import matches_existing, validate_payment_request
from mappings.payment_requests import canonical_json, iter_line_items
from mappings.zoho_documents import (
    ZohoDocument,
    ZohoLineItem,
    load_bill,
    load_invoice,
    load_zoho_document,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zoho"
POSTABLE = [
    "bill_basic_usd",
    "bill_inclusive_eur",
    "bill_jpy",
    "bill_kwd",
    "bill_adjustment",
    "bill_negative_line",
    "invoice_entity_discount",
    "invoice_item_discount",
]

ACCOUNT_NAMES = {"982000000000388": "Computer Equipment", "982000000000390": "Installation"}


def raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def doc_of(name: str) -> ZohoDocument:
    return load_zoho_document(raw(name))


def rules_of(**overrides: Any) -> PayablesRules:
    section: dict[str, Any] = {
        "include": ["bills", "invoices"],
        "owner": {"LedgerCode": "DEFAULT"},
        "country_code": "US",
        "expense_types": {"Office Supplies": "OFFIC"},
        "default_expense_type": "MISC",
    }
    section.update(overrides)
    return parse_payables_rules(section)


VENDOR = VendorRef(
    vendor_code="ACME-001",
    address_code="REMIT",
    country_code="US",
    currency_code="USD",
    name="Acme Office Supplies Ltd",
)


def lines_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(line) for line in iter_line_items(body)]


def mapped(name: str, **rule_overrides: Any) -> dict[str, Any]:
    return map_document(
        doc_of(name), VENDOR, rules_of(**rule_overrides), account_names=ACCOUNT_NAMES
    )


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", [*POSTABLE, "bill_void"])
def test_every_fixture_loads_with_decimal_amounts(name: str) -> None:
    doc = doc_of(name)
    assert doc.kind == name.split("_")[0]
    for value in (doc.total, doc.sub_total, doc.tax_total, doc.exchange_rate):
        assert isinstance(value, Decimal)
    for line in doc.line_items:
        for value in (line.quantity, line.rate, line.item_total, line.tax_percentage):
            assert isinstance(value, Decimal)
    assert not any(isinstance(v, float) for v in dataclasses.asdict(doc).values())


@pytest.mark.parametrize(
    ("name", "attr", "expected"),
    [
        pytest.param("bill_basic_usd", "total", Decimal("733.89"), id="usd-total"),
        pytest.param("bill_basic_usd", "number", "BL-2024-0042", id="bill-number"),
        pytest.param("bill_basic_usd", "contact_id", "460000000038029", id="vendor-id"),
        pytest.param(
            "bill_basic_usd", "contact_name", "Acme Office Supplies Ltd", id="vendor-name"
        ),
        pytest.param("bill_inclusive_eur", "exchange_rate", Decimal("1.0845"), id="eur-rate-exact"),
        pytest.param("bill_inclusive_eur", "is_inclusive_tax", True, id="inclusive-flag"),
        pytest.param("bill_jpy", "id", "460000000099200", id="numeric-id-becomes-string"),
        pytest.param("bill_jpy", "contact_id", "460000000038200", id="numeric-vendor-id"),
        pytest.param("bill_kwd", "total", Decimal("111.249"), id="kwd-3-places"),
        pytest.param("invoice_entity_discount", "shipping_charge", Decimal("12.50"), id="str-amt"),
        pytest.param("invoice_entity_discount", "contact_name", "Bowman & Co", id="customer"),
        pytest.param("invoice_entity_discount", "discount_type", "entity_level", id="disc-type"),
        pytest.param("bill_void", "status", "void", id="void-status"),
    ],
)
def test_loaded_fields(name: str, attr: str, expected: object) -> None:
    assert getattr(doc_of(name), attr) == expected


def test_line_item_fields_are_typed() -> None:
    line = doc_of("bill_basic_usd").line_items[0]
    assert line == ZohoLineItem(
        line_item_id="460000000098765001",
        name="Office chair",
        description="Ergonomic mesh chair",
        quantity=Decimal("4.0"),
        rate=Decimal("149.99"),
        discount_amount=Decimal(0),
        item_total=Decimal("599.96"),
        account_id="460000000000403",
        account_name="Office Supplies",
        tax_id="460000000027005",
        tax_name="Sales Tax (8.25%)",
        tax_percentage=Decimal("8.25"),
        unit="pcs",
        item_order=1,
    )


def test_blank_optional_ids_become_none() -> None:
    line = doc_of("bill_basic_usd").line_items[2]
    assert line.tax_id is None and line.tax_name is None


def test_float_amount_is_parsed_exactly() -> None:
    body = raw("bill_basic_usd")
    body["bill"]["line_items"][0]["rate"] = 0.1
    body["bill"]["total"] = 1.1
    doc = load_zoho_document(body)
    assert doc.line_items[0].rate == Decimal("0.1")
    assert doc.total == Decimal("1.1")


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        pytest.param(raw("bill_basic_usd"), "bill", id="bill-envelope"),
        pytest.param(raw("bill_basic_usd")["bill"], "bill", id="bare-bill"),
        pytest.param(raw("invoice_item_discount"), "invoice", id="invoice-envelope"),
        pytest.param(raw("invoice_item_discount")["invoice"], "invoice", id="bare-invoice"),
    ],
)
def test_kind_is_inferred(payload: dict[str, Any], kind: str) -> None:
    assert load_zoho_document(payload).kind == kind


def test_load_bill_and_load_invoice() -> None:
    assert load_bill(raw("bill_kwd")["bill"]).number == "KW-19"
    assert load_invoice(raw("invoice_item_discount")["invoice"]).number == "INV-00004"


def test_malformed_document_lists_every_problem() -> None:
    bill = raw("bill_basic_usd")["bill"]
    del bill["bill_number"]
    bill["date"] = "04/03/2024"
    bill["total"] = "lots"
    bill["line_items"][1]["rate"] = True
    with pytest.raises(ValidationFailed) as exc:
        load_bill(bill)
    errors = exc.value.errors
    assert isinstance(errors, list)
    assert "bill_number: Missing data for required field." in errors
    assert "date: Not a valid yyyy-mm-dd date." in errors
    assert "total: Not a valid amount." in errors
    assert "line_items.1.rate: Not a valid amount." in errors
    assert "4 problem(s)" in str(exc.value)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([], id="list"),
        pytest.param({"contact": {}}, id="neither"),
        pytest.param("bill", id="string"),
    ],
)
def test_not_a_document(payload: Any) -> None:
    with pytest.raises(ValidationFailed):
        load_zoho_document(payload)


def test_missing_item_total_is_quantity_times_rate_less_discount() -> None:
    bill = raw("bill_basic_usd")["bill"]
    line = bill["line_items"][0]
    del line["item_total"]
    line["discount_amount"] = 10
    assert load_bill(bill).line_items[0].item_total == Decimal("589.96")


# --------------------------------------------------------------------------- mapping: header


def test_basic_bill_maps_to_documented_fields() -> None:
    body = mapped("bill_basic_usd")
    assert body == {
        "Name": "BL-2024-0042 Acme Office Supplies Ltd",
        "InvoiceNumber": "BL-2024-0042",
        "InvoiceDate": "2024-03-04",
        "PaymentDueDate": "2024-04-03",
        "CurrencyCode": "USD",
        "InvoiceAmount": "733.89",
        "TaxAmount": "54.03",
        "CountryCode": "US",
        "VendorRemitToIdentifier": {
            "VendorCode": "ACME-001",
            "AddressCode": "REMIT",
            "Name": "Acme Office Supplies Ltd",
        },
        "LedgerCode": "DEFAULT",
        "LineItems": [
            {
                "Description": "Office chair - Ergonomic mesh chair",
                "ExpenseTypeCode": "OFFIC",
                "Quantity": "4",
                "UnitPrice": "149.99",
                "TotalPrice": "599.96",
                "Tax": "49.50",
            },
            {
                "Description": "Printer paper - A4, 80gsm, box of 5 reams",
                "ExpenseTypeCode": "OFFIC",
                "Quantity": "10",
                "UnitPrice": "5.49",
                "TotalPrice": "54.90",
                "Tax": "4.53",
            },
            {
                "Description": "Delivery",
                "ExpenseTypeCode": "MISC",
                "Quantity": "1",
                "UnitPrice": "25.00",
                "TotalPrice": "25.00",
            },
        ],
    }


@pytest.mark.parametrize("name", POSTABLE)
def test_every_mapped_body_passes_validation(name: str) -> None:
    doc = doc_of(name)
    body = mapped(name)
    assert doc.currency_code is not None
    validate_payment_request(body, currency=doc.currency_code)


@pytest.mark.parametrize("name", POSTABLE)
@pytest.mark.parametrize("adjustments", ["spread", "line"])
@pytest.mark.parametrize("shape", ["flat", "nested"])
def test_every_setting_combination_validates(name: str, adjustments: str, shape: str) -> None:
    rules = rules_of(adjustments=adjustments, line_items_shape=shape)
    doc = doc_of(name)
    body = map_document(doc, VENDOR, rules, account_names=ACCOUNT_NAMES)
    assert doc.currency_code is not None
    validate_payment_request(
        body, currency=doc.currency_code, allow_negative_lines=rules.allows_negative_lines
    )


@pytest.mark.parametrize("name", POSTABLE)
def test_mapping_is_deterministic(name: str) -> None:
    first = canonical_json(mapped(name))
    second = canonical_json(
        map_document(doc_of(name), VENDOR, rules_of(), account_names=ACCOUNT_NAMES)
    )
    assert first == second
    assert json.dumps(mapped(name)) == json.dumps(mapped(name))


@pytest.mark.parametrize(
    ("name", "amount", "tax", "shipping", "totals"),
    [
        pytest.param(
            "bill_basic_usd",
            "733.89",
            "54.03",
            None,
            ["599.96", "54.90", "25.00"],
            id="usd-exclusive",
        ),
        pytest.param(
            "bill_inclusive_eur",
            "1547.00",
            "247.00",
            None,
            ["1250.00", "50.00"],
            id="eur-inclusive",
        ),
        pytest.param("bill_jpy", "47740", "4340", None, ["38400", "5000"], id="jpy-0-places"),
        pytest.param("bill_kwd", "111.249", None, None, ["74.250", "36.999"], id="kwd-3-places"),
        pytest.param("bill_adjustment", "285.00", None, None, ["190.00", "95.00"], id="adj-spread"),
        pytest.param("bill_negative_line", "100.00", None, None, ["100.00"], id="credit-folded"),
        pytest.param(
            "invoice_entity_discount",
            "282.50",
            None,
            "12.50",
            ["216.00", "54.00"],
            id="entity-disc",
        ),
        pytest.param(
            "invoice_item_discount", "1134.00", "54.00", None, ["1080.00"], id="line-discount"
        ),
    ],
)
def test_amounts_per_document(
    name: str, amount: str, tax: str | None, shipping: str | None, totals: list[str]
) -> None:
    body = mapped(name)
    assert body["InvoiceAmount"] == amount
    assert body.get("TaxAmount") == tax
    assert body.get("ShippingAmount") == shipping
    assert [line["TotalPrice"] for line in lines_of(body)] == totals


def test_inclusive_tax_lines_are_net_with_their_tax() -> None:
    lines = lines_of(mapped("bill_inclusive_eur"))
    assert [(line["TotalPrice"], line["Tax"]) for line in lines] == [
        ("1250.00", "237.50"),
        ("50.00", "9.50"),
    ]


def test_exchange_rate_is_not_applied() -> None:
    """Concur gets the document currency and amounts; it converts itself."""
    body = mapped("bill_inclusive_eur")
    assert body["CurrencyCode"] == "EUR" and body["InvoiceAmount"] == "1547.00"


def test_line_taxes_add_up_to_tax_total_to_the_cent() -> None:
    lines = lines_of(mapped("bill_basic_usd"))
    assert sum(Decimal(line.get("Tax", "0")) for line in lines) == Decimal("54.03")


@pytest.mark.parametrize(
    ("name", "unit_prices"),
    [
        pytest.param("bill_jpy", ["12800", "5000"], id="jpy-no-decimals"),
        pytest.param("bill_kwd", ["37.125", "12.333"], id="kwd-3-decimals"),
        pytest.param("bill_basic_usd", ["149.99", "5.49", "25.00"], id="usd"),
    ],
)
def test_unit_prices_use_currency_places(name: str, unit_prices: list[str]) -> None:
    assert [line["UnitPrice"] for line in lines_of(mapped(name))] == unit_prices


def test_unit_price_keeps_extra_places_zoho_has() -> None:
    bill = raw("bill_adjustment")["bill"]
    bill["line_items"][0].update({"rate": 0.125, "quantity": 8, "item_total": 1.0})
    bill["line_items"][1].update({"rate": 99.0, "item_total": 99.0})
    bill.update({"adjustment": 0, "total": 100.0})
    lines = lines_of(map_document(load_bill(bill), VENDOR, rules_of()))
    assert lines[0]["UnitPrice"] == "0.125"
    assert lines[0]["TotalPrice"] == "1.00"


def test_rounding_of_line_totals_keeps_the_sum() -> None:
    """Three lines of 10.005 (Zoho at 3 places) round to 10.01/10.01/10.00, summing to 30.02."""
    bill = raw("bill_adjustment")["bill"]
    line = dict(bill["line_items"][0], rate=3.335, quantity=3, item_total=10.005)
    bill.update(line_items=[line, line, line], adjustment=0, total=30.02, sub_total=30.015)
    body = map_document(load_bill(bill), VENDOR, rules_of())
    assert [line["TotalPrice"] for line in lines_of(body)] == ["10.01", "10.01", "10.00"]
    validate_payment_request(body, currency="USD")


def test_zero_line_is_kept_at_zero() -> None:
    bill = raw("bill_adjustment")["bill"]
    bill["line_items"][1].update({"rate": 0, "item_total": 0})
    bill.update({"adjustment": 0, "total": 200.0})
    body = map_document(load_bill(bill), VENDOR, rules_of())
    assert [line["TotalPrice"] for line in lines_of(body)] == ["200.00", "0.00"]
    validate_payment_request(body, currency="USD")


def test_adjustments_as_lines_keep_credits_visible() -> None:
    rules = rules_of(adjustments="line", adjustment_expense_type="ADJ")
    body = map_document(doc_of("bill_adjustment"), VENDOR, rules)
    assert lines_of(body)[-1] == {
        "Description": "Early payment discount",
        "ExpenseTypeCode": "ADJ",
        "Quantity": "1",
        "UnitPrice": "-15.00",
        "TotalPrice": "-15.00",
    }
    validate_payment_request(body, currency="USD", allow_negative_lines=True)
    with pytest.raises(ValidationFailed, match="must not be negative"):
        validate_payment_request(body, currency="USD")


def test_negative_line_kept_in_line_mode() -> None:
    body = map_document(doc_of("bill_negative_line"), VENDOR, rules_of(adjustments="line"))
    assert [line["TotalPrice"] for line in lines_of(body)] == ["120.00", "-20.00"]


def test_entity_discount_uses_reported_discount_amount() -> None:
    payload = raw("invoice_entity_discount")
    payload["invoice"]["discount_amount"] = 30.0
    body = map_document(
        load_zoho_document(payload),
        VENDOR,
        rules_of(adjustments="line"),
        account_names=ACCOUNT_NAMES,
    )
    assert lines_of(body)[-1]["TotalPrice"] == "-30.00"
    assert lines_of(body)[-1]["Description"] == "Discount"


def test_inconsistent_document_is_caught_by_validation_with_the_difference() -> None:
    bill = raw("bill_basic_usd")["bill"]
    bill["total"] = 733.90
    body = map_document(load_bill(bill), VENDOR, rules_of())
    with pytest.raises(ValidationFailed) as exc:
        validate_payment_request(body, currency="USD")
    assert "difference 0.01 USD" in str(exc.value)
    assert "InvoiceAmount is 733.90" in str(exc.value)


# --------------------------------------------------------------------------- mapping: rules


@pytest.mark.parametrize(
    ("owner", "field"),
    [
        pytest.param({"LedgerCode": "DEFAULT"}, "LedgerCode", id="ledger"),
        pytest.param({"EmployeeLoginId": "ap@example.com"}, "EmployeeLoginId", id="login"),
        pytest.param({"EmployeeId": "E1001"}, "EmployeeId", id="employee-id"),
        pytest.param(
            {"EmployeeEmailAddress": "ap@example.com"}, "EmployeeEmailAddress", id="email"
        ),
        pytest.param({"ExternalPolicyId": "POL-7"}, "ExternalPolicyId", id="policy"),
    ],
)
def test_owner_field_is_configured(owner: dict[str, str], field: str) -> None:
    body = mapped("bill_basic_usd", owner=owner)
    assert body[field] == owner[field]
    others = {
        "LedgerCode",
        "EmployeeLoginId",
        "EmployeeId",
        "EmployeeEmailAddress",
        "ExternalPolicyId",
    }
    assert not (others - {field}) & set(body)
    validate_payment_request(body, currency="USD")


@pytest.mark.parametrize(
    ("shape", "expected_type"),
    [pytest.param("flat", list, id="flat"), pytest.param("nested", dict, id="nested")],
)
def test_line_items_shape(shape: str, expected_type: type) -> None:
    body = mapped("bill_basic_usd", line_items_shape=shape)
    assert isinstance(body["LineItems"], expected_type)
    if shape == "nested":
        assert body["LineItems"] == {"LineItem": lines_of(body)}
    assert len(lines_of(body)) == 3


@pytest.mark.parametrize(
    ("style", "key"),
    [pytest.param("padded", "Custom05", id="padded"), pytest.param("plain", "Custom5", id="plain")],
)
def test_reference_custom_field_naming(style: str, key: str) -> None:
    body = mapped("bill_basic_usd", reference_custom_field=5, custom_field_style=style)
    assert body[key] == "460000000098765"
    validate_payment_request(body, currency="USD")


def test_no_custom_field_unless_configured() -> None:
    assert not [k for k in mapped("bill_basic_usd") if k.startswith("Custom")]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        pytest.param({"Office Supplies": "OFFIC"}, "OFFIC", id="exact-name"),
        pytest.param({"office supplies": "OFFIC2"}, "OFFIC2", id="casefold-name"),
        pytest.param({"460000000000403": "BYID"}, "BYID", id="by-account-id"),
        pytest.param({"Travel": "TRVL"}, "MISC", id="default"),
    ],
)
def test_expense_type_lookup(table: dict[str, str], expected: str) -> None:
    body = mapped("bill_basic_usd", expense_types=table)
    assert lines_of(body)[0]["ExpenseTypeCode"] == expected


def test_account_names_fill_lines_without_account_name() -> None:
    body = map_document(
        doc_of("invoice_entity_discount"),
        VENDOR,
        rules_of(expense_types={"Computer Equipment": "COMP"}, default_expense_type=None),
        account_names={**ACCOUNT_NAMES, "982000000000390": "Computer Equipment"},
    )
    assert [line["ExpenseTypeCode"] for line in lines_of(body)] == ["COMP", "COMP"]


@pytest.mark.parametrize(
    ("vendor", "rules_country", "expected"),
    [
        pytest.param(VENDOR, "GB", "US", id="vendor-country-wins"),
        pytest.param(dataclasses.replace(VENDOR, country_code=None), "GB", "GB", id="fallback"),
        pytest.param(dataclasses.replace(VENDOR, country_code="de"), None, "DE", id="uppercased"),
    ],
)
def test_country_code(vendor: VendorRef, rules_country: str | None, expected: str) -> None:
    body = map_document(doc_of("bill_basic_usd"), vendor, rules_of(country_code=rules_country))
    assert body["CountryCode"] == expected


def test_vendor_name_absent_leaves_identifier_to_code() -> None:
    vendor = dataclasses.replace(VENDOR, name=None)
    body = map_document(doc_of("bill_basic_usd"), vendor, rules_of())
    assert body["VendorRemitToIdentifier"] == {"VendorCode": "ACME-001", "AddressCode": "REMIT"}


@pytest.mark.parametrize(
    ("contact", "limit", "expected"),
    [
        pytest.param("Acme Ltd", 64, "BL-2024-0042 Acme Ltd", id="short"),
        pytest.param(
            "International Business Machines Corporation of Armonk New York",
            40,
            "BL-2024-0042 International Business",
            id="cut-on-word",
        ),
        pytest.param("A" * 80, 20, "BL-2024-0042 AAAAAAA", id="cut-hard"),
        pytest.param("  Spaced   Out  ", 64, "BL-2024-0042 Spaced Out", id="spaces"),
    ],
)
def test_name_is_number_and_vendor_within_limit(contact: str, limit: int, expected: str) -> None:
    doc = dataclasses.replace(doc_of("bill_basic_usd"), contact_name=contact)
    body = map_document(doc, VENDOR, rules_of(name_max_length=limit))
    assert body["Name"] == expected
    assert len(body["Name"]) <= limit


# --------------------------------------------------------------------------- park reasons


def test_missing_vendor_parks_with_the_issue_reason() -> None:
    doc = doc_of("bill_basic_usd")
    with pytest.raises(ParkError) as exc:
        map_document(doc, None, rules_of())
    err = exc.value
    assert (
        err.reason
        == "vendor 'Acme Office Supplies Ltd' (Zoho contact 460000000038029) is not in Concur yet"
    )
    assert (err.dependency, err.key) == ("vendor", "460000000038029")


def test_missing_customer_link_on_invoice_parks() -> None:
    with pytest.raises(ParkError) as exc:
        map_document(doc_of("invoice_item_discount"), None, rules_of())
    assert (
        exc.value.reason
        == "customer 'Bowman & Co' (Zoho contact 982000000567001) is not in Concur yet"
    )
    assert exc.value.dependency == "vendor"


def test_vendor_without_code_parks() -> None:
    with pytest.raises(ParkError) as exc:
        map_document(
            doc_of("bill_basic_usd"), dataclasses.replace(VENDOR, vendor_code=" "), rules_of()
        )
    assert exc.value.dependency == "vendor"


def test_unmapped_accounts_park_listing_all_of_them() -> None:
    rules = rules_of(expense_types={}, default_expense_type=None)
    with pytest.raises(MappingError) as exc:
        map_document(doc_of("bill_basic_usd"), VENDOR, rules)
    err = exc.value
    assert isinstance(err, ParkError)
    assert err.dependency == "mapping"
    assert "'Office Supplies', 'Freight In'" in err.reason
    assert "payables.expense_types" in err.reason
    assert err.key == "Office Supplies,Freight In"


def test_line_without_any_account_parks_naming_the_line() -> None:
    rules = rules_of(expense_types={}, default_expense_type=None)
    with pytest.raises(MappingError, match=r"no account on line 1 \('Hard Drive'\)"):
        map_document(doc_of("invoice_entity_discount"), VENDOR, rules)


@pytest.mark.parametrize(
    ("currency", "rules_currencies", "fragment"),
    [
        pytest.param(
            "XYZ", None, "currency 'XYZ' on bill BL-2024-0042 is not a known ISO 4217", id="unknown"
        ),
        pytest.param("", None, "bill BL-2024-0042 has no currency code in Zoho", id="missing"),
        pytest.param(
            "GBP", ["USD", "EUR"], "is not enabled for this Concur company", id="disabled"
        ),
    ],
)
def test_currency_problems_park(
    currency: str, rules_currencies: list[str] | None, fragment: str
) -> None:
    payload = raw("bill_basic_usd")
    payload["bill"]["currency_code"] = currency
    with pytest.raises(ParkError) as exc:
        map_document(load_zoho_document(payload), VENDOR, rules_of(currencies=rules_currencies))
    assert fragment in exc.value.reason
    assert exc.value.dependency == "currency"


def test_no_country_anywhere_parks_as_mapping() -> None:
    vendor = dataclasses.replace(VENDOR, country_code=None)
    with pytest.raises(MappingError) as exc:
        map_document(doc_of("bill_basic_usd"), vendor, rules_of(country_code=None))
    assert exc.value.dependency == "mapping"
    assert "payables.country_code" in exc.value.reason


# --------------------------------------------------------------------------- voids, versions


def test_void_is_flagged_and_never_mapped() -> None:
    doc = doc_of("bill_void")
    assert is_void(doc)
    with pytest.raises(ValidationFailed, match="is void"):
        map_document(doc, VENDOR, rules_of())


@pytest.mark.parametrize("name", POSTABLE)
def test_postable_documents_are_not_void(name: str) -> None:
    assert not is_void(doc_of(name))


def test_excluded_kind_is_refused() -> None:
    with pytest.raises(ValidationFailed, match=r"not in payables\.include"):
        map_document(doc_of("invoice_item_discount"), VENDOR, rules_of(include=["bills"]))


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        pytest.param("2013-11-18T02:17:40-0800", "2013-11-18T10:17:40Z", id="pacific"),
        pytest.param("2013-11-18T15:47:40+0530", "2013-11-18T10:17:40Z", id="india-same-instant"),
        pytest.param("2013-11-18T10:17:40+00:00", "2013-11-18T10:17:40Z", id="colon-offset"),
        pytest.param("2013-11-18T10:17:40Z", "2013-11-18T10:17:40Z", id="zulu"),
        pytest.param("yesterday", "yesterday", id="unparsable-kept"),
    ],
)
def test_document_version_normalises_last_modified_time(stamp: str, expected: str) -> None:
    doc = dataclasses.replace(doc_of("bill_basic_usd"), last_modified_time=stamp)
    assert document_version(doc) == expected


def test_document_version_without_timestamp_is_a_content_hash() -> None:
    doc = dataclasses.replace(doc_of("bill_basic_usd"), last_modified_time=None)
    version = document_version(doc)
    assert version.startswith("sha256:") and version == document_version(doc)
    edited = dataclasses.replace(doc, total=Decimal("733.90"))
    assert document_version(edited) != version


def test_edit_yields_new_version() -> None:
    payload = raw("bill_basic_usd")
    before = document_version(load_zoho_document(payload))
    payload["bill"]["last_modified_time"] = "2024-03-06T09:00:00-0800"
    assert document_version(load_zoho_document(payload)) != before


def test_stable_reference_is_the_document_number() -> None:
    assert stable_reference(doc_of("bill_basic_usd")) == "BL-2024-0042"
    assert stable_reference(doc_of("invoice_item_discount")) == "INV-00004"
    assert mapped("bill_basic_usd")["InvoiceNumber"] == "BL-2024-0042"


# --------------------------------------------------------------------------- duplicates

DIGEST = {
    "ID": "gWqPk2",
    "InvoiceNumber": "BL-2024-0042",
    "VendorName": "Acme Office Supplies Ltd",
    "Total": "733.89",
    "CurrencyCode": "USD",
    "IsDeleted": False,
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({}, True, id="same"),
        pytest.param({"Total": "733.890"}, True, id="amount-as-decimal"),
        pytest.param({"Total": 733.89}, True, id="amount-as-number"),
        pytest.param({"VendorName": "ACME office  supplies ltd"}, True, id="vendor-case-space"),
        pytest.param({"InvoiceNumber": "bl-2024-0042"}, True, id="number-case"),
        pytest.param({"IsDeleted": True}, False, id="deleted"),
        pytest.param({"IsDeleted": "true"}, False, id="deleted-string"),
        pytest.param({"InvoiceNumber": "BL-2024-0043"}, False, id="other-number"),
        pytest.param({"Total": "733.88"}, False, id="other-amount"),
        pytest.param({"Total": None}, False, id="no-amount"),
        pytest.param({"VendorName": "Other Vendor Inc"}, False, id="other-vendor"),
        pytest.param({"CurrencyCode": "EUR"}, False, id="other-currency"),
        pytest.param({"CurrencyCode": None}, True, id="digest-without-currency"),
    ],
)
def test_matches_existing(change: dict[str, Any], expected: bool) -> None:
    assert matches_existing({**DIGEST, **change}, mapped("bill_basic_usd")) is expected


def test_matches_existing_needs_a_vendor_name() -> None:
    body = map_document(
        doc_of("bill_basic_usd"), dataclasses.replace(VENDOR, name=None), rules_of()
    )
    assert matches_existing(DIGEST, body) is False
    assert matches_existing(DIGEST, body, vendor_name="Acme Office Supplies Ltd") is True


# --------------------------------------------------------------------------- validation


def valid_body() -> dict[str, Any]:
    return mapped("bill_basic_usd")


@pytest.mark.parametrize(
    "field",
    [
        "Name",
        "CountryCode",
        "InvoiceAmount",
        "VendorRemitToIdentifier",
        "InvoiceNumber",
        "CurrencyCode",
        "InvoiceDate",
        "LineItems",
    ],
)
def test_missing_required_field_is_rejected(field: str) -> None:
    body = valid_body()
    del body[field]
    with pytest.raises(ValidationFailed) as exc:
        validate_payment_request(body, currency="USD")
    assert f"{field}: required" in exc.value.errors


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(lambda b: b.pop("LedgerCode"), "exactly one of", id="no-owner"),
        pytest.param(
            lambda b: b.update(EmployeeId="E1"), "found LedgerCode, EmployeeId", id="two-owners"
        ),
        pytest.param(
            lambda b: b.update(InvoiceAmount=733.89),
            "InvoiceAmount: Not a valid string.",
            id="float-amount",
        ),
        pytest.param(
            lambda b: b.update(InvoiceAmount="733.891"),
            "more than 2 decimal place(s) for USD",
            id="too-many-places",
        ),
        pytest.param(
            lambda b: b.update(InvoiceAmount="abc"),
            "'abc' is not a decimal string",
            id="not-a-number",
        ),
        pytest.param(
            lambda b: b.update(CurrencyCode="EUR"),
            "but the document currency is 'USD'",
            id="currency-mismatch",
        ),
        pytest.param(
            lambda b: b.update(CountryCode="USA"), "not a 2-letter ISO 3166 code", id="country"
        ),
        pytest.param(
            lambda b: b.update(InvoiceDate="03/04/2024"), "not a yyyy-mm-dd date", id="date"
        ),
        pytest.param(lambda b: b.update(Nmae="typo"), "Nmae: Unknown field.", id="unknown-field"),
        pytest.param(
            lambda b: b.update(VendorRemitToIdentifier={"AddressCode": "X"}),
            "needs VendorCode",
            id="no-vendor-code",
        ),
        pytest.param(
            lambda b: b["LineItems"][0].update(TotalPrice="600.00"),
            "difference -0.04 USD",
            id="sum",
        ),
        pytest.param(
            lambda b: b["LineItems"][0].update(Tax="49.51"),
            "line taxes 54.04 do not add up to TaxAmount 54.03",
            id="tax-sum",
        ),
        pytest.param(
            lambda b: b["LineItems"][2].pop("ExpenseTypeCode"),
            "LineItems.3.ExpenseTypeCode: required",
            id="no-expense-type",
        ),
        pytest.param(
            lambda b: b["LineItems"][0].update(Colour="red"),
            "LineItems.0.Colour: Unknown field.",
            id="line-typo",
        ),
        pytest.param(
            lambda b: b.update(LineItems={"LineItem": []}), "at least one line", id="no-lines"
        ),
        pytest.param(
            lambda b: b.update(LineItems="lines"), "Must be an array of objects", id="bad-shape"
        ),
    ],
)
def test_validation_rejects(mutate: Any, fragment: str) -> None:
    body = valid_body()
    mutate(body)
    with pytest.raises(ValidationFailed) as exc:
        validate_payment_request(body, currency="USD")
    assert fragment in str(exc.value)


def test_zero_total_is_rejected() -> None:
    body = valid_body()
    body.update(InvoiceAmount="0.00", TaxAmount="0.00")
    for line in body["LineItems"]:
        line.update(TotalPrice="0.00")
        line.pop("Tax", None)
    with pytest.raises(ValidationFailed, match="must be greater than zero"):
        validate_payment_request(body, currency="USD")


@pytest.mark.parametrize(
    ("currency", "amount", "ok"),
    [
        pytest.param("JPY", "1200", True, id="jpy-integer"),
        pytest.param("JPY", "1200.50", False, id="jpy-cents"),
        pytest.param("KWD", "12.345", True, id="kwd-3"),
        pytest.param("KWD", "12.3456", False, id="kwd-4"),
        pytest.param("USD", "12.3", True, id="usd-1-place"),
    ],
)
def test_currency_precision(currency: str, amount: str, ok: bool) -> None:
    body = valid_body()
    body.pop("TaxAmount")
    body.update(CurrencyCode=currency, InvoiceAmount=amount)
    body["LineItems"] = [
        {"Description": "x", "ExpenseTypeCode": "MISC", "Quantity": "1", "TotalPrice": amount}
    ]
    if ok:
        validate_payment_request(body, currency=currency)
    else:
        with pytest.raises(ValidationFailed, match="decimal place"):
            validate_payment_request(body, currency=currency)


def test_validation_reports_all_problems_at_once() -> None:
    body = valid_body()
    del body["Name"]
    body["CountryCode"] = "usa"
    body["EmployeeId"] = "E1"
    body["LineItems"][0]["TotalPrice"] = "1.00"
    with pytest.raises(ValidationFailed) as exc:
        validate_payment_request(body, currency="USD")
    errors = exc.value.errors
    assert isinstance(errors, list) and len(errors) == 4
    assert "4 problem(s)" in exc.value.message


def test_nested_shape_validates() -> None:
    validate_payment_request(mapped("bill_basic_usd", line_items_shape="nested"), currency="USD")


# --------------------------------------------------------------------------- rules parsing


def test_rules_defaults() -> None:
    rules = parse_payables_rules({"owner": {"LedgerCode": "DEFAULT"}})
    assert rules == PayablesRules(owner={"LedgerCode": "DEFAULT"})
    assert (rules.line_items_shape, rules.custom_field_style, rules.adjustments) == (
        "flat",
        "plain",
        "spread",
    )
    assert rules.remit_to == {}


def test_rules_default_to_bills_only() -> None:
    """A Zoho invoice is a sales document: it becomes a Concur payable only when asked for."""
    rules = parse_payables_rules({"owner": {"LedgerCode": "DEFAULT"}})
    assert rules.include == ("bills",)
    assert rules.includes("bill") and not rules.includes("invoice")
    both = parse_payables_rules({"owner": {"LedgerCode": "D"}, "include": ["bills", "invoices"]})
    assert both.includes("bill") and both.includes("invoice")


def test_default_custom_field_spelling_is_the_reference_pages() -> None:
    body = map_document(
        doc_of("bill_basic_usd"),
        VENDOR,
        parse_payables_rules({"owner": {"LedgerCode": "D"}, "reference_custom_field": 5,
                             "country_code": "US", "default_expense_type": "MISC"}),
        account_names=ACCOUNT_NAMES,
    )  # fmt: skip
    assert body["Custom5"] == "460000000098765" and "Custom05" not in body


def test_remit_to_rule_parses_with_upper_case_vendor_codes() -> None:
    rules = parse_payables_rules(
        {"owner": {"LedgerCode": "D"}, "remit_to": {"globex": "REMIT2", " ACME ": "MAIN"}}
    )
    assert rules.remit_to == {"GLOBEX": "REMIT2", "ACME": "MAIN"}


def test_rules_issue_example_parses() -> None:
    rules = parse_payables_rules(
        {
            "include": ["bills", "invoices"],
            "owner": {"LedgerCode": "DEFAULT"},
            "country_code": "US",
            "expense_types": {"Office Supplies": "OFFIC"},
            "default_expense_type": "MISC",
        }
    )
    assert rules.expense_types == {"Office Supplies": "OFFIC"}
    assert rules.country_code == "US" and rules.default_expense_type == "MISC"


def test_rules_list_every_problem() -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_payables_rules(
            {
                "include": ["bills", "receipts"],
                "owner": {"LedgerCode": "DEFAULT", "EmployeeId": "E1"},
                "country_code": "usa",
                "line_items_shape": "wrapped",
                "currencies": ["USD", "XYZ"],
                "name_max_lenght": 40,
            }
        )
    errors = exc.value.errors
    assert isinstance(errors, list)
    text = "\n".join(errors)
    for fragment in (
        "payables.include.1",
        "payables.owner: Give exactly one owner field",
        "payables.country_code: Must be 2 capital letters.",
        "payables.line_items_shape",
        "payables.name_max_lenght: Unknown field.",
    ):
        assert fragment in text
    assert len(errors) >= 5


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        pytest.param({}, "payables.owner: Missing data for required field.", id="no-owner"),
        pytest.param(
            {"owner": {"PurchaseOrderId": "PO1"}},
            "payables.owner.PurchaseOrderId.key",
            id="po-owner",
        ),
        pytest.param(
            {"owner": {"LedgerCode": ""}}, "payables.owner.LedgerCode.value", id="empty-owner"
        ),
        pytest.param(
            {"owner": {"LedgerCode": "D"}, "currencies": ["XYZ"]},
            "Not ISO 4217 currency codes: XYZ",
            id="currency",
        ),
        pytest.param(
            {"owner": {"LedgerCode": "D"}, "adjustments": "line"},
            "adjustments: line needs",
            id="line-needs-type",
        ),
        pytest.param(
            {"owner": {"LedgerCode": "D"}, "reference_custom_field": 25},
            "payables.reference_custom_field",
            id="custom-range",
        ),
        pytest.param(
            {"owner": {"LedgerCode": "D"}, "custom_field_style": "zero"},
            "payables.custom_field_style",
            id="style",
        ),
    ],
)
def test_rules_rejects(section: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_payables_rules(section)
    assert fragment in "\n".join(exc.value.errors)


def test_rules_must_be_a_mapping() -> None:
    with pytest.raises(ValidationFailed):
        parse_payables_rules(["bills"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- property


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=50),  # quantity
            st.integers(min_value=1, max_value=1_000_000),  # rate in cents
            st.sampled_from([Decimal(0), Decimal(5), Decimal("8.25"), Decimal(19)]),  # tax %
        ),
        min_size=1,
        max_size=6,
    ),
    adjustment=st.integers(min_value=-500, max_value=500),
    inclusive=st.booleans(),
)
def test_any_consistent_bill_maps_to_a_valid_request(
    lines: list[tuple[int, int, Decimal]], adjustment: int, inclusive: bool
) -> None:
    """Lines + tax + adjustment = total in Zoho => the mapped request adds up to the cent."""
    cent = Decimal("0.01")
    items = []
    tax_total = Decimal(0)
    for qty, rate_cents, pct in lines:
        rate = Decimal(rate_cents) * cent
        total = rate * qty
        tax = total * pct / ((100 + pct) if inclusive else 100)
        tax_total += tax
        items.append(
            ZohoLineItem(
                line_item_id=None,
                name="Item",
                description="",
                quantity=Decimal(qty),
                rate=rate,
                discount_amount=Decimal(0),
                item_total=total,
                account_id=None,
                account_name="Office Supplies",
                tax_id=None,
                tax_name=None,
                tax_percentage=pct,
            )
        )
    tax_total = tax_total.quantize(cent)
    gross = sum((i.item_total for i in items), Decimal(0))
    adj = Decimal(adjustment) * cent
    total = gross + adj + (Decimal(0) if inclusive else tax_total)
    assume(gross + adj - (tax_total if inclusive else Decimal(0)) > 0)  # a payable, not a credit
    doc = dataclasses.replace(
        doc_of("bill_basic_usd"),
        line_items=tuple(items),
        tax_total=tax_total,
        total=total,
        adjustment=adj,
        is_inclusive_tax=inclusive,
    )
    body = map_document(doc, VENDOR, rules_of())
    validate_payment_request(body, currency="USD")
    assert sum(Decimal(line["TotalPrice"]) for line in lines_of(body)) + tax_total == total
