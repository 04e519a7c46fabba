"""Inbound Zoho Books bills and invoices, loaded into typed, float-free dataclasses.

The payables flow fetches ``GET /bills/{id}`` or ``GET /invoices/{id}`` and hands the response
here. Everything downstream (mapping, validation, replay) works on :class:`ZohoDocument`, never on
raw JSON, so a field Zoho renames or a float that sneaks in breaks loudly in one place.

Why marshmallow with ``unknown = EXCLUDE``: Zoho responses carry dozens of edition-specific fields
(GST, VAT, TDS, ...) that the mapping does not use; they are dropped, while every field the mapping
does use is checked and typed. A malformed document raises :class:`ValidationFailed` listing every
problem at once, so an operator fixes the source in one pass.

Amounts go through :func:`mappings.money.to_decimal` on ``str(value)``: a JSON float ``1.1``
becomes ``Decimal("1.1")``, never ``1.100000000000000088817841970012523``. Zoho ids are numeric
strings (the OpenAPI examples sometimes show them as JSON numbers), so ids are kept as strings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load

from connector.errors import ValidationFailed
from mappings.money import to_decimal

DocumentKind = Literal["bill", "invoice"]

__all__ = [
    "DocumentKind",
    "ZohoBillSchema",
    "ZohoDocument",
    "ZohoInvoiceSchema",
    "ZohoLineItem",
    "ZohoLineItemSchema",
    "ZohoTax",
    "ZohoTaxSchema",
    "flatten_messages",
    "load_bill",
    "load_invoice",
    "load_zoho_document",
]


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class ZohoTax:
    """One row of a document's ``taxes[]`` summary (the tax Zoho computed per tax name)."""

    tax_name: str
    tax_amount: Decimal
    tax_id: str | None = None


@dataclass(frozen=True)
class ZohoLineItem:
    """One document line; ``item_total`` is Zoho's own line total (line discount applied).

    ``item_total`` excludes tax unless the document is tax-inclusive (``is_inclusive_tax``), in
    which case it includes it: this mirrors what Zoho shows on the document.
    """

    line_item_id: str | None
    name: str
    description: str
    quantity: Decimal
    rate: Decimal
    discount_amount: Decimal
    item_total: Decimal
    account_id: str | None
    account_name: str | None
    tax_id: str | None
    tax_name: str | None
    tax_percentage: Decimal
    unit: str | None = None
    item_order: int | None = None


@dataclass(frozen=True)
class ZohoDocument:
    """A Zoho bill or invoice as the payables mapping needs it.

    ``contact_id``/``contact_name`` are the vendor (bill) or customer (invoice). ``discount_amount``
    is the entity-level discount when Zoho reports it; ``None`` means "not reported" (the mapping
    then derives it from the totals when ``discount_type`` is ``entity_level``).
    """

    kind: DocumentKind
    id: str
    number: str
    contact_id: str
    contact_name: str
    date: dt.date
    due_date: dt.date | None
    currency_code: str | None
    exchange_rate: Decimal
    line_items: tuple[ZohoLineItem, ...]
    sub_total: Decimal
    tax_total: Decimal
    total: Decimal
    status: str
    last_modified_time: str | None
    is_inclusive_tax: bool = False
    taxes: tuple[ZohoTax, ...] = ()
    adjustment: Decimal = Decimal(0)
    adjustment_description: str = ""
    discount: Decimal = Decimal(0)
    discount_amount: Decimal | None = None
    discount_type: str | None = None
    is_discount_before_tax: bool = True
    shipping_charge: Decimal = Decimal(0)
    reference_number: str = ""
    price_precision: int | None = None
    currency_id: str | None = None

    @property
    def label(self) -> str:
        """``bill 00454`` / ``invoice INV-00003``: how messages name the document."""
        return f"{self.kind} {self.number}"


# --------------------------------------------------------------------------- custom fields


class ZohoAmount(fields.Field):
    """A money or quantity value as ``Decimal``; JSON numbers and numeric strings both load.

    Why not ``fields.Decimal``: it accepts floats by converting the binary value; this field
    always goes through ``to_decimal(str(value))`` so ``0.1`` stays ``0.1``. Blank strings (Zoho
    sends ``""`` for some unset numbers) count as missing and take ``blank``.
    """

    default_error_messages = {
        "invalid": "Not a valid amount.",
        "blank": "Field may not be blank.",
    }

    def __init__(self, *, blank: Decimal | None = Decimal(0), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blank = blank

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Decimal | None:
        if isinstance(value, str) and not value.strip():
            if self.required:
                raise self.make_error("blank")
            return self.blank
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise self.make_error("invalid")
        try:
            amount = to_decimal(str(value))
        except ValueError as exc:
            raise self.make_error("invalid") from exc
        if not amount.is_finite():
            raise self.make_error("invalid")
        return amount


class ZohoId(fields.Field):
    """A Zoho id: a numeric string, sometimes a JSON number; ``""`` means absent (``None``)."""

    default_error_messages = {"invalid": "Not a valid id.", "blank": "Field may not be blank."}

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.make_error("invalid")
        text = str(value).strip()
        if not text:
            if self.required:
                raise self.make_error("blank")
            return None
        return text


class OptionalDate(fields.Field):
    """A ``yyyy-mm-dd`` date where Zoho's blank ``""`` means "not set" (``None``)."""

    default_error_messages = {"invalid": "Not a valid yyyy-mm-dd date."}

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> dt.date | None:
        if isinstance(value, str) and not value.strip() and not self.required:
            return None
        if not isinstance(value, str) or len(value.strip()) != 10:
            raise self.make_error("invalid")
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError as exc:
            raise self.make_error("invalid") from exc


def _text(**kwargs: Any) -> fields.String:
    """An optional free-text field that loads ``null`` as ``""`` (Zoho mixes both)."""
    return fields.String(load_default="", allow_none=True, **kwargs)


# --------------------------------------------------------------------------- schemas


class ZohoTaxSchema(Schema):
    """``taxes[]`` rows: ``{tax_name, tax_amount}`` (``tax_id`` on newer responses)."""

    class Meta:
        unknown = EXCLUDE

    tax_id = ZohoId(load_default=None, allow_none=True)
    tax_name = _text()
    tax_amount = ZohoAmount(load_default=Decimal(0))

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ZohoTax:
        return ZohoTax(
            tax_name=data["tax_name"] or "",
            tax_amount=data["tax_amount"],
            tax_id=data["tax_id"],
        )


class ZohoLineItemSchema(Schema):
    """``line_items[]`` of a bill or invoice (shared shape; invoices may lack ``account_*``)."""

    class Meta:
        unknown = EXCLUDE

    line_item_id = ZohoId(load_default=None, allow_none=True)
    name = _text()
    description = _text()
    quantity = ZohoAmount(load_default=Decimal(1), blank=Decimal(1))
    rate = ZohoAmount(load_default=Decimal(0))
    discount_amount = ZohoAmount(load_default=Decimal(0))
    item_total = ZohoAmount(load_default=None, allow_none=True, blank=None)
    account_id = ZohoId(load_default=None, allow_none=True)
    account_name = fields.String(load_default=None, allow_none=True)
    tax_id = ZohoId(load_default=None, allow_none=True)
    tax_name = fields.String(load_default=None, allow_none=True)
    tax_percentage = ZohoAmount(load_default=Decimal(0), allow_none=True)
    unit = fields.String(load_default=None, allow_none=True)
    item_order = fields.Integer(load_default=None, allow_none=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ZohoLineItem:
        quantity: Decimal = data["quantity"]
        rate: Decimal = data["rate"]
        discount: Decimal = data["discount_amount"]
        item_total = data["item_total"]
        if item_total is None:
            # Zoho always sends item_total; if a caller built a line without it, the line
            # total is what Zoho would compute: quantity x rate less the line discount.
            item_total = quantity * rate - discount
        return ZohoLineItem(
            line_item_id=data["line_item_id"],
            name=(data["name"] or "").strip(),
            description=(data["description"] or "").strip(),
            quantity=quantity,
            rate=rate,
            discount_amount=discount,
            item_total=item_total,
            account_id=data["account_id"],
            account_name=(data["account_name"] or "").strip() or None,
            tax_id=data["tax_id"],
            tax_name=(data["tax_name"] or "").strip() or None,
            tax_percentage=data["tax_percentage"] or Decimal(0),
            unit=(data["unit"] or "").strip() or None,
            item_order=data["item_order"],
        )


class _ZohoDocumentSchema(Schema):
    """Fields bills and invoices share; subclasses add the id/number/contact fields."""

    class Meta:
        unknown = EXCLUDE

    kind: DocumentKind

    date = OptionalDate(required=True)
    due_date = OptionalDate(load_default=None, allow_none=True)
    currency_id = ZohoId(load_default=None, allow_none=True)
    currency_code = fields.String(load_default=None, allow_none=True)
    exchange_rate = ZohoAmount(load_default=Decimal(1), blank=Decimal(1))
    price_precision = fields.Integer(load_default=None, allow_none=True)
    line_items = fields.List(fields.Nested(ZohoLineItemSchema), required=True)
    taxes = fields.List(fields.Nested(ZohoTaxSchema), load_default=list, allow_none=True)
    sub_total = ZohoAmount(load_default=Decimal(0))
    tax_total = ZohoAmount(load_default=Decimal(0))
    total = ZohoAmount(required=True)
    status = fields.String(required=True)
    last_modified_time = fields.String(load_default=None, allow_none=True)
    is_inclusive_tax = fields.Boolean(load_default=False, allow_none=True)
    adjustment = ZohoAmount(load_default=Decimal(0), allow_none=True)
    adjustment_description = _text()
    discount = ZohoAmount(load_default=Decimal(0), allow_none=True)
    discount_amount = ZohoAmount(load_default=None, allow_none=True, blank=None)
    discount_type = fields.String(load_default=None, allow_none=True)
    is_discount_before_tax = fields.Boolean(load_default=True, allow_none=True)
    shipping_charge = ZohoAmount(load_default=Decimal(0), allow_none=True)
    reference_number = _text()

    def _common(self, data: dict[str, Any]) -> dict[str, Any]:
        code = (data["currency_code"] or "").strip().upper() or None
        return {
            "kind": self.kind,
            "date": data["date"],
            "due_date": data["due_date"],
            "currency_code": code,
            "currency_id": data["currency_id"],
            "exchange_rate": data["exchange_rate"],
            "price_precision": data["price_precision"],
            "line_items": tuple(data["line_items"]),
            "taxes": tuple(data["taxes"] or ()),
            "sub_total": data["sub_total"],
            "tax_total": data["tax_total"] or Decimal(0),
            "total": data["total"],
            "status": data["status"].strip().lower(),
            "last_modified_time": (data["last_modified_time"] or "").strip() or None,
            "is_inclusive_tax": bool(data["is_inclusive_tax"]),
            "adjustment": data["adjustment"] or Decimal(0),
            "adjustment_description": (data["adjustment_description"] or "").strip(),
            "discount": data["discount"] or Decimal(0),
            "discount_amount": data["discount_amount"],
            "discount_type": (data["discount_type"] or "").strip() or None,
            "is_discount_before_tax": data["is_discount_before_tax"] is not False,
            "shipping_charge": data["shipping_charge"] or Decimal(0),
            "reference_number": (data["reference_number"] or "").strip(),
        }


class ZohoBillSchema(_ZohoDocumentSchema):
    """The ``bill`` object of ``GET /bills/{bill_id}`` (OpenAPI bills.yml)."""

    kind: DocumentKind = "bill"

    bill_id = ZohoId(required=True)
    bill_number = fields.String(required=True)
    vendor_id = ZohoId(required=True)
    vendor_name = _text()

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ZohoDocument:
        return ZohoDocument(
            id=data["bill_id"],
            number=data["bill_number"].strip(),
            contact_id=data["vendor_id"],
            contact_name=(data["vendor_name"] or "").strip(),
            **self._common(data),
        )


class ZohoInvoiceSchema(_ZohoDocumentSchema):
    """The ``invoice`` object of ``GET /invoices/{invoice_id}`` (OpenAPI invoices.yml)."""

    kind: DocumentKind = "invoice"

    invoice_id = ZohoId(required=True)
    invoice_number = fields.String(required=True)
    customer_id = ZohoId(required=True)
    customer_name = _text()

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ZohoDocument:
        return ZohoDocument(
            id=data["invoice_id"],
            number=data["invoice_number"].strip(),
            contact_id=data["customer_id"],
            contact_name=(data["customer_name"] or "").strip(),
            **self._common(data),
        )


# --------------------------------------------------------------------------- loading


def flatten_messages(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error dict as sorted ``"line_items.1.rate: Not a valid amount."``.

    Why flat strings: they go into a record's ``last_error`` and the operator UI verbatim.
    """
    out: list[str] = []
    if isinstance(messages, Mapping):
        for key in sorted(messages, key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_messages(messages[key], path))
    elif isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            out.extend(f"{prefix}: {m}" if prefix else m for m in messages)
        else:
            for m in messages:
                out.extend(flatten_messages(m, prefix))
    else:
        out.append(f"{prefix}: {messages}" if prefix else str(messages))
    return out


_SCHEMAS: dict[str, type[_ZohoDocumentSchema]] = {
    "bill": ZohoBillSchema,
    "invoice": ZohoInvoiceSchema,
}


def _load(kind: DocumentKind, obj: Any) -> ZohoDocument:
    if not isinstance(obj, Mapping):
        raise ValidationFailed(f"Zoho {kind} is not a JSON object", [f"{kind}: not an object"])
    try:
        doc: ZohoDocument = _SCHEMAS[kind]().load(dict(obj))
    except ValidationError as exc:
        problems = flatten_messages(exc.messages)
        ident = obj.get(f"{kind}_number") or obj.get(f"{kind}_id") or "?"
        listing = "; ".join(problems)
        raise ValidationFailed(
            f"Zoho {kind} {ident} is malformed ({len(problems)} problem(s)): {listing}",
            problems,
        ) from exc
    return doc


def load_bill(obj: Mapping[str, Any]) -> ZohoDocument:
    """Load the ``bill`` object (not the envelope) of a Zoho bill response."""
    return _load("bill", obj)


def load_invoice(obj: Mapping[str, Any]) -> ZohoDocument:
    """Load the ``invoice`` object (not the envelope) of a Zoho invoice response."""
    return _load("invoice", obj)


def load_zoho_document(
    payload: Mapping[str, Any], kind: DocumentKind | None = None
) -> ZohoDocument:
    """Load a Zoho GET response (``{"code": 0, "bill": {...}}``) or a bare bill/invoice object.

    ``kind`` is inferred from the envelope key (``bill``/``invoice``) or, for a bare object, from
    ``bill_id``/``invoice_id``; pass it to be explicit. Webhook payloads use the same envelope.
    """
    if not isinstance(payload, Mapping):
        raise ValidationFailed("Zoho document is not a JSON object", ["not an object"])
    for candidate in ("bill", "invoice"):
        if (kind is None or kind == candidate) and isinstance(payload.get(candidate), Mapping):
            return _load(candidate, payload[candidate])  # type: ignore[arg-type]
    if kind is None:
        if "bill_id" in payload:
            kind = "bill"
        elif "invoice_id" in payload:
            kind = "invoice"
        else:
            raise ValidationFailed(
                "Zoho document is neither a bill nor an invoice",
                ["expected a 'bill' or 'invoice' object, or a bill_id/invoice_id field"],
            )
    return _load(kind, payload)
