"""Every vendor body the reconciliation sends validates against the published schemas.

- Concur: each record of a ``POST``/``PUT /api/v3.1/invoice/vendors`` body against ``Vendor`` of
  ``specs/concur/v3-1/Vendors.swagger2.json`` (draft 4). The Swagger's ``required`` list spells
  ``CurrenyCode`` (sic); as in ``tests/sandbox/test_concur_conformance.py`` the test asserts the
  typo is still there and validates with ``CurrencyCode``, the name the reference page, the
  sandbox and Concur use.
- Zoho: ``POST /contacts`` bodies against ``create-a-contact-request`` and ``PUT
  /contacts/{id}`` against ``update-a-contact-request`` of ``specs/zoho-books/contacts.yml``.

Neither schema forbids unknown properties, so each body is also checked field by field against
the schema's property names (a misspelled field would be ignored by the vendor). The bodies are
the ones actually sent to the sandbox during real passes (creates and updates both ways), plus
edge cases built directly. A body missing a required field is refused by the published schema
and by our own outbound schema. Without ``../shared/specs`` the tests skip, except in CI.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from jsonschema import Draft4Validator
from marshmallow import ValidationError
from openapi_schema_validator import OAS30Validator

from mappings import vendors_payloads, vendors_rules

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"
CI = os.environ.get("CI", "").lower() == "true"
ZOHO_ORG = "10234695"


def _spec(relative: str) -> Path:
    path = SPECS / relative
    if not path.exists():
        if CI:
            pytest.fail(f"spec {path} is missing in CI")
        pytest.skip(f"spec {path} not found (shared specs are not checked in)")
    return path


@pytest.fixture(scope="module")
def concur_vendor_schema() -> dict[str, Any]:
    spec = json.loads(_spec("concur/v3-1/Vendors.swagger2.json").read_text())
    spec = copy.deepcopy(spec)
    required = spec["definitions"]["Vendor"]["required"]
    assert "CurrenyCode" in required, "spec typo fixed upstream: drop this work-around"
    spec["definitions"]["Vendor"]["required"] = [
        "CurrencyCode" if r == "CurrenyCode" else r for r in required
    ]
    return spec


@pytest.fixture(scope="module")
def zoho_spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(_spec("zoho-books/contacts.yml").read_text(), Loader=loader)


def concur_errors(spec: dict[str, Any], record: dict[str, Any]) -> list[str]:
    validator = Draft4Validator(
        {"definitions": spec["definitions"], "$ref": "#/definitions/Vendor"}
    )
    errors = [e.message for e in validator.iter_errors(record)]
    known = set(spec["definitions"]["Vendor"]["properties"])
    errors += [f"unknown field {k}" for k in record if k not in known]
    return errors


def zoho_errors(spec: dict[str, Any], schema: str, body: dict[str, Any]) -> list[str]:
    validator = OAS30Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    )
    errors = [e.message for e in validator.iter_errors(body)]
    known = set(spec["components"]["schemas"][schema]["properties"])
    errors += [f"unknown field {k}" for k in body if k not in known]
    persons = spec["components"]["schemas"]["contact_persons"]["items"]["properties"]
    for person in body.get("contact_persons") or []:
        errors += [f"unknown person field {k}" for k in person if k not in persons]
    address = spec["components"]["schemas"]["billing_address"]["properties"]
    errors += [
        f"unknown address field {k}" for k in body.get("billing_address") or {} if k not in address
    ]
    return errors


class Capture(requests.Session):
    """A session that keeps every JSON body written to the vendors' APIs."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = request.url or ""
        if request.method in ("POST", "PUT") and "/api/" in url and request.body:
            body = request.body.decode() if isinstance(request.body, bytes) else request.body
            self.sent.append((request.method, url, json.loads(body)))
        return super().send(request, **kwargs)


def test_every_body_sent_in_real_passes_validates(
    db: Any,
    connected: int,
    sandbox_settings: Any,
    sandbox: Any,
    admin: Any,
    concur_vendor_schema: dict[str, Any],
    zoho_spec: dict[str, Any],
) -> None:
    from connector import connections
    from flows import vendor_sync as vendors
    from sandbox.concur.admin import ConcurAdmin

    cap = Capture()

    def clients() -> vendors.Clients:
        return vendors.Clients(
            connections.zoho_client(db, sandbox_settings, connected, session=cap),
            connections.concur_client(db, sandbox_settings, connected, session=cap),
        )

    # A Zoho vendor with every mapped field (incl. a tax number and two contact persons).
    admin.zoho_create(
        ZOHO_ORG, "vendor", contact_name="Full Fields GmbH", contact_number="FULL1",
        payment_terms=14, tax_reg_no="DE811907980",
        billing_address={"address": "Hauptstr. 1", "street2": "Hof 2", "city": "Berlin",
                         "state": "BE", "zip": "10115", "country": "Germany"},
        contact_persons=[{"first_name": "Ada", "last_name": "Lovelace", "email": "ada@full.example",
                          "is_primary_contact": True},
                         {"first_name": "Bob", "email": "bob@full.example"}],
    )  # fmt: skip
    assert vendors.reconcile(db, sandbox_settings, connected, clients=clients()).status == "ok"
    # Updates both ways, including address, person and currency-free fields.
    with sandbox.state.lock:
        org = sandbox.state.zoho.orgs[ZOHO_ORG]
        full = next(
            r.data for r in org.contacts.values() if r.data["contact_name"] == "Full Fields GmbH"
        )
        full_id, full_address = full["contact_id"], dict(full["billing_address"])
    admin.zoho_edit(
        ZOHO_ORG, "vendor", full_id, billing_address={**full_address, "city": "Potsdam"}
    )
    ConcurAdmin(sandbox.url).update_vendors(
        {"VendorCode": "HOOLI", "AddressCode": "MAIN", "CountryCode": "US", "CurrencyCode": "USD",
         "ContactEmail": "ap@hooli.example", "ContactFirstName": "Gavin", "PaymentTerms": "60"}
    )  # fmt: skip
    assert vendors.reconcile(db, sandbox_settings, connected, clients=clients()).status == "ok"

    concur_records = [
        (method, record)
        for method, url, body in cap.sent
        if url.split("?")[0].endswith("/api/v3.1/invoice/vendors")
        for record in body["Vendor"]
    ]
    zoho_bodies = [(method, body) for method, url, body in cap.sent if "/books/v3/contacts" in url]
    assert {m for m, _ in concur_records} == {"POST", "PUT"}
    assert {m for m, _ in zoho_bodies} == {"POST", "PUT"}
    for method, record in concur_records:
        assert concur_errors(concur_vendor_schema, record) == [], (method, record)
        vendors_payloads.validate_concur_vendor(record)
    for method, body in zoho_bodies:
        schema = "create-a-contact-request" if method == "POST" else "update-a-contact-request"
        assert zoho_errors(zoho_spec, schema, body) == [], (method, body)
        vendors_payloads.validate_zoho_contact(body)
    assert any("TaxID" in r for _, r in concur_records)
    assert any("contact_persons" in b for m, b in zoho_bodies if m == "PUT")


CONCUR_REQUIRED = ["VendorCode", "AddressCode", "CountryCode", "CurrencyCode"]


def full_values() -> dict[str, str | None]:
    return {
        "name": "Edge & Co. KG", "address1": "1 Way", "address2": None, "city": "Kyiv",
        "state": "Kyivska", "postal_code": "01001", "country_code": "UA", "currency_code": "UAH",
        "payment_terms": "999", "tax_id": "UA1", "contact_first_name": "Olena",
        "contact_last_name": None, "contact_email": "o@edge.example",
    }  # fmt: skip


def test_built_bodies_validate(
    concur_vendor_schema: dict[str, Any], zoho_spec: dict[str, Any]
) -> None:
    values = full_values()
    create = vendors_payloads.concur_body(values, "EDGE", "MAIN")
    update = vendors_payloads.concur_body(
        {"city": "Lviv"}, "EDGE", "MAIN", only=["city"], base=values
    )
    assert update == {"VendorCode": "EDGE", "AddressCode": "MAIN", "City": "Lviv", "State": "Kyivska",
                      "CountryCode": "UA", "CurrencyCode": "UAH"}  # fmt: skip
    for body in (create, update):
        assert concur_errors(concur_vendor_schema, body) == []
        vendors_payloads.validate_concur_vendor(body)
    for rules in (
        vendors_rules.VendorRules(),
        vendors_rules.VendorRules(code_from="Concur Code", tax_id_field="vat_reg_no"),
    ):
        body = vendors_payloads.zoho_body(values, rules, code="EDGE", currency_id="460000000000097")
        assert zoho_errors(zoho_spec, "create-a-contact-request", body) == [], body
        vendors_payloads.validate_zoho_contact(body)


@pytest.mark.parametrize("missing", CONCUR_REQUIRED)
def test_concur_vendor_missing_a_required_field_is_refused_by_both(
    concur_vendor_schema: dict[str, Any], missing: str
) -> None:
    body = vendors_payloads.concur_body(full_values(), "EDGE", "MAIN")
    del body[missing]
    assert any(missing in e for e in concur_errors(concur_vendor_schema, body))
    with pytest.raises(ValidationError) as info:
        vendors_payloads.validate_concur_vendor(body)
    assert missing in info.value.messages  # type: ignore[operator]


def test_unknown_or_malformed_concur_fields_are_refused() -> None:
    body = vendors_payloads.concur_body(full_values(), "EDGE", "MAIN")
    with pytest.raises(ValidationError):
        vendors_payloads.validate_concur_vendor({**body, "CurrenyCode": "USD"})
    with pytest.raises(ValidationError):
        vendors_payloads.validate_concur_vendor({**body, "CountryCode": "usa"})
    with pytest.raises(ValidationError):
        vendors_payloads.validate_concur_vendor({**body, "PaymentTerms": "0"})


def test_zoho_contact_without_a_name_is_refused_by_both(zoho_spec: dict[str, Any]) -> None:
    body = vendors_payloads.zoho_body(full_values(), vendors_rules.VendorRules(), code="EDGE")
    del body["contact_name"]
    assert any(
        "contact_name" in e for e in zoho_errors(zoho_spec, "create-a-contact-request", body)
    )
    with pytest.raises(ValidationError):
        vendors_payloads.validate_zoho_contact(body)
    with pytest.raises(ValidationError):
        vendors_payloads.validate_zoho_contact({**body, "contact_name": "  "})
    with pytest.raises(ValidationError):
        vendors_payloads.validate_zoho_contact({**body, "contact_name": "X", "vendor_code": "EDGE"})
