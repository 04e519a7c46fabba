"""Zoho Books bill/invoice -> SAP Concur payment request (Invoice v3.0): the payables mapping.

Pure functions only: no HTTP, no database, no Flask or Celery. The pipeline calls them in order::

    doc = load_zoho_document(response)            # mappings.zoho_documents
    if is_void(doc): ...                          # flag it, never ignore it (issue #6 §8)
    body = map_document(doc, vendor, rules)       # ParkError -> record waits with the reason
    validate_payment_request(body, currency=...)  # ValidationFailed -> record fails, all problems
    ... POST, with stable_reference(doc) / matches_existing(digest, body) for the retry search

The rules section is parsed in :mod:`mappings.payables_rules`; the body checks
(``validate_payment_request``, ``matches_existing``) are in :mod:`mappings.payables_validation`.

Money is ``Decimal`` end to end and rendered with the currency's ISO 4217 places by
:mod:`mappings.money`; no float is ever created. The same document, vendor and rules always give
the same body (and :func:`mappings.payment_requests.canonical_json` the same bytes), so a replay
maps identically. The field-by-field table, the rules keys and the unconfirmed points are in
``docs/payables-mapping.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from connector.errors import MappingError, ParkError, ValidationFailed
from mappings.money import format_amount, precision, quantize, split
from mappings.payables_rules import ISO_4217_CURRENCIES, PayablesRules
from mappings.payment_requests import (
    custom_field_name,
    wrap_line_items,
)
from mappings.zoho_documents import ZohoDocument, ZohoLineItem

# --------------------------------------------------------------------------- vendor


@dataclass(frozen=True)
class VendorRef:
    """What the linked Concur vendor (Vendor v3.1) provides for a payment request.

    ``name`` is the Concur ``VendorName``: it goes into ``VendorRemitToIdentifier.Name`` (the
    reference page encourages extra identifying fields) and is what digests report as
    ``VendorName``, so the duplicate check compares like with like.
    """

    vendor_code: str
    address_code: str
    country_code: str | None = None
    currency_code: str | None = None
    name: str | None = None


# --------------------------------------------------------------------------- document helpers


def is_void(doc: ZohoDocument) -> bool:
    """A voided bill/invoice: the flow flags it (never posts it, never silently drops it)."""
    return doc.status == "void"


def stable_reference(doc: ZohoDocument) -> str:
    """The ``InvoiceNumber`` we send: the Zoho bill/invoice number (brief §4).

    The post step searches ``paymentrequestdigests?vendorInvoiceNumber=`` by it before
    re-posting after an ambiguous failure.
    """
    return doc.number


def document_version(doc: ZohoDocument) -> str:
    """The ledger's ``source_version``: ``last_modified_time`` normalised to UTC.

    Zoho sends ``2013-11-18T02:17:40-0800``; the same instant written with another offset must be
    the same version, so it becomes ``2013-11-18T10:17:40Z``. An unparsable value is kept
    verbatim (still stable for that document). Without a timestamp, the version is a SHA-256 of
    the loaded document, so an edit still yields a new version.
    """
    raw = doc.last_modified_time
    if raw:
        return version_from_timestamp(raw)
    payload = json.dumps(asdict(doc), sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def version_from_timestamp(raw: str) -> str:
    """A Zoho ``last_modified_time`` as :func:`document_version` writes it (UTC, ``Z``).

    For callers that hold only the timestamp (a webhook hint, a list item): they get the same
    version string as the fetched document, so a webhook and a poll meet on one ledger record.
    """
    text = raw.strip()
    parsed = _parse_zoho_time(text)
    if parsed is None:
        return text
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_zoho_time(raw: str) -> datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(raw.strip(), fmt)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- mapping


def _vendor_park(doc: ZohoDocument) -> ParkError:
    who = "vendor" if doc.kind == "bill" else "customer"
    name = doc.contact_name or "(no name)"
    return ParkError(
        f"{who} '{name}' (Zoho contact {doc.contact_id}) is not in Concur yet",
        dependency="vendor",
        key=doc.contact_id,
    )


def _currency(doc: ZohoDocument, rules: PayablesRules) -> str:
    code = doc.currency_code
    if not code:
        raise ParkError(
            f"{doc.label} has no currency code in Zoho", dependency="currency", key=doc.id
        )
    if code not in ISO_4217_CURRENCIES:
        raise ParkError(
            f"currency '{code}' on {doc.label} is not a known ISO 4217 currency",
            dependency="currency",
            key=code,
        )
    if rules.currencies is not None and code not in rules.currencies:
        raise ParkError(
            f"currency '{code}' on {doc.label} is not enabled for this Concur company "
            f"(payables.currencies: {', '.join(rules.currencies)})",
            dependency="currency",
            key=code,
        )
    return code


def _account_label(line: ZohoLineItem, account_names: Mapping[str, str]) -> str | None:
    if line.account_name:
        return line.account_name
    if line.account_id and line.account_id in account_names:
        return account_names[line.account_id]
    return None


def _expense_type(line: ZohoLineItem, account: str | None, rules: PayablesRules) -> str | None:
    """Zoho account -> Concur ExpenseTypeCode: by account id, exact name, then case-folded name."""
    table = rules.expense_types
    if line.account_id and line.account_id in table:
        return table[line.account_id]
    if account is not None:
        if account in table:
            return table[account]
        folded = account.casefold()
        for key in sorted(table):
            if key.casefold() == folded:
                return table[key]
    return rules.default_expense_type


def _line_label(index: int, line: ZohoLineItem) -> str:
    return f"line {index + 1}" + (
        f" ('{line.name or line.description}')" if line.name or line.description else ""
    )


def _description(line: ZohoLineItem, index: int) -> str:
    parts = [p for p in (line.name, line.description) if p]
    if len(parts) == 2 and parts[0] == parts[1]:
        parts = parts[:1]
    return " - ".join(parts) or f"Line {index + 1}"


def _plain(value: Decimal) -> str:
    """A quantity or unit price without exponent or trailing zeros (``2``, ``2.5``, ``0.125``)."""
    text = f"{value.normalize():f}"
    return text


def _unit_price(rate: Decimal, currency: str) -> str:
    """Unit prices keep extra places Zoho has (``0.125``) but never fewer than the currency's."""
    places = precision(currency)
    exponent = rate.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        return _plain(rate)
    return format_amount(rate, currency)


def _round_parts(values: list[Decimal], currency: str) -> list[Decimal]:
    """Round line amounts to the currency so their sum is the rounded sum (largest remainder)."""
    if all(v == quantize(v, currency) for v in values):
        return list(values)
    if values and all(v >= 0 for v in values) and sum(values, Decimal(0)) > 0:
        return split(sum(values, Decimal(0)), values, currency)
    return [quantize(v, currency) for v in values]


def _line_taxes(doc: ZohoDocument, tax_total: Decimal, currency: str) -> list[Decimal] | None:
    """Zoho's ``tax_total`` spread over the lines by each line's own tax; ``None`` if unknown.

    Zoho reports tax per tax name (``taxes[]``), not per line. The share of line ``i`` is
    ``item_total * pct / 100`` (tax-exclusive) or ``item_total * pct / (100 + pct)``
    (tax-inclusive); the split is largest-remainder, so the line taxes add up to ``tax_total``.
    A tax-inclusive document without per-line rates spreads its tax by line amount instead.
    """
    if tax_total == 0 or not doc.line_items:
        return None
    weights: list[Decimal] = []
    for line in doc.line_items:
        pct = line.tax_percentage
        amount = max(line.item_total, Decimal(0))
        if pct <= 0:
            weights.append(Decimal(0))
        elif doc.is_inclusive_tax:
            weights.append(amount * pct / (100 + pct))
        else:
            weights.append(amount * pct / 100)
    if sum(weights, Decimal(0)) <= 0:
        if not doc.is_inclusive_tax:
            return None
        weights = [max(line.item_total, Decimal(0)) for line in doc.line_items]
        if sum(weights, Decimal(0)) <= 0:
            return None
    return split(tax_total, weights, currency)


def _document_adjustments(
    doc: ZohoDocument, gross: Decimal, tax_total: Decimal
) -> list[tuple[str, Decimal]]:
    """Amounts on the document but on no line: Zoho ``adjustment`` and an entity-level discount.

    Zoho reports the entity-level discount as a rate or an amount in ``discount``; when it also
    sends ``discount_amount`` that is used, otherwise the discount is what the totals leave over
    (lines + tax + shipping + adjustment - total). Only a declared discount (``discount_type``
    ``entity_level`` and ``discount`` != 0) is derived this way, so an inconsistent document is
    still reported by the validator instead of being absorbed.
    """
    out: list[tuple[str, Decimal]] = []
    if doc.discount_type == "entity_level" and (doc.discount != 0 or doc.discount_amount):
        if doc.discount_amount is not None:
            discount = doc.discount_amount
        else:
            tax_part = Decimal(0) if doc.is_inclusive_tax else tax_total
            discount = gross + tax_part + doc.shipping_charge + doc.adjustment - doc.total
        if discount != 0:
            out.append(("Discount", -abs(discount)))
    if doc.adjustment != 0:
        out.append((doc.adjustment_description or "Adjustment", doc.adjustment))
    return out


def _spread(nets: list[Decimal], extra: Decimal, currency: str) -> list[Decimal]:
    """Add ``extra`` to the positive lines in proportion to their amounts (to the cent)."""
    weights = [n if n > 0 else Decimal(0) for n in nets]
    if extra == 0 or sum(weights, Decimal(0)) <= 0:
        return nets
    shares = split(extra, weights, currency)
    return [n + s for n, s in zip(nets, shares, strict=True)]


def map_document(
    doc: ZohoDocument,
    vendor: VendorRef | None,
    rules: PayablesRules,
    *,
    account_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build the Concur payment-request body for ``doc`` (see docs/payables-mapping.md).

    Raises ``ParkError`` (the record waits; the reason is shown as is) for a vendor that is not
    linked (``dependency="vendor"``, ``key`` = Zoho contact id), an unknown or disabled currency
    (``"currency"``) and ``MappingError`` (a ``ParkError``, ``"mapping"``) for accounts without an
    expense type or a missing country. Raises ``ValidationFailed`` for a void document or a kind
    the rules exclude: those are the flow's decisions, not mapping input.

    ``account_names`` maps Zoho ``account_id`` -> account name for lines that carry only the id.
    The sum check (lines + tax = total) is :func:`validate_payment_request`'s job.
    """
    if not rules.includes(doc.kind):
        raise ValidationFailed(
            f"{doc.label}: {doc.kind}s are not in payables.include", [f"{doc.kind}: not included"]
        )
    if is_void(doc):
        raise ValidationFailed(
            f"{doc.label} is void in Zoho; it must be flagged, not posted", ["status: void"]
        )
    if vendor is None or not vendor.vendor_code.strip():
        raise _vendor_park(doc)
    currency = _currency(doc, rules)
    names = account_names or {}

    # expense types first: every unmapped account is listed at once
    codes: list[str] = []
    unmapped: dict[str, None] = {}
    for index, line in enumerate(doc.line_items):
        account = _account_label(line, names)
        code = _expense_type(line, account, rules)
        if code is None:
            unmapped[
                f"'{account}'" if account else f"(no account on {_line_label(index, line)})"
            ] = None
            codes.append("")
        else:
            codes.append(code)
    if unmapped:
        listed = ", ".join(unmapped)
        raise MappingError(
            f"no Concur expense type for Zoho account(s) {listed} on {doc.label}: add them to "
            "payables.expense_types or set payables.default_expense_type",
            dependency="mapping",
            key=",".join(k.strip("'") for k in unmapped),
        )
    country = (vendor.country_code or "").strip().upper() or rules.country_code
    if not country:
        raise MappingError(
            f"no CountryCode for {doc.label}: Concur vendor {vendor.vendor_code} has no country "
            "and payables.country_code is not set",
            dependency="mapping",
            key="country_code",
        )

    tax_total = quantize(doc.tax_total, currency)
    line_taxes = _line_taxes(doc, tax_total, currency)
    gross = [line.item_total for line in doc.line_items]
    taxes = line_taxes or [Decimal(0)] * len(gross)
    nets = [g - t if doc.is_inclusive_tax else g for g, t in zip(gross, taxes, strict=True)]
    if doc.is_inclusive_tax and line_taxes is None:
        # tax-inclusive lines whose tax we cannot attribute: take it off the header instead
        nets = _spread(nets, -tax_total, currency) if tax_total else nets
    nets = _round_parts(nets, currency)

    adjustments = _document_adjustments(doc, sum(gross, Decimal(0)), tax_total)
    extra_lines: list[tuple[str, Decimal]] = []
    keep = [True] * len(nets)
    if rules.adjustments == "spread":
        pool = sum((quantize(a, currency) for _, a in adjustments), Decimal(0))
        for i, n in enumerate(nets):
            if n < 0:  # negative Zoho lines (credits) are folded into the positive ones
                pool += n
                keep[i] = False
        nets = _spread(
            [n if k else Decimal(0) for n, k in zip(nets, keep, strict=True)], pool, currency
        )
    else:
        extra_lines = [(label, quantize(a, currency)) for label, a in adjustments]

    lines: list[dict[str, Any]] = []
    for index, line in enumerate(doc.line_items):
        if not keep[index]:
            continue
        item: dict[str, Any] = {
            "Description": _description(line, index),
            "ExpenseTypeCode": codes[index],
            "Quantity": _plain(line.quantity),
            "UnitPrice": _unit_price(line.rate, currency),
            "TotalPrice": format_amount(nets[index], currency),
        }
        if line_taxes is not None and taxes[index] != 0:
            item["Tax"] = format_amount(taxes[index], currency)
        lines.append(item)
    adjustment_code = rules.adjustment_expense_type or rules.default_expense_type or ""
    for label, amount in extra_lines:
        lines.append(
            {
                "Description": label,
                "ExpenseTypeCode": adjustment_code,
                "Quantity": "1",
                "UnitPrice": format_amount(amount, currency),
                "TotalPrice": format_amount(amount, currency),
            }
        )

    body: dict[str, Any] = {
        "Name": _name(doc, vendor, rules.name_max_length),
        "InvoiceNumber": stable_reference(doc),
        "InvoiceDate": doc.date.isoformat(),
    }
    if doc.due_date is not None:
        body["PaymentDueDate"] = doc.due_date.isoformat()
    body["CurrencyCode"] = currency
    body["InvoiceAmount"] = format_amount(doc.total, currency)
    if tax_total != 0:
        body["TaxAmount"] = format_amount(tax_total, currency)
    if doc.shipping_charge != 0:
        body["ShippingAmount"] = format_amount(doc.shipping_charge, currency)
    body["CountryCode"] = country
    identifier = {"VendorCode": vendor.vendor_code.strip()}
    if vendor.address_code.strip():
        identifier["AddressCode"] = vendor.address_code.strip()
    if vendor.name and vendor.name.strip():
        identifier["Name"] = vendor.name.strip()
    body["VendorRemitToIdentifier"] = identifier
    for owner_field in sorted(rules.owner):
        body[owner_field] = rules.owner[owner_field]
    if rules.reference_custom_field is not None:
        body[custom_field_name(rules.reference_custom_field, rules.custom_field_style)] = doc.id
    body["LineItems"] = wrap_line_items(lines, rules.line_items_shape)
    return body


def _name(doc: ZohoDocument, vendor: VendorRef, limit: int) -> str:
    """``"<number> <vendor name>"``, cut to ``limit`` characters on a word boundary if possible."""
    who = doc.contact_name or (vendor.name or "").strip()
    name = " ".join(f"{doc.number} {who}".split())
    if len(name) <= limit:
        return name
    cut = name[:limit]
    space = cut.rfind(" ")
    if space > len(doc.number):
        cut = cut[:space]
    return cut.rstrip()
