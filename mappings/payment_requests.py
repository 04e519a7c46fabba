"""The outbound SAP Concur payment-request body (Invoice v3.0 ``POST /invoice/paymentrequest``).

Field names come from the published Swagger (``PaymentRequestPost``, ``PaymentRequestLineItemPost``,
``PaymentRequestAllocationPostPut``, ``VendorIdentifier`` in
``specs/concur/v3-0/PaymentRequest.swagger2.json``), copied here rather than read at run time
because production installs do not ship the specs. A test checks the two lists stay equal.

Why ``unknown = RAISE``: a misspelled field would be silently ignored by Concur, so the schema
refuses any name the Swagger (or the reference page, for custom fields) does not define.

Every Swagger field is ``type: string``, amounts included (``InvoiceAmount`` "(a string)" on the
reference page too). We therefore send amounts as decimal strings with exactly the currency's
places (``"1234.50"``, ``"1200"`` for JPY, ``"12.345"`` for KWD) and the schema rejects JSON
numbers: a float on the wire could never round-trip to the cent.

Two points the documentation does not settle (sap-concur.md §2.2, UNCONFIRMED) are one setting
each, chosen per connection in the rules file (see ``docs/payables-mapping.md``):

- ``line_items_shape``: ``"flat"`` sends ``"LineItems": [{...}, ...]`` (the reference page types
  ``LineItems`` as an array of ``LineItem``, and the Swagger's POST element is the line object
  itself); ``"nested"`` sends ``"LineItems": {"LineItem": [{...}]}`` (the GET/XML shape).
- ``custom_field_style``: ``"plain"`` (the default) spells ``Custom1``/``OrgUnit1``, as the
  reference page lists them (``Custom1``…``Custom24``) and GET responses return them;
  ``"padded"`` spells ``Custom01``/``OrgUnit01``, as only the Swagger's POST/PUT definitions do.

The validator accepts both readings of each, because it must check whatever the mapping produced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from marshmallow import RAISE, Schema, ValidationError, fields

LineItemsShape = Literal["flat", "nested"]
CustomFieldStyle = Literal["padded", "plain"]

LINE_ITEMS_SHAPES: tuple[str, ...] = ("flat", "nested")
CUSTOM_FIELD_STYLES: tuple[str, ...] = ("padded", "plain")

__all__ = [
    "ALLOCATION_FIELDS",
    "AMOUNT_FIELDS",
    "CUSTOM_FIELD_STYLES",
    "HEADER_FIELDS",
    "LINE_AMOUNT_FIELDS",
    "LINE_FIELDS",
    "LINE_ITEMS_SHAPES",
    "OWNER_FIELDS",
    "REQUIRED_FIELDS",
    "VENDOR_IDENTIFIER_FIELDS",
    "AllocationSchema",
    "CustomFieldStyle",
    "LineItemSchema",
    "LineItemsShape",
    "PaymentRequestSchema",
    "VendorIdentifierSchema",
    "canonical_json",
    "custom_field_name",
    "iter_line_items",
    "wrap_line_items",
]


def _numbered(prefix: str, count: int, *, padded: bool) -> tuple[str, ...]:
    return tuple(f"{prefix}{n:02d}" if padded else f"{prefix}{n}" for n in range(1, count + 1))


#: ``PaymentRequestPost`` string fields (Swagger), excluding the custom/org-unit families and
#: the two object-valued fields (``LineItems``, ``VendorRemitToIdentifier``).
HEADER_FIELDS: tuple[str, ...] = (
    "AmountWithoutVat",
    "BuyerCostCenter",
    "CheckNumber",
    "CompanyBillToAddressCode",
    "CompanyShipToAddressCode",
    "CountryCode",
    "CurrencyCode",
    "DataSource",
    "DeliverySlipNumber",
    "Description",
    "DiscountPercentage",
    "DiscountTerms",
    "EmployeeEmailAddress",
    "EmployeeId",
    "EmployeeLoginId",
    "ExternalPolicyId",
    "InvoiceAmount",
    "InvoiceDate",
    "InvoiceNumber",
    "InvoiceReceivedDate",
    "IsEmergencyCheckRun",
    "IsInvoiceConfirmed",
    "LedgerCode",
    "Name",
    "NotesToVendor",
    "OB10BuyerId",
    "OB10TransactionId",
    "PaymentAdjustmentNotes",
    "PaymentAmount",
    "PaymentDueDate",
    "PaymentTermsDays",
    "ProvincialTaxId",
    "PurchaseOrderId",
    "ReceiptConfirmationType",
    "ShippingAmount",
    "TaxAmount",
    "VatAmountFour",
    "VatAmountOne",
    "VatAmountThree",
    "VatAmountTwo",
    "VatRateFour",
    "VatRateOne",
    "VatRateThree",
    "VatRateTwo",
    "VendorShipFromAddressCode",
    "VendorTaxId",
)

#: ``PaymentRequestLineItemPost`` string fields (Swagger), without ``Custom01..20``/``Allocations``.
LINE_FIELDS: tuple[str, ...] = (
    "AmountWithoutVat",
    "Description",
    "ExpenseTypeCode",
    "ItemCode",
    "PurchaseOrderNumber",
    "Quantity",
    "ShipFromPostalCode",
    "ShipToPostalCode",
    "SupplierPartId",
    "Tax",
    "TaxCode",
    "TaxCode2",
    "TaxCode3",
    "TaxCode4",
    "TotalPrice",
    "UnitOfMeasure",
    "UnitPrice",
    "VatAmount",
    "VatAmountFour",
    "VatAmountThree",
    "VatAmountTwo",
    "VatRate",
    "VatRateFour",
    "VatRateThree",
    "VatRateTwo",
)

#: ``PaymentRequestAllocationPostPut`` fields besides ``Custom01..20``.
ALLOCATION_FIELDS: tuple[str, ...] = ("Percentage",)

#: ``VendorIdentifier`` (the ``VendorRemitToIdentifier`` object).
VENDOR_IDENTIFIER_FIELDS: tuple[str, ...] = (
    "Address1",
    "AddressCode",
    "Name",
    "PostalCode",
    "VendorCode",
)

#: The owner/policy fields; the reference page requires at least one. ``PurchaseOrderId`` is the
#: Swagger's spelling of the page's ``PurchaseOrderNumber``; both are recognised when checking.
OWNER_FIELDS: tuple[str, ...] = (
    "LedgerCode",
    "EmployeeLoginId",
    "EmployeeId",
    "EmployeeEmailAddress",
    "ExternalPolicyId",
    "PurchaseOrderId",
    "PurchaseOrderNumber",
)

#: Required by the reference page (v3.payment-request.html) ...
CONCUR_REQUIRED_FIELDS: tuple[str, ...] = (
    "Name",
    "CountryCode",
    "InvoiceAmount",
    "VendorRemitToIdentifier",
)
#: ... plus what this connector needs to de-duplicate and to check amounts (brief §4).
REQUIRED_FIELDS: tuple[str, ...] = (
    *CONCUR_REQUIRED_FIELDS,
    "InvoiceNumber",
    "CurrencyCode",
    "InvoiceDate",
    "LineItems",
)

#: Header and line fields that hold money; they must be decimal strings in the currency.
AMOUNT_FIELDS: tuple[str, ...] = (
    "InvoiceAmount",
    "TaxAmount",
    "ShippingAmount",
    "AmountWithoutVat",
    "PaymentAmount",
    "VatAmountOne",
    "VatAmountTwo",
    "VatAmountThree",
    "VatAmountFour",
)
LINE_AMOUNT_FIELDS: tuple[str, ...] = (
    "TotalPrice",
    "Tax",
    "AmountWithoutVat",
    "VatAmount",
    "VatAmountTwo",
    "VatAmountThree",
    "VatAmountFour",
)


def custom_field_name(n: int, style: str, prefix: str = "Custom") -> str:
    """``Custom05`` (``padded``, the Swagger POST spelling) or ``Custom5`` (``plain``)."""
    if style not in CUSTOM_FIELD_STYLES:
        raise ValueError(f"unknown custom_field_style {style!r}")
    return f"{prefix}{n:02d}" if style == "padded" else f"{prefix}{n}"


def _strings(names: tuple[str, ...]) -> dict[str, fields.Field]:
    # fields.String rejects JSON numbers ("Not a valid string."), which is the point: every
    # Swagger field is a string, and a float amount must never reach the wire.
    return {name: fields.String() for name in names}


def _custom(prefix: str, count: int) -> dict[str, fields.Field]:
    return {
        **_strings(_numbered(prefix, count, padded=True)),
        **_strings(_numbered(prefix, count, padded=False)),
    }


class _Strict(Schema):
    """Base: unknown keys are errors (a typo would otherwise be dropped by Concur)."""

    class Meta:
        unknown = RAISE


class _Collection(fields.Field):
    """``LineItems``/``Allocations`` in either documented shape: ``[...]`` or ``{"LineItem": [...]}``.

    Also accepts ``{"LineItem": {...}}`` (one item, the XML-to-JSON reading). Each item is checked
    with ``item_schema``; errors come back keyed by item index.
    """

    default_error_messages = {"invalid": "Must be an array of objects or {{{inner}: [...]}}."}

    def __init__(self, item_schema: type[Schema], inner: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item_schema = item_schema
        self.inner = inner

    def _items(self, value: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        if isinstance(value, Mapping) and set(value) == {self.inner}:
            got = value[self.inner]
            if isinstance(got, list):
                return got
            if isinstance(got, Mapping):
                return [got]
        raise ValidationError(f"Must be an array of objects or {{{self.inner!r}: [...]}}.")

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        items = self._items(value)
        errors: dict[int, Any] = {}
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                errors[index] = ["Must be an object."]
                continue
            problems = self.item_schema().validate(dict(item))
            if problems:
                errors[index] = problems
        if errors:
            raise ValidationError(errors)  # type: ignore[arg-type]
        return value


AllocationSchema = _Strict.from_dict(
    {**_strings(ALLOCATION_FIELDS), **_custom("Custom", 20)}, name="AllocationSchema"
)
AllocationSchema.__doc__ = "One ``Allocations`` entry (``PaymentRequestAllocationPostPut``)."

LineItemSchema = _Strict.from_dict(
    {
        **_strings(LINE_FIELDS),
        **_custom("Custom", 20),
        "Allocations": _Collection(AllocationSchema, "Allocation"),
    },
    name="LineItemSchema",
)
LineItemSchema.__doc__ = "One line (``PaymentRequestLineItemPost``)."

VendorIdentifierSchema = _Strict.from_dict(
    _strings(VENDOR_IDENTIFIER_FIELDS), name="VendorIdentifierSchema"
)
VendorIdentifierSchema.__doc__ = "``VendorRemitToIdentifier`` (Swagger ``VendorIdentifier``)."

PaymentRequestSchema = _Strict.from_dict(
    {
        **_strings(HEADER_FIELDS),
        # the reference page's PurchaseOrderNumber (the Swagger says PurchaseOrderId)
        "PurchaseOrderNumber": fields.String(),
        **_custom("Custom", 24),
        **_custom("OrgUnit", 6),
        "VendorRemitToIdentifier": fields.Nested(VendorIdentifierSchema),
        "LineItems": _Collection(LineItemSchema, "LineItem"),
    },
    name="PaymentRequestSchema",
)
PaymentRequestSchema.__doc__ = "The ``POST /invoice/paymentrequest`` body (``PaymentRequestPost``)."


def wrap_line_items(lines: list[dict[str, Any]], shape: str) -> Any:
    """Lines in the configured ``line_items_shape`` (``flat`` list or ``nested`` wrapper)."""
    if shape == "flat":
        return list(lines)
    if shape == "nested":
        return {"LineItem": list(lines)}
    raise ValueError(f"unknown line_items_shape {shape!r}")


def iter_line_items(body: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The line objects of ``body`` whatever the shape; non-objects are skipped (schema reports)."""
    value = body.get("LineItems")
    if isinstance(value, Mapping):
        value = value.get("LineItem")
        if isinstance(value, Mapping):
            value = [value]
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping):
                yield item


def canonical_json(body: Mapping[str, Any]) -> str:
    """The body as canonical JSON (sorted keys, no spaces): byte-identical for equal bodies.

    Why: the ledger stores the mapped snapshot and a replay compares it; key order must not
    depend on how the dict was built.
    """
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
