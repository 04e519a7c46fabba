"""Shared set-up for the payables tests: rules, Concur vendors and vendor links, documents, and a
driver that runs a record's steps through ``connector.pipeline.run_step``.

The vendor links are written the way the vendors flow keeps them (``vendor_links`` with a
snapshot of the Concur vendor), so these tests do not depend on that flow.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from connector import pipeline, rules
from connector.db import Database
from connector.models import AuditEvent, Step, SyncRecord, VendorLink
from flows import FLOWS, payables_intake, payables_vendors
from mappings.rules import register_flow_sections
from sandbox.concur import config as concur_config
from sandbox.concur.admin import ConcurAdmin
from sandbox.zoho import seed as zoho_seed

ORG = zoho_seed.MAIN_ORG_ID
US_COMPANY = concur_config.SEED_US_COMPANY_ID

RULES: dict[str, Any] = {
    # Invoices are posted by these tests, so they are asked for: the default is bills only.
    "include": ["bills", "invoices"],
    "owner": {"LedgerCode": "DEFAULT"},
    "country_code": "US",
    "expense_types": {"Travel Expense": "TRAVL", "Airfare": "AIRFR", "Office Supplies": "OFFIC"},
    "default_expense_type": "MISC",
}

#: Zoho contact name -> Concur vendor (code, address, name, country, currency, created here?).
LINKS: dict[str, tuple[str, str, str, str, str, bool]] = {
    # Zoho vendors (bills)
    "Delta Air Lines": ("DELTA", "MAIN", "Delta Air Lines", "US", "USD", False),
    "Marriott International": ("MARRIOTT", "MAIN", "Marriott International", "US", "USD", False),
    "Staples Business": ("STAPLES", "MAIN", "Staples Business", "US", "USD", False),
    "Deutsche Lufthansa AG": ("LUFTHANSA", "MAIN", "Deutsche Lufthansa AG", "DE", "EUR", True),
    "Accor Hotels Europe": ("ACCOR", "MAIN", "Accor Hotels Europe", "FR", "EUR", True),
    # Zoho customers (invoices)
    "Globex Corporation": ("GLOBEX", "HQ", "Globex Corporation", "US", "USD", False),
    "Soylent Nahrungsmittel GmbH": (
        "SOYLENT",
        "MAIN",
        "Soylent Nahrungsmittel GmbH",
        "DE",
        "EUR",
        True,
    ),
}
#: A Zoho vendor that no test links up front (the "missing vendor" cases).
UNLINKED_VENDOR = "Amazon Business"
UNLINKED_CONCUR = ("AMAZON", "MAIN", "Amazon Business", "US", "USD")


def zoho_contacts(db: Database, settings: Any, connection_id: int) -> dict[str, dict[str, Any]]:
    """Zoho contacts of the main org by name (one paged read)."""
    from connector import connections

    client = connections.zoho_client(db, settings, connection_id)
    try:
        return {c["contact_name"]: c for c in client.contacts.iter_all()}
    finally:
        client.close()


def zoho_accounts(db: Database, settings: Any, connection_id: int) -> dict[str, str]:
    from connector import connections

    client = connections.zoho_client(db, settings, connection_id)
    try:
        return {a["account_name"]: str(a["account_id"]) for a in client.accounts.iter_all()}
    finally:
        client.close()


def create_concur_vendor(base_url: str, code: str, address: str, name: str, country: str,
                         currency: str) -> None:  # fmt: skip
    result = ConcurAdmin(base_url).create_vendors(
        {
            "VendorCode": code,
            "AddressCode": address,
            "VendorName": name,
            "Address1": "1 Test Street",
            "City": "Testville",
            "PostalCode": "10001",
            "CountryCode": country,
            "CurrencyCode": currency,
        },
        company_id=US_COMPANY,
    )
    statuses = [s for v in result.get("Vendor", []) for s in v.get("StatusList", [])]
    assert all(s.get("Type") == "SUCCESS" for s in statuses), result


def link(db: Database, connection_id: int, contact_id: str, code: str, address: str,
         snapshot: dict[str, Any] | None) -> None:  # fmt: skip
    with db.session() as s:
        existing = s.execute(
            select(VendorLink).where(
                VendorLink.connection_id == connection_id,
                VendorLink.zoho_contact_id == str(contact_id),
            )
        ).scalar_one_or_none()
        if existing is not None:  # the vendors flow got there first
            return
        s.add(
            VendorLink(
                connection_id=connection_id,
                zoho_contact_id=str(contact_id),
                concur_vendor_code=code,
                concur_address_code=address,
                matched_by="test",
                concur_snapshot=snapshot,
            )
        )


#: The vendors flow may link and update, never create a Concur vendor on its own: so a bill for
#: an unlinked vendor waits until someone creates it in Concur (the "missing vendor" cases).
VENDOR_RULES: dict[str, Any] = {"directions": ["concur_to_zoho"]}


#: ``import_rules(..., key=OMIT)`` leaves ``key`` out of the section (its default applies).
OMIT: Any = object()


def import_rules(db: Database, connection_id: int, **payables_overrides: Any) -> None:
    register_flow_sections()
    section = {k: v for k, v in {**RULES, **payables_overrides}.items() if v is not OMIT}
    document = {"payables": section, "vendors": VENDOR_RULES}
    rules.import_rules(db, connection_id, document, None)


def set_up(db: Database, settings: Any, connection_id: int, base_url: str,
           *, snapshots: bool = True, **rule_overrides: Any) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Rules, Concur vendors and links for ``LINKS``; returns the Zoho contacts by name."""
    import_rules(db, connection_id, **rule_overrides)
    contacts = zoho_contacts(db, settings, connection_id)
    for zoho_name, (code, address, name, country, currency, create) in LINKS.items():
        if create:
            create_concur_vendor(base_url, code, address, name, country, currency)
        snapshot = (
            {"VendorName": name, "CountryCode": country, "CurrencyCode": currency}
            if snapshots
            else None
        )
        link(db, connection_id, contacts[zoho_name]["contact_id"], code, address, snapshot)
    payables_vendors.forget_vendors()
    return contacts


def new_record(db: Database, connection_id: int, kind: str, obj: dict[str, Any]) -> int:
    """The record a webhook for ``obj`` (a Zoho bill/invoice as the admin API returns it) makes."""
    with db.session() as s:
        made = payables_intake.ensure_record(s, connection_id, kind, obj, trigger="test")
        assert made is not None
        return made[0].id


def drive(
    db: Database, settings: Any, record_id: int, *, max_steps: int = 12
) -> pipeline.StepResult:
    """Run the record's steps in this process until it finishes, parks or asks for a retry."""
    result = None
    for _ in range(max_steps):
        with db.session() as s:
            rec = s.get(SyncRecord, record_id)
            assert rec is not None
            step = Step(rec.step)
        result = FLOWS.run_step(
            db,
            record_id,
            step,
            owner=f"test-{uuid.uuid4().hex[:6]}",
            lease_seconds=60,
            task_id=f"t-{step.value}",
            settings=settings,
        )
        if result.action != "next":
            return result
    assert result is not None
    return result


def record(db: Database, record_id: int) -> SyncRecord:
    with db.session() as s:
        rec = s.get(SyncRecord, record_id)
        assert rec is not None
        s.expunge(rec)
        return rec


def audit_rows(db: Database, record_id: int) -> list[AuditEvent]:
    with db.session() as s:
        rows = (
            s.execute(
                select(AuditEvent).where(AuditEvent.record_id == record_id).order_by(AuditEvent.id)
            )
            .scalars()
            .all()
        )
        for row in rows:
            s.expunge(row)
        return list(rows)


def concur_created(base_url: str) -> list[dict[str, Any]]:
    """Payment requests created through the API (sandbox read-back)."""
    created = ConcurAdmin(base_url).created()
    items = created.get("payment_request") or created.get("payment_requests") or []
    return [i for i in items if i.get("company_id", US_COMPANY) == US_COMPANY]


def swagger_path() -> Path:
    return (
        Path(__file__).resolve().parents[3]
        / "shared"
        / "specs"
        / "concur"
        / "v3-0"
        / "PaymentRequest.swagger2.json"
    )


def swagger() -> dict[str, Any] | None:
    path = swagger_path()
    return json.loads(path.read_text()) if path.is_file() else None


def concur_requests(sandbox: Any) -> list[dict[str, Any]]:
    """Every live payment request of the US company, as ``GET`` renders it (read in-process, so
    the sandbox's request counters are not touched)."""
    from sandbox.concur.invoice import render_payment_request

    state = sandbox.state
    with state.lock:
        company = state.concur.store.company(US_COMPANY)
        return [
            render_payment_request(company, pr, f"{sandbox.url}/concur/us2")
            for pr in company.payment_requests.values()
            if pr.get("IsPaymentRequestDeleted") != "true"
        ]


def lines_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    items = (request.get("LineItems") or {}).get("LineItem") or []
    return [items] if isinstance(items, dict) else list(items)


def _validator(definition: str, *, documented: bool = False) -> Any:
    import copy

    import jsonschema

    spec = swagger()
    if spec is None:
        return None
    definitions = copy.deepcopy(spec["definitions"])
    if documented:
        post = definitions[definition]
        post["type"] = "object"
        # The reference page's required fields and "one owner field" (test_payment_request_schema)
        post["required"] = ["Name", "CountryCode", "InvoiceAmount", "VendorRemitToIdentifier"]
        post["anyOf"] = [
            {"required": [f]}
            for f in ("LedgerCode", "EmployeeLoginId", "EmployeeId", "EmployeeEmailAddress",
                      "ExternalPolicyId", "PurchaseOrderId")
        ]  # fmt: skip
        definitions["VendorIdentifier"]["anyOf"] = [
            {"required": ["VendorCode"]},
            {"required": ["Name", "Address1", "PostalCode"]},
        ]
    return jsonschema.Draft4Validator(
        {"$ref": f"#/definitions/{definition}", "definitions": definitions}
    )


def schema_errors(body: dict[str, Any], *, put: bool = False) -> list[str] | None:
    """Problems of a body we send against the published Swagger (POST: plus the documented
    required fields; every line against the line definition); ``None`` without the specs."""
    header = _validator("PaymentRequestPut" if put else "PaymentRequestPost", documented=not put)
    if header is None:
        return None
    line = _validator("PaymentRequestLineItemPut" if put else "PaymentRequestLineItemPost")
    from mappings.payment_requests import iter_line_items

    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in header.iter_errors(body)
    ]
    for index, item in enumerate(iter_line_items(body)):
        errors += [f"LineItems/{index}/{'/'.join(map(str, e.absolute_path))}: {e.message}"
                   for e in line.iter_errors(dict(item))]  # fmt: skip
    return errors


class Receiver:
    """The real Flask app on a real port (werkzeug, threaded), for the sandbox to deliver to."""

    def __init__(self, settings: Any, db: Database, enqueue: Any) -> None:
        import threading

        from werkzeug.serving import make_server

        from webhooks import create_app

        app = create_app(settings, db=db, config={"ENQUEUE_EVENT": enqueue})
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(10)

    def hook(self, connection_id: int) -> str:
        return f"{self.url}/webhooks/zoho/{connection_id}"


def requests_numbered(sandbox: Any, number: str) -> list[dict[str, Any]]:
    return [r for r in concur_requests(sandbox) if r.get("InvoiceNumber") == number]
