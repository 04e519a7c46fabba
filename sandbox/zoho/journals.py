"""``POST /journals`` validation and the stored journal representation.

Each rule raises its own ZohoError so a client sees one specific 400 per violation, the way
Zoho reports the first problem it finds.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sandbox.zoho import errors as E
from sandbox.zoho.records import money, tag_refs

if TYPE_CHECKING:
    from sandbox.zoho.store import Org, ZohoStore

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_REFERENCE_LENGTH = 100  # sandbox choice, matching the expenses spec's reference_number limit


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or value is None or value == "":
        raise E.invalid_value(field, "a number is required")
    try:
        out = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise E.invalid_value(field, "a number is required") from None
    if not out.is_finite():
        raise E.invalid_value(field, "a number is required")
    return out


def _check_date(value: Any, field: str) -> str:
    if value is None or value == "":
        raise E.missing(field)
    if not isinstance(value, str) or not _DATE.match(value):
        raise E.invalid_value(field, "use the yyyy-mm-dd format")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise E.invalid_value(field, "not a calendar date") from None
    return value


def _check_tags(org: Org, tags: Any, where: str) -> list[dict[str, Any]]:
    if tags in (None, ""):
        return []
    if not isinstance(tags, list):
        raise E.invalid_value(f"{where}.tags", "a list of {tag_id, tag_option_id} is required")
    out = []
    for t in tags:
        if not isinstance(t, dict):
            raise E.invalid_value(f"{where}.tags", "a list of {tag_id, tag_option_id} is required")
        tag_id = str(t.get("tag_id") or "")
        option_id = str(t.get("tag_option_id") or "")
        tag = org.tags.get(tag_id)
        if tag is None or not tag.get("is_active", True):
            raise E.ZohoError(400, E.INVALID_TAG, f"The reporting tag {tag_id!r} does not exist.")
        if option_id in ("", "untagged"):
            continue
        option = org.tag_options.get(option_id)
        if option is None or option["tag_id"] != tag_id:
            raise E.ZohoError(
                400,
                E.INVALID_TAG,
                f"The option {option_id!r} does not belong to the reporting tag "
                f"{tag['tag_name']!r}.",
            )
        if not option.get("is_active", True):
            raise E.ZohoError(
                400,
                E.INVALID_TAG,
                f"The option {option['option_name']!r} of the reporting tag "
                f"{tag['tag_name']!r} is inactive.",
            )
        out.append({"tag_id": tag_id, "tag_option_id": option_id})
    return out


def validate_journal(org: Org, body: Any) -> dict[str, Any]:
    """Return a normalised journal body or raise the first violation as a ZohoError."""
    if not isinstance(body, dict):
        raise E.ZohoError(400, E.INVALID_BODY, "The request body must be a JSON object.")
    journal_date = _check_date(body.get("journal_date"), "journal_date")
    ref = body.get("reference_number")
    if ref is not None and not isinstance(ref, (str, int)):
        raise E.invalid_value("reference_number")
    ref = "" if ref is None else str(ref)
    if len(ref) > MAX_REFERENCE_LENGTH:
        raise E.invalid_value("reference_number", f"at most {MAX_REFERENCE_LENGTH} characters")
    journal_type = str(body.get("journal_type") or "both").lower()
    if journal_type not in ("cash", "both"):
        raise E.invalid_value("journal_type", "allowed values are cash and both")
    status = str(body.get("status") or "published").lower()
    if status not in ("draft", "published"):
        raise E.invalid_value("status", "allowed values are draft and published")

    currency_id = str(body.get("currency_id") or org.base_currency_id)
    currency = org.currencies.get(currency_id)
    if currency is None:
        raise E.ZohoError(400, E.CURRENCY_NOT_FOUND, "The currency does not exist.")
    precision = int(currency["price_precision"])
    if currency_id == org.base_currency_id:
        exchange_rate = Decimal(1)
    else:
        raw_rate = body.get("exchange_rate")
        if raw_rate in (None, "", 0, "0"):
            raise E.ZohoError(
                400,
                E.EXCHANGE_RATE_REQUIRED,
                f"Exchange rate is required for a journal in {currency['currency_code']}.",
            )
        exchange_rate = _decimal(raw_rate, "exchange_rate")
        if exchange_rate <= 0:
            raise E.invalid_value("exchange_rate", "must be greater than zero")

    lines = body.get("line_items")
    if lines is None or lines == []:
        raise E.ZohoError(
            400, E.TOO_FEW_LINES, "A journal needs at least one debit and one credit line item."
        )
    if not isinstance(lines, list):
        raise E.invalid_value("line_items", "a list is required")
    quantum = Decimal(1).scaleb(-precision)
    debits = credits = Decimal(0)
    clean_lines = []
    for n, line in enumerate(lines, start=1):
        where = f"line_items[{n}]"
        if not isinstance(line, dict):
            raise E.invalid_value(where, "an object is required")
        if line.get("amount") in (None, ""):
            raise E.missing(f"{where}.amount")
        amount = _decimal(line.get("amount"), f"{where}.amount")
        if amount <= 0:
            raise E.ZohoError(
                400, E.AMOUNT_NOT_POSITIVE, f"Amount in {where} should be greater than zero."
            )
        side = line.get("debit_or_credit")
        if side in (None, ""):
            raise E.missing(f"{where}.debit_or_credit")
        if side not in ("debit", "credit"):
            raise E.invalid_value(f"{where}.debit_or_credit", "allowed values are debit and credit")
        account_id = str(line.get("account_id") or "")
        if not account_id:
            raise E.ZohoError(400, E.MISSING_FIELD, f"Please select an account for {where}.")
        account = org.accounts.get(account_id)
        if account is None:
            raise E.ZohoError(
                400, E.ACCOUNT_NOT_FOUND, f"The account {account_id!r} in {where} does not exist."
            )
        if not account.get("is_active", True):
            raise E.ZohoError(
                400,
                E.ACCOUNT_INACTIVE,
                f"The account {account['account_name']!r} in {where} is inactive.",
            )
        customer_id = str(line.get("customer_id") or "")
        if customer_id and customer_id not in org.contacts:
            raise E.ZohoError(
                400, E.CONTACT_NOT_FOUND, f"The contact {customer_id!r} in {where} does not exist."
            )
        tags = _check_tags(org, line.get("tags"), where)
        rounded = amount.quantize(quantum)
        if side == "debit":
            debits += rounded
        else:
            credits += rounded
        clean_lines.append(
            {
                **line,
                "amount": rounded,
                "account_id": account_id,
                "customer_id": customer_id,
                "tags": tags,
            }
        )
    if debits == 0 or credits == 0:
        raise E.ZohoError(
            400, E.TOO_FEW_LINES, "A journal needs at least one debit and one credit line item."
        )
    if debits != credits:
        raise E.ZohoError(
            400,
            E.NOT_BALANCED,
            f"The journal is not balanced: debits {debits} {currency['currency_code']} and "
            f"credits {credits} {currency['currency_code']} must be equal.",
        )
    _check_tags(org, body.get("tags"), "journal")
    return {
        "journal_date": journal_date,
        "reference_number": ref,
        "notes": str(body.get("notes") or ""),
        "journal_type": journal_type,
        "status": status,
        "currency_id": currency_id,
        "exchange_rate": exchange_rate,
        "line_items": clean_lines,
        "custom_fields": list(body.get("custom_fields") or []),
        "location_id": str(body.get("location_id") or ""),
        "total": debits,
    }


def build_journal(store: ZohoStore, org: Org, body: dict[str, Any], ts: float) -> dict[str, Any]:
    """Validate ``body`` and return the stored journal (as ``GET /journals/{id}`` shows it)."""
    clean = validate_journal(org, body)
    currency = org.currencies[clean["currency_id"]]
    precision = int(currency["price_precision"])
    base_precision = int(org.base_currency()["price_precision"])
    rate = clean["exchange_rate"]
    journal_id = org.next_id()
    org.entry_seq += 1
    lines = []
    for i, line in enumerate(clean["line_items"]):
        account = org.accounts[line["account_id"]]
        contact = org.contacts.get(line["customer_id"]) if line["customer_id"] else None
        lines.append(
            {
                "line_id": f"{journal_id}{i + 1:03d}",
                "account_id": account["account_id"],
                "account_name": account["account_name"],
                "customer_id": line["customer_id"],
                "customer_name": contact.data["contact_name"] if contact else "",
                "description": str(line.get("description") or ""),
                "debit_or_credit": line["debit_or_credit"],
                "tax_id": str(line.get("tax_id") or ""),
                "tax_name": "",
                "tax_type": "tax",
                "tax_percentage": "",
                "amount": money(float(line["amount"]), precision),
                "bcy_amount": money(float(line["amount"] * rate), base_precision),
                "tags": tag_refs(org, line["tags"]),
                "location_id": str(line.get("location_id") or ""),
                "location_name": "",
                "project_id": str(line.get("project_id") or ""),
                "project_name": "",
            }
        )
    total = money(float(clean["total"]), precision)
    stamp = org.time(ts)
    return {
        "journal_id": journal_id,
        "entry_number": str(org.entry_seq),
        "reference_number": clean["reference_number"],
        "notes": clean["notes"],
        "currency_id": currency["currency_id"],
        "currency_code": currency["currency_code"],
        "currency_symbol": currency["currency_symbol"],
        "exchange_rate": float(rate),
        "journal_date": clean["journal_date"],
        "journal_type": clean["journal_type"],
        "entity_type": "journal",
        "line_items": lines,
        "location_id": clean["location_id"],
        "location_name": "",
        "line_item_total": total,
        "total": total,
        "bcy_total": money(float(clean["total"] * rate), base_precision),
        "price_precision": precision,
        "taxes": [],
        "created_time": stamp,
        "last_modified_time": stamp,
        "status": clean["status"],
        "custom_fields": clean["custom_fields"],
        "custom_field": "",
    }
