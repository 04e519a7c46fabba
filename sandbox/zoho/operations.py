"""Create and edit bills, invoices and vendors the way a Zoho user would in the web app.

Used by the admin API, the HTML page and the generators; every write stamps the sandbox clock and
fires the organization's webhook, which is how the connector hears about it in real life.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sandbox.zoho.books import create_contact_record, update_contact_record
from sandbox.zoho.records import build_bill, build_invoice
from sandbox.zoho.webhooks import fire

if TYPE_CHECKING:
    from sandbox.zoho.store import Org, ZohoStore


class OperationError(ValueError):
    """A bad admin/UI request (unknown vendor, account, ...); answered with HTTP 400."""


def _today(store: ZohoStore, org: Org) -> str:
    return datetime.fromtimestamp(store.now(), ZoneInfo(org.time_zone)).date().isoformat()


def _default_account(org: Org, kind: str) -> str:
    wanted = ("Travel Expense", "expense") if kind == "bill" else ("Consulting Income", "income")
    for a in org.accounts.values():
        if a["account_name"] == wanted[0]:
            return str(a["account_id"])
    return next(
        str(a["account_id"]) for a in org.accounts.values() if a["account_type"] == wanted[1]
    )


def _source_fields(data: dict[str, Any], party_key: str, number_key: str) -> dict[str, Any]:
    return {
        party_key: data[party_key],
        number_key: data[number_key],
        "date": data["date"],
        "due_date": data["due_date"],
        "status": data["status"],
        "reference_number": data.get("reference_number", ""),
        "notes": data.get("notes", ""),
        "currency_id": data["currency_id"],
        "exchange_rate": data["exchange_rate"],
        "custom_fields": data.get("custom_fields", []),
        "line_items": [
            {
                "account_id": li["account_id"],
                "name": li.get("name", ""),
                "description": li.get("description", ""),
                "rate": li["rate"],
                "quantity": li["quantity"],
                "tags": [
                    {"tag_id": t["tag_id"], "tag_option_id": t["tag_option_id"]}
                    for t in li.get("tags", [])
                ],
            }
            for li in data.get("line_items", [])
        ],
    }


def _apply(fields: dict[str, Any], changes: dict[str, Any], org: Org, kind: str) -> None:
    allowed = {
        "date",
        "due_date",
        "status",
        "reference_number",
        "notes",
        "exchange_rate",
        "custom_fields",
        "line_items",
        "currency_id",
        "bill_number",
        "invoice_number",
        "vendor_id",
        "customer_id",
    }
    for key, value in changes.items():
        if key in allowed:
            fields[key] = value
    if "currency_code" in changes:
        match = [
            c for c in org.currencies.values() if c["currency_code"] == changes["currency_code"]
        ]
        if not match:
            raise OperationError(f"unknown currency {changes['currency_code']!r}")
        fields["currency_id"] = match[0]["currency_id"]
        fields.setdefault("exchange_rate", match[0]["exchange_rate"])
    if "amount" in changes:
        try:
            amount = float(changes["amount"])
        except (TypeError, ValueError):
            raise OperationError("amount must be a number") from None
        first = (fields.get("line_items") or [{}])[0]
        fields["line_items"] = [
            {
                "account_id": first.get("account_id") or _default_account(org, kind),
                "description": first.get("description") or changes.get("description", ""),
                "rate": amount,
                "quantity": 1,
                "tags": first.get("tags", []),
            }
        ]
    for li in fields.get("line_items") or []:
        if str(li.get("account_id", "")) not in org.accounts:
            raise OperationError(f"unknown account {li.get('account_id')!r}")
    if fields.get("currency_id") and str(fields["currency_id"]) not in org.currencies:
        raise OperationError(f"unknown currency_id {fields['currency_id']!r}")


def _party(org: Org, fields: dict[str, Any], key: str, ctype: str) -> str:
    pid = str(fields.get(key) or "")
    if not pid:
        name = fields.get("vendor_name" if ctype == "vendor" else "customer_name")
        for rec in org.contacts.values():
            if rec.data["contact_type"] == ctype and (
                name is None or rec.data["contact_name"] == name
            ):
                return str(rec.data["contact_id"])
        raise OperationError(f"no {ctype} {name or ''} in organization {org.organization_id}")
    found = org.contacts.get(pid)
    if found is None or found.data["contact_type"] != ctype:
        raise OperationError(f"{pid!r} is not a {ctype} of organization {org.organization_id}")
    return pid


def create_document(
    store: ZohoStore, org: Org, kind: str, body: dict[str, Any], *, via: str
) -> dict[str, Any]:
    """Create a bill or invoice (kind = "bill" | "invoice") and fire its webhook."""
    resource = f"{kind}s"
    party_key = "vendor_id" if kind == "bill" else "customer_id"
    number_key = f"{kind}_number"
    today = _today(store, org)
    n = len(org.collection(resource)) + 1
    fields: dict[str, Any] = {
        party_key: _party(org, body, party_key, "vendor" if kind == "bill" else "customer"),
        number_key: body.get(number_key) or f"{'SBX' if kind == 'bill' else 'SBI'}-{n:05d}",
        "date": body.get("date") or today,
        "status": body.get("status") or ("open" if kind == "bill" else "sent"),
        "line_items": body.get("line_items")
        or [
            {
                "account_id": _default_account(org, kind),
                "description": "Sandbox line",
                "rate": 100.0,
                "quantity": 1,
            }
        ],
    }
    fields["due_date"] = (
        body.get("due_date")
        or (datetime.fromisoformat(fields["date"]) + timedelta(days=30)).date().isoformat()
    )
    _apply(fields, {k: v for k, v in body.items() if k not in (party_key, number_key)}, org, kind)
    ts = store.now()
    builder = build_bill if kind == "bill" else build_invoice
    data = builder(org, org.next_id(), fields, org.time(ts))
    store.put_record(org, resource, data, ts=ts)
    store.record_created(org, resource, data[f"{kind}_id"], via)
    if body.get("webhooks", True):
        fire(store, org, kind, data, "created")
    return data


def edit_document(
    store: ZohoStore, org: Org, kind: str, record_id: str, changes: dict[str, Any], *, via: str
) -> dict[str, Any]:
    resource = f"{kind}s"
    rec = org.collection(resource).get(record_id)
    if rec is None:
        raise KeyError(record_id)
    party_key = "vendor_id" if kind == "bill" else "customer_id"
    fields = _source_fields(rec.data, party_key, f"{kind}_number")
    _apply(fields, changes, org, kind)
    fields[party_key] = _party(org, fields, party_key, "vendor" if kind == "bill" else "customer")
    builder = build_bill if kind == "bill" else build_invoice
    data = builder(org, record_id, fields, rec.data["created_time"])
    rec.data = data
    store.modify_record(org, resource, rec)
    store.updated.append(
        {"organization_id": org.organization_id, "kind": resource, "id": record_id, "via": via}
    )
    fire(store, org, kind, data, "updated")
    return data


def create_vendor(store: ZohoStore, org: Org, body: dict[str, Any], *, via: str) -> dict[str, Any]:
    body = {"contact_type": "vendor", **body}
    body.setdefault("contact_name", f"Sandbox Vendor {len(org.contacts) + 1}")
    return create_contact_record(store, org, body, via=via)


def edit_vendor(
    store: ZohoStore, org: Org, contact_id: str, changes: dict[str, Any], *, via: str
) -> dict[str, Any]:
    rec = org.contacts.get(contact_id)
    if rec is None:
        raise KeyError(contact_id)
    return update_contact_record(store, org, rec, changes, via=via)
