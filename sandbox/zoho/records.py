"""Builders for Zoho Books records (contacts, bills, invoices, journals) and their list views.

Field names and list projections follow the OpenAPI files in ../shared/specs/zoho-books; records
are kept as the full "get" representation and projected for list responses.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from sandbox.zoho.store import Org

BILL_LIST_FIELDS = (
    "bill_id",
    "vendor_id",
    "vendor_name",
    "status",
    "bill_number",
    "reference_number",
    "date",
    "due_date",
    "due_days",
    "currency_id",
    "currency_code",
    "price_precision",
    "exchange_rate",
    "total",
    "balance",
    "location_id",
    "location_name",
    "created_time",
    "last_modified_time",
    "attachment_name",
    "has_attachment",
)
INVOICE_LIST_FIELDS = (
    "invoice_id",
    "customer_name",
    "customer_id",
    "status",
    "invoice_number",
    "reference_number",
    "date",
    "due_date",
    "due_days",
    "currency_id",
    "currency_code",
    "is_viewed_by_client",
    "has_attachment",
    "total",
    "balance",
    "created_time",
    "last_modified_time",
    "is_emailed",
    "reminders_sent",
    "payment_expected_date",
    "last_payment_date",
    "custom_fields",
    "documents",
    "location_id",
    "location_name",
    "salesperson_id",
    "salesperson_name",
    "shipping_charge",
    "adjustment",
    "write_off_amount",
    "exchange_rate",
)
CONTACT_LIST_FIELDS = (
    "contact_id",
    "contact_name",
    "company_name",
    "contact_type",
    "status",
    "payment_terms",
    "payment_terms_label",
    "currency_id",
    "currency_code",
    "outstanding_receivable_amount",
    "outstanding_payable_amount",
    "unused_credits_receivable_amount",
    "unused_credits_payable_amount",
    "first_name",
    "last_name",
    "email",
    "phone",
    "mobile",
    "created_time",
    "last_modified_time",
    "has_attachment",
)
JOURNAL_LIST_FIELDS = (
    "journal_id",
    "journal_date",
    "entry_number",
    "reference_number",
    "currency_id",
    "notes",
    "journal_type",
    "entity_type",
    "total",
    "bcy_total",
    "custom_field",
)
ACCOUNT_LIST_FIELDS = (
    "account_id",
    "account_name",
    "account_code",
    "account_type",
    "is_user_created",
    "is_system_account",
    "is_standalone_account",
    "is_active",
    "can_show_in_ze",
    "is_involved_in_transaction",
    "current_balance",
    "parent_account_id",
    "parent_account_name",
    "depth",
    "has_attachment",
    "is_child_present",
    "child_count",
    "documents",
    "created_time",
    "last_modified_time",
)

_TZ_CACHE: dict[str, ZoneInfo] = {}


def fmt_time(ts: float, tz_name: str) -> str:
    """Zoho's timestamp style: ``2013-11-18T02:17:40-0800`` in the organization's time zone."""
    tz = _TZ_CACHE.get(tz_name)
    if tz is None:
        tz = _TZ_CACHE[tz_name] = ZoneInfo(tz_name)
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%dT%H:%M:%S%z")


def project(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: record[k] for k in fields if k in record}


def money(value: float, precision: int) -> float:
    out = round(float(value), precision)
    return float(int(out)) if precision == 0 else out


def tag_refs(org: Org, tags: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Expand ``[{tag_id, tag_option_id}]`` into Zoho's response form with names."""
    out = []
    for t in tags or []:
        tag = org.tags.get(str(t.get("tag_id")))
        option_id = str(t.get("tag_option_id"))
        option = org.tag_options.get(option_id)
        out.append(
            {
                "tag_id": str(t.get("tag_id")),
                "tag_name": tag["tag_name"] if tag else "",
                "tag_option_id": option_id,
                "tag_option_name": option["option_name"] if option else "",
                "is_tag_mandatory": False,
            }
        )
    return out


def contact_persons_summary(contact: dict[str, Any]) -> dict[str, Any]:
    persons = contact.get("contact_persons") or []
    primary = next(
        (p for p in persons if p.get("is_primary_contact")), persons[0] if persons else {}
    )
    return {
        "first_name": primary.get("first_name", ""),
        "last_name": primary.get("last_name", ""),
        "email": primary.get("email", ""),
        "phone": primary.get("phone", ""),
        "mobile": primary.get("mobile", ""),
    }


def build_contact(org: Org, contact_id: str, body: dict[str, Any], created: str) -> dict[str, Any]:
    currency = org.currencies[str(body.get("currency_id") or org.base_currency_id)]
    persons = []
    for i, p in enumerate(body.get("contact_persons") or []):
        person = {
            "contact_person_id": f"{contact_id}{i + 1:02d}",
            "salutation": p.get("salutation", ""),
            "first_name": p.get("first_name", ""),
            "last_name": p.get("last_name", ""),
            "email": p.get("email", ""),
            "phone": p.get("phone", ""),
            "mobile": p.get("mobile", ""),
            "designation": p.get("designation", ""),
            "department": p.get("department", ""),
            "is_primary_contact": bool(p.get("is_primary_contact", i == 0)),
        }
        persons.append(person)
    terms = int(body.get("payment_terms") or 0)
    contact: dict[str, Any] = {
        "contact_id": contact_id,
        "contact_name": str(body["contact_name"]).strip(),
        "company_name": body.get("company_name", ""),
        "has_transaction": False,
        "contact_type": body.get("contact_type") or "customer",
        "customer_sub_type": body.get("customer_sub_type", "business"),
        "contact_number": body.get("contact_number", ""),
        "website": body.get("website", ""),
        "primary_contact_id": persons[0]["contact_person_id"] if persons else "",
        "payment_terms": terms,
        "payment_terms_label": body.get("payment_terms_label")
        or ("Due on Receipt" if terms == 0 else f"Net {terms}"),
        "currency_id": currency["currency_id"],
        "currency_code": currency["currency_code"],
        "currency_symbol": currency["currency_symbol"],
        "outstanding_receivable_amount": 0.0,
        "outstanding_payable_amount": 0.0,
        "unused_credits_receivable_amount": 0.0,
        "unused_credits_payable_amount": 0.0,
        "status": body.get("status", "active"),
        "custom_fields": list(body.get("custom_fields") or []),
        "tags": tag_refs(org, body.get("tags")),
        "billing_address": dict(body.get("billing_address") or {}),
        "shipping_address": dict(body.get("shipping_address") or {}),
        "contact_persons": persons,
        "notes": body.get("notes", ""),
        "created_time": created,
        "last_modified_time": created,
    }
    for key in ("vat_reg_no", "tax_reg_no", "gst_no", "gst_treatment", "tax_id", "track_1099"):
        if key in body:
            contact[key] = body[key]
    contact.update(contact_persons_summary(contact))
    return contact


def _lines(
    org: Org, owner_id: str, lines: list[dict[str, Any]], precision: int
) -> tuple[list[dict[str, Any]], float]:
    out = []
    sub_total = 0.0
    for i, line in enumerate(lines):
        rate = float(line.get("rate", 0))
        qty = float(line.get("quantity", 1))
        item_total = money(rate * qty, precision)
        sub_total += item_total
        account = org.accounts.get(str(line.get("account_id", "")))
        out.append(
            {
                "line_item_id": f"{owner_id}{i + 1:03d}",
                "account_id": account["account_id"] if account else "",
                "account_name": account["account_name"] if account else "",
                "name": line.get("name", ""),
                "description": line.get("description", ""),
                "rate": rate,
                "quantity": qty,
                "unit": line.get("unit", ""),
                "tax_id": "",
                "tax_name": "",
                "tax_percentage": 0,
                "item_total": item_total,
                "tags": tag_refs(org, line.get("tags")),
                "project_id": line.get("project_id", ""),
                "location_id": "",
            }
        )
    return out, money(sub_total, precision)


def build_bill(org: Org, bill_id: str, fields: dict[str, Any], created: str) -> dict[str, Any]:
    vendor = org.contacts[str(fields["vendor_id"])].data
    currency = org.currencies[str(fields.get("currency_id") or vendor["currency_id"])]
    precision = currency["price_precision"]
    lines, sub_total = _lines(org, bill_id, fields.get("line_items") or [], precision)
    status = fields.get("status", "open")
    total = sub_total
    balance = 0.0 if status in ("paid", "void") else total
    terms = int(fields.get("payment_terms", vendor.get("payment_terms", 0)))
    return {
        "bill_id": bill_id,
        "vendor_id": vendor["contact_id"],
        "vendor_name": vendor["contact_name"],
        "status": status,
        "bill_number": fields["bill_number"],
        "reference_number": fields.get("reference_number", ""),
        "date": fields["date"],
        "due_date": fields.get("due_date") or fields["date"],
        "due_days": "",
        "payment_terms": terms,
        "payment_terms_label": "Due on Receipt" if terms == 0 else f"Net {terms}",
        "currency_id": currency["currency_id"],
        "currency_code": currency["currency_code"],
        "currency_symbol": currency["currency_symbol"],
        "price_precision": precision,
        "exchange_rate": float(fields.get("exchange_rate") or currency["exchange_rate"]),
        "adjustment": 0.0,
        "adjustment_description": "",
        "custom_fields": list(fields.get("custom_fields") or []),
        "is_item_level_tax_calc": False,
        "is_inclusive_tax": False,
        "line_items": lines,
        "location_id": "",
        "location_name": "",
        "sub_total": sub_total,
        "tax_total": 0.0,
        "total": total,
        "payment_made": money(total - balance, precision),
        "vendor_credits_applied": 0.0,
        "taxes": [],
        "balance": balance,
        "billing_address": dict(vendor.get("billing_address") or {}),
        "documents": [],
        "attachment_name": "",
        "has_attachment": False,
        "created_time": created,
        "last_modified_time": created,
        "notes": fields.get("notes", ""),
        "terms": "",
    }


def build_invoice(
    org: Org, invoice_id: str, fields: dict[str, Any], created: str
) -> dict[str, Any]:
    customer = org.contacts[str(fields["customer_id"])].data
    currency = org.currencies[str(fields.get("currency_id") or customer["currency_id"])]
    precision = currency["price_precision"]
    lines, sub_total = _lines(org, invoice_id, fields.get("line_items") or [], precision)
    status = fields.get("status", "sent")
    balance = 0.0 if status in ("paid", "void", "draft") else sub_total
    terms = int(fields.get("payment_terms", customer.get("payment_terms", 0)))
    return {
        "invoice_id": invoice_id,
        "invoice_number": fields["invoice_number"],
        "date": fields["date"],
        "status": status,
        "payment_terms": terms,
        "payment_terms_label": "Due on Receipt" if terms == 0 else f"Net {terms}",
        "due_date": fields.get("due_date") or fields["date"],
        "due_days": "",
        "payment_expected_date": "",
        "last_payment_date": "",
        "reference_number": fields.get("reference_number", ""),
        "customer_id": customer["contact_id"],
        "customer_name": customer["contact_name"],
        "contact_persons_associated": [],
        "currency_id": currency["currency_id"],
        "currency_code": currency["currency_code"],
        "exchange_rate": float(fields.get("exchange_rate") or currency["exchange_rate"]),
        "discount": 0.0,
        "is_discount_before_tax": True,
        "discount_type": "item_level",
        "is_inclusive_tax": False,
        "is_viewed_by_client": False,
        "has_attachment": False,
        "client_viewed_time": "",
        "location_id": "",
        "location_name": "",
        "line_items": lines,
        "shipping_charge": 0.0,
        "adjustment": 0.0,
        "adjustment_description": "",
        "sub_total": sub_total,
        "tax_total": 0.0,
        "total": sub_total,
        "taxes": [],
        "payment_made": money(sub_total - balance, precision) if status != "draft" else 0.0,
        "credits_applied": 0.0,
        "tax_amount_withheld": 0.0,
        "balance": balance,
        "write_off_amount": 0.0,
        "price_precision": precision,
        "is_emailed": status != "draft",
        "reminders_sent": 0,
        "last_reminder_sent_date": "",
        "billing_address": dict(customer.get("billing_address") or {}),
        "shipping_address": dict(customer.get("shipping_address") or {}),
        "notes": fields.get("notes", ""),
        "terms": "",
        "custom_fields": list(fields.get("custom_fields") or []),
        "documents": [],
        "salesperson_id": "",
        "salesperson_name": "",
        "invoice_url": "",
        "created_time": created,
        "last_modified_time": created,
    }
