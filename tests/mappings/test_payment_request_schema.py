"""Every payment request we send validates against the published PaymentRequest v3.0 schema.

The Swagger (``shared/specs/concur/v3-0/PaymentRequest.swagger2.json``) is checked with
``jsonschema`` (draft 4, Swagger 2's dialect), its ``definitions`` resolving the ``$ref``s. The
Swagger marks nothing as required and gives ``LineItems`` no ``type``, so on its own it would
accept almost anything; the tests therefore also check (1) each line against
``PaymentRequestLineItemPost`` whatever the ``LineItems`` shape, (2) a strict copy with
``additionalProperties: false`` so a misspelled field fails, and (3) the required fields the
reference page documents (``Name``, ``CountryCode``, ``InvoiceAmount``,
``VendorRemitToIdentifier``, one owner field), added to the schema here.

Without ``../shared/specs`` the tests skip with the reason shown, except under ``CI=true``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from connector.errors import ValidationFailed
from mappings.payables import VendorRef, map_document
from mappings.payables_rules import parse_payables_rules
from mappings.payables_validation import validate_payment_request
from mappings.payment_requests import (
    ALLOCATION_FIELDS,
    HEADER_FIELDS,
    LINE_FIELDS,
    VENDOR_IDENTIFIER_FIELDS,
    iter_line_items,
)
from mappings.zoho_documents import load_zoho_document

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"
SWAGGER = SPECS / "concur" / "v3-0" / "PaymentRequest.swagger2.json"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zoho"
CI = os.environ.get("CI", "").lower() == "true"

#: The reference page (v3.payment-request.html) marks these **Required**.
DOCUMENTED_REQUIRED = ["Name", "CountryCode", "InvoiceAmount", "VendorRemitToIdentifier"]
#: ... and at least one of these ("required if none of the following are provided").
DOCUMENTED_OWNER = [
    "LedgerCode",
    "EmployeeLoginId",
    "EmployeeId",
    "EmployeeEmailAddress",
    "ExternalPolicyId",
    "PurchaseOrderId",
]

VENDOR = VendorRef("ACME-001", "REMIT", "US", "USD", "Acme Office Supplies Ltd")
ACCOUNT_NAMES = {"982000000000388": "Computer Equipment", "982000000000390": "Installation"}


@pytest.fixture(scope="module")
def swagger() -> dict[str, Any]:
    if not SWAGGER.is_file():
        reason = f"published Concur specs not found at {SWAGGER}"
        if CI:
            pytest.fail(f"CI=true: {reason}; the schema tests must run in CI", pytrace=False)
        pytest.skip(reason)
    data: dict[str, Any] = json.loads(SWAGGER.read_text())
    return data


def validator(swagger: dict[str, Any], definition: str, *, strict: bool = False) -> Any:
    definitions = copy.deepcopy(swagger["definitions"])
    if strict:
        for schema in definitions.values():
            if "properties" in schema:
                schema["additionalProperties"] = False
    schema = {"$ref": f"#/definitions/{definition}", "definitions": definitions}
    cls = jsonschema.validators.validator_for(
        {"$schema": "http://json-schema.org/draft-04/schema#"}
    )
    return cls(schema)


def documented_validator(swagger: dict[str, Any]) -> Any:
    """The Swagger's POST schema plus the reference page's required fields."""
    definitions = copy.deepcopy(swagger["definitions"])
    post = definitions["PaymentRequestPost"]
    post["type"] = "object"
    post["required"] = DOCUMENTED_REQUIRED
    post["anyOf"] = [{"required": [owner]} for owner in DOCUMENTED_OWNER]
    definitions["VendorIdentifier"]["anyOf"] = [
        {"required": ["VendorCode"]},
        {"required": ["Name", "Address1", "PostalCode"]},
    ]
    schema = {"$ref": "#/definitions/PaymentRequestPost", "definitions": definitions}
    return jsonschema.Draft4Validator(schema)


def rules(**overrides: Any) -> Any:
    section: dict[str, Any] = {
        "include": ["bills", "invoices"],  # invoice fixtures are mapped too; default is bills
        "owner": {"LedgerCode": "DEFAULT"},
        "country_code": "US",
        "expense_types": {"Office Supplies": "OFFIC"},
        "default_expense_type": "MISC",
        "adjustment_expense_type": "ADJ",
    }
    section.update(overrides)
    return parse_payables_rules(section)


POSTABLE = sorted(p.stem for p in FIXTURES.glob("*.json") if p.stem != "bill_void")

SETTINGS = [
    pytest.param({}, id="defaults"),
    pytest.param({"line_items_shape": "nested"}, id="nested"),
    pytest.param({"custom_field_style": "plain", "reference_custom_field": 3}, id="plain-custom"),
    pytest.param({"reference_custom_field": 12}, id="plain-by-default-custom"),
    pytest.param(
        {"custom_field_style": "padded", "reference_custom_field": 12}, id="padded-custom"
    ),
    pytest.param({"adjustments": "line"}, id="adjustment-lines"),
    pytest.param({"owner": {"EmployeeLoginId": "ap@example.com"}}, id="employee-owner"),
    pytest.param({"owner": {"ExternalPolicyId": "POL-7"}}, id="policy-owner"),
]


def body_for(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    doc = load_zoho_document(json.loads((FIXTURES / f"{name}.json").read_text()))
    return map_document(doc, VENDOR, rules(**overrides), account_names=ACCOUNT_NAMES)


def errors_of(validator_: Any, instance: Any) -> list[str]:
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator_.iter_errors(instance)
    )


def allocations(line: dict[str, Any]) -> Iterator[dict[str, Any]]:
    value = line.get("Allocations")
    if isinstance(value, dict):
        value = value.get("Allocation")
        value = [value] if isinstance(value, dict) else value
    yield from value or []


# --------------------------------------------------------------------------- field lists


@pytest.mark.parametrize(
    ("definition", "ours", "families"),
    [
        pytest.param(
            "PaymentRequestPost",
            {*HEADER_FIELDS, "LineItems", "VendorRemitToIdentifier"},
            ("Custom", "OrgUnit"),
            id="header",
        ),
        pytest.param(
            "PaymentRequestLineItemPost", {*LINE_FIELDS, "Allocations"}, ("Custom",), id="line"
        ),
        pytest.param(
            "PaymentRequestAllocationPostPut", set(ALLOCATION_FIELDS), ("Custom",), id="allocation"
        ),
        pytest.param("VendorIdentifier", set(VENDOR_IDENTIFIER_FIELDS), (), id="vendor"),
    ],
)
def test_our_field_lists_match_the_swagger(
    swagger: dict[str, Any], definition: str, ours: set[str], families: tuple[str, ...]
) -> None:
    published = set(swagger["definitions"][definition]["properties"])
    published = {p for p in published if not p.startswith(families)} if families else published
    assert ours == published


def test_every_swagger_property_is_a_string_or_a_ref(swagger: dict[str, Any]) -> None:
    """Why amounts go out as strings: the Swagger types every scalar as ``string``."""
    for name in ("PaymentRequestPost", "PaymentRequestLineItemPost"):
        for prop, spec in swagger["definitions"][name]["properties"].items():
            assert spec.get("type") == "string" or "$ref" in spec, prop


# --------------------------------------------------------------------------- mapped bodies


@pytest.mark.parametrize("overrides", SETTINGS)
@pytest.mark.parametrize("name", POSTABLE)
def test_mapped_body_validates_against_published_schema(
    swagger: dict[str, Any], name: str, overrides: dict[str, Any]
) -> None:
    body = body_for(name, overrides)
    assert errors_of(validator(swagger, "PaymentRequestPost"), body) == []
    assert errors_of(documented_validator(swagger), body) == []
    line_validator = validator(swagger, "PaymentRequestLineItemPost")
    alloc_validator = validator(swagger, "PaymentRequestAllocationPostPut")
    lines = list(iter_line_items(body))
    assert lines
    for line in lines:
        assert errors_of(line_validator, line) == []
        for allocation in allocations(dict(line)):
            assert errors_of(alloc_validator, allocation) == []


@pytest.mark.parametrize("overrides", [p for p in SETTINGS if "plain" not in str(p.id)])
@pytest.mark.parametrize("name", POSTABLE)
def test_mapped_body_uses_only_swagger_field_names(
    swagger: dict[str, Any], name: str, overrides: dict[str, Any]
) -> None:
    """Strict copy (no additional properties): catches a misspelled field. The ``plain``
    custom-field style is the reference page's spelling, not the Swagger's, so it is excluded."""
    body = body_for(name, overrides)
    header = {k: v for k, v in body.items() if k != "LineItems"}
    assert errors_of(validator(swagger, "PaymentRequestPost", strict=True), header) == []
    for line in iter_line_items(body):
        assert errors_of(validator(swagger, "PaymentRequestLineItemPost", strict=True), line) == []


@pytest.mark.parametrize("name", POSTABLE)
def test_documented_required_fields_are_present(name: str) -> None:
    body = body_for(name, {})
    for field in DOCUMENTED_REQUIRED:
        assert body.get(field), field
    assert body["VendorRemitToIdentifier"]["VendorCode"]
    assert sum(1 for f in DOCUMENTED_OWNER if body.get(f)) == 1
    assert isinstance(body["InvoiceAmount"], str)


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("field", DOCUMENTED_REQUIRED)
def test_missing_required_field_rejected_by_schema_and_validator(
    swagger: dict[str, Any], field: str
) -> None:
    body = body_for("bill_basic_usd", {})
    del body[field]
    assert any(
        f"'{field}' is a required property" in e
        for e in errors_of(documented_validator(swagger), body)
    )
    with pytest.raises(ValidationFailed) as exc:
        validate_payment_request(body, currency="USD")
    assert f"{field}: required" in exc.value.errors


def test_missing_owner_rejected_by_schema_and_validator(swagger: dict[str, Any]) -> None:
    body = body_for("bill_basic_usd", {})
    del body["LedgerCode"]
    assert errors_of(documented_validator(swagger), body)
    with pytest.raises(ValidationFailed, match="exactly one of"):
        validate_payment_request(body, currency="USD")


def test_vendor_identifier_without_code_rejected_by_both(swagger: dict[str, Any]) -> None:
    body = body_for("bill_basic_usd", {})
    body["VendorRemitToIdentifier"] = {"AddressCode": "REMIT", "Name": "Acme"}
    assert errors_of(documented_validator(swagger), body)
    with pytest.raises(ValidationFailed, match="needs VendorCode"):
        validate_payment_request(body, currency="USD")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("InvoiceAmount",), 733.89, id="header-float"),
        pytest.param(("LineItems", 0, "TotalPrice"), 599.96, id="line-float"),
        pytest.param(("LineItems", 0, "Quantity"), 4, id="line-int"),
    ],
)
def test_numbers_instead_of_strings_rejected_by_both(
    swagger: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    body = body_for("bill_basic_usd", {})
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    line_errors = [
        e
        for line in iter_line_items(body)
        for e in errors_of(validator(swagger, "PaymentRequestLineItemPost"), line)
    ]
    assert errors_of(validator(swagger, "PaymentRequestPost"), body) or line_errors
    with pytest.raises(ValidationFailed, match="Not a valid string"):
        validate_payment_request(body, currency="USD")


def test_void_bill_never_produces_a_body() -> None:
    doc = load_zoho_document(json.loads((FIXTURES / "bill_void.json").read_text()))
    with pytest.raises(ValidationFailed):
        map_document(doc, VENDOR, rules())


def test_vendor_country_used_in_body() -> None:
    doc = load_zoho_document(json.loads((FIXTURES / "bill_inclusive_eur.json").read_text()))
    body = map_document(doc, dataclasses.replace(VENDOR, country_code="DE"), rules())
    assert body["CountryCode"] == "DE"
