"""Payloads the sandbox accepts must match Zoho's published request schemas, and a payload the
schema rejects for a missing required field must be rejected by the sandbox too.

Schemas come from ../shared/specs/zoho-books (skipped with a reason when absent, failed in CI).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

if TYPE_CHECKING:
    from tests.sandbox.conftest import Zoho


def _validator(specs_dir: Path, file: str, schema: str) -> OAS30Validator:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load((specs_dir / "zoho-books" / file).read_text(), Loader=loader)
    return OAS30Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    )


@pytest.fixture(scope="module")
def journal_schema(specs_dir: Path) -> OAS30Validator:
    return _validator(specs_dir, "journals.yml", "create-a-journal-request")


@pytest.fixture(scope="module")
def contact_schema(specs_dir: Path) -> OAS30Validator:
    return _validator(specs_dir, "contacts.yml", "create-a-contact-request")


def _errors(validator: OAS30Validator, payload: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(payload)]


def _journal_payloads(zoho: Zoho) -> list[dict[str, Any]]:
    ids = zoho.lookup()
    acc = ids["accounts"]
    tag_id, option_id = ids["options"][("Cost Center", "Sales")]
    vendor = zoho.get("/contacts", params={"contact_type": "vendor"}).json()["contacts"][0]
    debit = {"account_id": acc["Meals and Entertainment"], "debit_or_credit": "debit", "amount": 42}
    credit = {"account_id": acc["Corporate Card"], "debit_or_credit": "credit", "amount": 42}
    return [
        {"journal_date": "2025-06-30", "line_items": [debit, credit]},
        {
            "journal_date": "2025-06-30",
            "reference_number": "RPT-77",
            "notes": "Trip to Berlin",
            "journal_type": "both",
            "status": "draft",
            "line_items": [
                # The spec types tag ids as int64 (its examples are strings); both are accepted.
                {
                    **debit,
                    "description": "Dinner",
                    "tags": [{"tag_id": int(tag_id), "tag_option_id": int(option_id)}],
                },
                {**credit, "customer_id": vendor["contact_id"]},
            ],
        },
        {
            "journal_date": "2025-07-01",
            "currency_id": ids["currencies"]["EUR"],
            "exchange_rate": 1.085,
            "reference_number": "RPT-78",
            "line_items": [{**debit, "amount": 10.5}, {**credit, "amount": 10.5}],
        },
    ]


def test_accepted_journals_conform_to_the_request_schema(
    zoho: Zoho, journal_schema: OAS30Validator
) -> None:
    for payload in _journal_payloads(zoho):
        assert _errors(journal_schema, payload) == []
        r = zoho.post("/journals", json=payload)
        assert r.status_code == 201, r.text
        form = zoho.post("/journals", data={"JSONString": json.dumps(payload)})
        assert form.status_code == 201, form.text


@pytest.mark.parametrize(
    ("path", "field"),
    [((), "journal_date"), (("line_items", 0), "amount"), (("line_items", 1), "debit_or_credit")],
)
def test_missing_required_journal_field_is_rejected_by_schema_and_sandbox(
    zoho: Zoho, journal_schema: OAS30Validator, path: tuple[Any, ...], field: str
) -> None:
    payload = _journal_payloads(zoho)[1]
    target: Any = payload
    for step in path:
        target = target[step]
    del target[field]
    assert any(field in m and "required" in m for m in _errors(journal_schema, payload))
    r = zoho.post("/journals", json=payload)
    assert r.status_code == 400 and r.json()["code"] != 0
    assert field in r.json()["message"]


def _contact_payloads(zoho: Zoho) -> list[dict[str, Any]]:
    eur = zoho.lookup()["currencies"]["EUR"]
    return [
        {"contact_name": "Minimal Vendor"},
        {
            "contact_name": "Hotel Adlon",
            "company_name": "Hotel Adlon Kempinski",
            "contact_type": "vendor",
            "currency_id": eur,
            "payment_terms": 30,
            "payment_terms_label": "Net 30",
            "website": "https://example.com",
            "billing_address": {
                "address": "Unter den Linden 77",
                "city": "Berlin",
                "zip": "10117",
                "country": "Germany",
            },
            "contact_persons": [
                {
                    "first_name": "Lena",
                    "last_name": "Vogel",
                    "email": "ap@adlon.example",
                    "is_primary_contact": True,
                }
            ],
            "notes": "Concur vendor 0042",
        },
    ]


def test_accepted_contacts_conform_to_the_request_schema(
    zoho: Zoho, contact_schema: OAS30Validator
) -> None:
    for payload in _contact_payloads(zoho):
        assert _errors(contact_schema, payload) == []
        r = zoho.post("/contacts", json=payload)
        assert r.status_code == 201, r.text


def test_missing_contact_name_is_rejected_by_schema_and_sandbox(
    zoho: Zoho, contact_schema: OAS30Validator
) -> None:
    payload = _contact_payloads(zoho)[1]
    del payload["contact_name"]
    assert any("contact_name" in m for m in _errors(contact_schema, payload))
    r = zoho.post("/contacts", json=payload)
    assert r.status_code == 400 and "contact_name" in r.json()["message"]
