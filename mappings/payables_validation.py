"""Checks on a payment request body before and after it is sent (docs/payables-mapping.md).

Before the POST, every problem with the body is listed at once (a person fixes them in one
go); after a POST that may have landed, a digest Concur returns is recognised as ours by
invoice number, vendor and amount, so a retry adopts it instead of posting twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import ValidationError

from connector.errors import ValidationFailed
from mappings.money import format_amount, precision, to_decimal
from mappings.payables_rules import ISO_4217_CURRENCIES
from mappings.payment_requests import (
    AMOUNT_FIELDS,
    LINE_AMOUNT_FIELDS,
    OWNER_FIELDS,
    REQUIRED_FIELDS,
    PaymentRequestSchema,
    iter_line_items,
)
from mappings.zoho_documents import flatten_messages


def _amount(value: Any) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        amount = to_decimal(value)
    except ValueError:
        return None
    return amount if amount.is_finite() else None


def _places(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _check_amount(
    problems: list[str], where: str, value: Any, currency: str, *, places: int
) -> Decimal | None:
    amount = _amount(value)
    if amount is None:
        problems.append(f"{where}: {value!r} is not a decimal string")
        return None
    if _places(amount) > places:
        problems.append(f"{where}: {value} has more than {places} decimal place(s) for {currency}")
    return amount


def _check_date(problems: list[str], name: str, value: Any) -> None:
    if value is None:
        return
    ok = isinstance(value, str) and len(value) == 10
    if ok:
        try:
            date.fromisoformat(value)
        except ValueError:
            ok = False
    if not ok:
        problems.append(f"{name}: {value!r} is not a yyyy-mm-dd date")


def validate_payment_request(
    body: Mapping[str, Any], *, currency: str, allow_negative_lines: bool = False
) -> None:
    """Check ``body`` before any POST; raises ``ValidationFailed`` listing ALL problems.

    Schema: every key is a Swagger field, every value a string (``PaymentRequestSchema``).
    Business rules: the documented required fields plus ours (``REQUIRED_FIELDS``); exactly one
    owner field; ``CurrencyCode`` equals ``currency`` and is ISO 4217; ``CountryCode`` is two
    capital letters; amounts are decimal strings with at most the currency's places;
    ``InvoiceAmount`` > 0 and no line below zero (unless ``allow_negative_lines``: rules
    ``adjustments: line``); lines + tax + shipping = ``InvoiceAmount`` to the last unit, with the
    difference stated; line ``Tax`` values (when given) add up to ``TaxAmount``.
    """
    problems: list[str] = []
    try:
        PaymentRequestSchema().load(dict(body))
    except ValidationError as exc:
        problems.extend(flatten_messages(exc.messages))

    for name in REQUIRED_FIELDS:
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()) or value in ([], {}):
            problems.append(f"{name}: required")
    ident = body.get("VendorRemitToIdentifier")
    if isinstance(ident, Mapping) and not (
        ident.get("VendorCode")
        or (ident.get("Name") and ident.get("Address1") and ident.get("PostalCode"))
    ):
        problems.append(
            "VendorRemitToIdentifier: needs VendorCode, or Name + Address1 + PostalCode"
        )
    owners = [f for f in OWNER_FIELDS if isinstance(body.get(f), str) and body[f].strip()]
    if len(owners) != 1:
        found = ", ".join(owners) if owners else "none"
        problems.append(
            f"owner: exactly one of {', '.join(OWNER_FIELDS)} is required (found {found})"
        )

    code = body.get("CurrencyCode")
    currency = currency.strip().upper()
    if isinstance(code, str) and code.strip():
        if code != currency:
            problems.append(f"CurrencyCode: {code!r} but the document currency is {currency!r}")
        if code not in ISO_4217_CURRENCIES:
            problems.append(f"CurrencyCode: {code!r} is not an ISO 4217 currency")
    country = body.get("CountryCode")
    if (
        isinstance(country, str)
        and country
        and not (
            len(country) == 2 and country.isascii() and country.isalpha() and country.isupper()
        )
    ):
        problems.append(f"CountryCode: {country!r} is not a 2-letter ISO 3166 code")
    for name in ("InvoiceDate", "PaymentDueDate", "InvoiceReceivedDate"):
        _check_date(problems, name, body.get(name))

    places = precision(currency)
    header: dict[str, Decimal] = {}
    for name in AMOUNT_FIELDS:
        if body.get(name) is not None:
            amount = _check_amount(problems, name, body[name], currency, places=places)
            if amount is not None:
                header[name] = amount
    invoice_amount = header.get("InvoiceAmount")
    if invoice_amount is not None and invoice_amount <= 0:
        problems.append(f"InvoiceAmount: must be greater than zero (got {body['InvoiceAmount']})")
    for name in ("TaxAmount", "ShippingAmount"):
        if header.get(name, Decimal(0)) < 0:
            problems.append(f"{name}: must not be negative (got {body[name]})")

    line_total = Decimal(0)
    line_tax = Decimal(0)
    lines_ok = True
    any_line_tax = False
    lines = list(iter_line_items(body))
    if not lines and "LineItems: required" not in problems:
        problems.append("LineItems: at least one line is required")
    for index, line in enumerate(lines, start=1):
        where = f"LineItems.{index}"
        total_value = line.get("TotalPrice")
        if total_value is None:
            problems.append(f"{where}.TotalPrice: required")
            lines_ok = False
        for name in LINE_AMOUNT_FIELDS:
            if line.get(name) is None:
                continue
            amount = _check_amount(problems, f"{where}.{name}", line[name], currency, places=places)
            if amount is None:
                lines_ok = False
                continue
            if name == "TotalPrice":
                line_total += amount
                if amount < 0 and not allow_negative_lines:
                    problems.append(f"{where}.TotalPrice: must not be negative (got {line[name]})")
            elif name == "Tax":
                any_line_tax = True
                line_tax += amount
        for name in ("Quantity", "UnitPrice"):
            if line.get(name) is not None and _amount(line[name]) is None:
                problems.append(f"{where}.{name}: {line[name]!r} is not a decimal string")
        if not (isinstance(line.get("ExpenseTypeCode"), str) and line["ExpenseTypeCode"].strip()):
            problems.append(f"{where}.ExpenseTypeCode: required")

    if invoice_amount is not None and lines and lines_ok:
        tax = header.get("TaxAmount", Decimal(0))
        shipping = header.get("ShippingAmount", Decimal(0))
        calculated = line_total + tax + shipping
        if calculated != invoice_amount:
            difference = invoice_amount - calculated
            problems.append(
                f"amounts do not add up: lines {format_amount(line_total, currency)} + tax "
                f"{format_amount(tax, currency)} + shipping {format_amount(shipping, currency)} "
                f"= {format_amount(calculated, currency)}, but InvoiceAmount is "
                f"{format_amount(invoice_amount, currency)} (difference "
                f"{format_amount(difference, currency)} {currency})"
            )
        if any_line_tax and line_tax != tax:
            problems.append(
                f"line taxes {format_amount(line_tax, currency)} do not add up to TaxAmount "
                f"{format_amount(tax, currency)} (difference "
                f"{format_amount(tax - line_tax, currency)} {currency})"
            )

    if problems:
        unique = list(dict.fromkeys(problems))
        number = body.get("InvoiceNumber") or "?"
        raise ValidationFailed(
            f"payment request for invoice number {number} is invalid ({len(unique)} problem(s)): "
            + "; ".join(unique),
            unique,
        )


# --------------------------------------------------------------------------- duplicates


def _norm(text: Any) -> str:
    return " ".join(str(text or "").split()).casefold()


def matches_existing(
    digest: Mapping[str, Any], body: Mapping[str, Any], *, vendor_name: str | None = None
) -> bool:
    """Is this ``paymentrequestdigests`` hit the request we already posted? (brief §4)

    A digest carries ``InvoiceNumber``, ``VendorName``, ``Total``, ``CurrencyCode`` and
    ``IsDeleted`` but no vendor code (sap-concur.md §2.3), so it matches when: not deleted; same
    invoice number; same amount (as decimals: ``"100"`` equals ``"100.00"``); same currency when
    both carry one; and the same vendor name, compared case- and space-insensitively, taken from
    ``vendor_name`` or else from the body's ``VendorRemitToIdentifier.Name``. Without a vendor
    name to compare, nothing is adopted: re-posting is safer than adopting someone else's request.
    """
    deleted = digest.get("IsDeleted")
    if deleted is True or _norm(deleted) == "true":
        return False
    if _norm(digest.get("InvoiceNumber")) != _norm(body.get("InvoiceNumber")) or not _norm(
        body.get("InvoiceNumber")
    ):
        return False
    try:
        if to_decimal(str(digest.get("Total"))) != to_decimal(str(body.get("InvoiceAmount"))):
            return False
    except (ValueError, InvalidOperation):
        return False
    digest_currency, body_currency = digest.get("CurrencyCode"), body.get("CurrencyCode")
    if digest_currency and body_currency and _norm(digest_currency) != _norm(body_currency):
        return False
    ident = body.get("VendorRemitToIdentifier")
    expected = vendor_name or (ident.get("Name") if isinstance(ident, Mapping) else None)
    if not _norm(expected):
        return False
    return _norm(digest.get("VendorName")) == _norm(expected)
