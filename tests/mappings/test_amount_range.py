"""Absurd amounts are malformed input, not a crash (found by the chaos suite's mapping fuzz,
docs/chaos.md: a Zoho ``item_total`` of 1e26 raised ``decimal.InvalidOperation`` in rounding)."""

from __future__ import annotations

import copy

import pytest

from connector.errors import ParkError, ValidationFailed
from mappings.concur_reports import assemble_report
from mappings.money import quantize, to_decimal
from mappings.payables import map_document
from mappings.payables_validation import validate_payment_request
from mappings.zoho_documents import load_zoho_document
from tests.mappings import test_expenses_mapping as em
from tests.mappings import test_payables_mapping as pm


@pytest.mark.parametrize("value", [1e26, "1e15", "-2000000000000000", 10**20])
def test_zoho_amount_of_a_quadrillion_or_more_is_malformed(value: object) -> None:
    raw = pm.raw("bill_basic_usd")
    raw["bill"]["line_items"][0]["item_total"] = value
    with pytest.raises(ValidationFailed, match="item_total"):
        load_zoho_document(raw)


def test_large_in_range_products_round_without_overflow() -> None:
    """rate x quantity may exceed 28 digits once rounded; the mapping still answers with a
    documented outcome (here Concur-bound validation), never InvalidOperation."""
    raw = pm.raw("bill_basic_usd")
    line = raw["bill"]["line_items"][0]
    line.update(rate="999999999999999", quantity="999999999999999")
    line.pop("item_total", None)
    try:
        doc = load_zoho_document(raw)
        body = map_document(doc, pm.VENDOR, pm.rules_of(), account_names=pm.ACCOUNT_NAMES)
        validate_payment_request(body, currency="USD")
    except (ValidationFailed, ParkError):
        pass
    assert quantize(to_decimal("999999999999999") * to_decimal("999999999999999"), "USD")


def test_concur_amount_of_a_quadrillion_or_more_is_malformed() -> None:
    report, entries, allocations = em.raw_fixture("usd_mixed")
    entries = copy.deepcopy(entries)
    entries[0]["Items"][0]["ApprovedAmount"] = 1e20
    with pytest.raises(ValidationFailed):
        assemble_report(report, entries, allocations)
