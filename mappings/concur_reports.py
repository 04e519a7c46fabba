"""Inbound SAP Concur v3.0 expense reports, entries and allocations as typed, Decimal-only data.

The v3.0 list endpoints (``/expense/reports``, ``/expense/entries?reportID=``,
``/expense/allocations?reportID=``) are the only documented way to list approved reports, so their
PascalCase shapes are what we load. Schemas use ``unknown = EXCLUDE``: Concur adds fields and a new
one must never stop a report from posting. Amounts never pass through ``float``: every number is
read with ``money.to_decimal(str(value))``.

Choices made where the vendor docs are silent or unsure (see ``docs/expenses-mapping.md``):

- ``Custom1`` vs ``Custom01`` (UNCONFIRMED): :func:`canonical_field_name` is the one place that
  decides; both spellings (and v4's ``custom1``) resolve to ``Custom1``.
- Payment type: :func:`payment_type_of` prefers ``PaymentTypeCode`` and falls back to the
  documented ``PaymentTypeID`` (a 4-character code such as ``CASH`` per the v4 spec).
- The amount we post is the entry's ``ApprovedAmount`` (report currency), never
  ``TransactionAmount`` (what was paid to the merchant, in the transaction currency).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load

from connector.errors import ValidationFailed
from mappings import money

__all__ = [
    "ConcurAllocation",
    "ConcurAllocationSchema",
    "ConcurCustomField",
    "ConcurEntry",
    "ConcurEntrySchema",
    "ConcurReport",
    "ConcurReportSchema",
    "assemble_report",
    "canonical_field_name",
    "payment_type_of",
]

# --------------------------------------------------------------------------- naming (UNCONFIRMED)

_CUSTOM_NAME = re.compile(r"^(custom|orgunit)0*([1-9][0-9]*)$", re.IGNORECASE)
_CANONICAL_PREFIX = {"custom": "Custom", "orgunit": "OrgUnit"}


def canonical_field_name(name: str) -> str:
    """Return the one spelling we use for a Concur custom/org-unit field: ``Custom1``, ``OrgUnit2``.

    The docs show ``Custom1`` in v3.0 expense payloads, ``Custom01`` in Invoice payloads and
    ``custom1`` in v4 ``customData``; which one a tenant's expense API returns is UNCONFIRMED. Every
    spelling passes through here, both when reading Concur JSON and when reading the rules file,
    so a rule ``field: Custom01`` matches a payload key ``Custom1`` and vice versa.

    Raises:
        ValueError: ``name`` is not a custom or org-unit field name.
    """
    match = _CUSTOM_NAME.match(name.strip())
    if match is None:
        raise ValueError(f"not a Concur custom field name: {name!r} (expected e.g. Custom1)")
    return f"{_CANONICAL_PREFIX[match.group(1).lower()]}{int(match.group(2))}"


def _is_custom_name(name: str) -> bool:
    return _CUSTOM_NAME.match(name) is not None


def payment_type_of(item: Mapping[str, Any]) -> str:
    """The payment type code of a raw v3 entry: ``PaymentTypeCode``, else ``PaymentTypeID``.

    v3.0 documents ``PaymentTypeID``; v4 says a payment type id is at most 4 characters (``CASH``),
    and some payloads also carry ``PaymentTypeCode``. Which of the two a tenant fills is
    UNCONFIRMED, so this single function decides: the code when present, otherwise the id.
    """
    for key in ("PaymentTypeCode", "PaymentTypeID"):
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


# --------------------------------------------------------------------------- typed data


@dataclass(frozen=True)
class ConcurCustomField:
    """One custom/org-unit field value (``{Type, Code, Value, ListItemID, Label}`` in v3)."""

    code: str | None = None
    value: str | None = None
    label: str | None = None
    list_item_id: str | None = None
    type: str | None = None

    @property
    def key(self) -> str | None:
        """The list code when there is one (``CC-100``), else the text value."""
        return self.code or self.value


@dataclass(frozen=True)
class ConcurAllocation:
    """A share (``percentage`` of 100) of one entry, carrying the cost-centre custom fields."""

    id: str
    entry_id: str
    percentage: Decimal
    custom_fields: Mapping[str, ConcurCustomField] = field(default_factory=dict)
    is_hidden: bool = False

    def custom(self, name: str) -> ConcurCustomField | None:
        """The custom field ``name`` in any spelling (``Custom1``/``Custom01``), or ``None``."""
        return self.custom_fields.get(canonical_field_name(name))


@dataclass(frozen=True)
class ConcurEntry:
    """One expense entry; ``approved_amount`` is in the report currency."""

    id: str
    report_id: str
    expense_type_code: str
    expense_type_name: str | None
    payment_type_code: str
    payment_type_name: str | None
    approved_amount: Decimal
    posted_amount: Decimal | None
    transaction_amount: Decimal | None
    transaction_currency: str | None
    transaction_date: date | None
    is_personal: bool
    vendor: str | None
    description: str | None
    last_modified: datetime | None
    allocations: tuple[ConcurAllocation, ...] = ()


@dataclass(frozen=True)
class ConcurReport:
    """An expense report with its business (non-personal) entries and their allocations.

    ``entries`` holds only what we post; ``personal_entries`` keeps the excluded ones so audit and
    version hashing can see them. ``approved_total`` is what the journal must add up to: the sum of
    the business entries' ``ApprovedAmount``. ``reported_approved_total`` is Concur's own
    ``TotalApprovedAmount``, kept to cross-check that the entries we fetched are the report Concur
    approved.
    """

    id: str
    name: str
    owner_name: str | None
    owner_login_id: str | None
    currency: str
    approval_status_code: str | None
    payment_status_code: str | None
    submit_date: datetime | None
    processing_payment_date: datetime | None
    paid_date: datetime | None
    last_modified: datetime | None
    total: Decimal | None
    reported_approved_total: Decimal | None
    amount_due_employee: Decimal | None
    amount_due_company_card: Decimal | None
    personal_amount: Decimal | None
    entries: tuple[ConcurEntry, ...] = ()
    personal_entries: tuple[ConcurEntry, ...] = ()
    approved_at: datetime | None = None

    @property
    def approved_total(self) -> Decimal:
        """Sum of the business entries' approved amounts, in the report currency."""
        return sum((e.approved_amount for e in self.entries), Decimal(0))

    @property
    def approval_date(self) -> date | None:
        """When the report finished approval.

        v3.0 has no approval timestamp; ``ProcessingPaymentDate`` is documented as "the date that
        the report completed all approvals and was ready to be extracted for payment", so it is
        the answer. The ``approved_at`` the flow may hand in (the ESS ``statusChanged`` event
        time) is only a fallback when Concur has not filled it: the webhook path and the poll
        back-stop must compute the same journal date for the same report.
        """
        when = self.processing_payment_date or self.approved_at
        return when.date() if when else None


# --------------------------------------------------------------------------- marshmallow fields


class ConcurAmount(fields.Field[Decimal]):
    """A v3 money value (JSON number or string) read exactly as ``Decimal``."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Decimal:
        try:
            amount = money.to_decimal(str(value))
        except ValueError as exc:
            raise ValidationError(f"not an amount: {value!r}") from exc
        if not amount.is_finite():
            raise ValidationError(f"not an amount: {value!r}")
        return amount


class ConcurDateTime(fields.Field[datetime]):
    """A v3 timestamp such as ``2025-06-02T09:00:00.000`` (no zone; UTC per the sandbox)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> datetime:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"not a date: {value!r}")
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValidationError(f"not a date: {value!r}") from exc


class _Inbound(Schema):
    class Meta:
        unknown = EXCLUDE


class CustomFieldSchema(_Inbound):
    """``{Type, Code, Value, ListItemID, Label}``; a bare string is read as both code and value."""

    code = fields.String(data_key="Code", allow_none=True, load_default=None)
    value = fields.String(data_key="Value", allow_none=True, load_default=None)
    label = fields.String(data_key="Label", allow_none=True, load_default=None)
    list_item_id = fields.String(data_key="ListItemID", allow_none=True, load_default=None)
    type = fields.String(data_key="Type", allow_none=True, load_default=None)

    @pre_load
    def _bare_value(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, str | int | float) and not isinstance(data, bool):
            return {"Code": str(data), "Value": str(data)}
        return data


_CUSTOM_SCHEMA = CustomFieldSchema()


def _custom_fields(raw: Mapping[str, Any]) -> dict[str, ConcurCustomField]:
    """Every ``CustomN``/``CustomNN``/``OrgUnitN`` key of ``raw`` under its canonical name."""
    out: dict[str, ConcurCustomField] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _is_custom_name(key) or value in (None, "", {}):
            continue
        loaded = _CUSTOM_SCHEMA.load(value)
        cf = ConcurCustomField(**loaded)
        if cf.code is None and cf.value is None:
            continue
        out[canonical_field_name(key)] = cf
    return out


class ConcurAllocationSchema(_Inbound):
    """One item of ``GET /api/v3.0/expense/allocations``."""

    id = fields.String(data_key="ID", required=True)
    entry_id = fields.String(data_key="EntryID", required=True)
    percentage = ConcurAmount(data_key="Percentage", required=True)
    is_hidden = fields.Boolean(data_key="IsHidden", allow_none=True, load_default=False)
    custom_fields = fields.Raw(load_default=dict)

    @pre_load
    def _collect_custom(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, Mapping):
            return {**data, "custom_fields": _custom_fields(data)}
        return data


class ConcurEntrySchema(_Inbound):
    """One item of ``GET /api/v3.0/expense/entries``.

    ``ApprovedAmount`` and ``PostedAmount`` are in the report currency; ``TransactionAmount`` is
    in ``TransactionCurrencyCode`` and is kept for descriptions only.
    """

    id = fields.String(data_key="ID", required=True)
    report_id = fields.String(data_key="ReportID", required=True)
    expense_type_code = fields.String(data_key="ExpenseTypeCode", required=True)
    expense_type_name = fields.String(
        data_key="ExpenseTypeName", allow_none=True, load_default=None
    )
    payment_type_code = fields.String(load_default="")
    payment_type_name = fields.String(
        data_key="PaymentTypeName", allow_none=True, load_default=None
    )
    approved_amount = ConcurAmount(data_key="ApprovedAmount", required=True)
    posted_amount = ConcurAmount(data_key="PostedAmount", allow_none=True, load_default=None)
    transaction_amount = ConcurAmount(
        data_key="TransactionAmount", allow_none=True, load_default=None
    )
    transaction_currency = fields.String(
        data_key="TransactionCurrencyCode", allow_none=True, load_default=None
    )
    transaction_date = ConcurDateTime(
        data_key="TransactionDate", allow_none=True, load_default=None
    )
    is_personal = fields.Boolean(data_key="IsPersonal", allow_none=True, load_default=False)
    vendor = fields.String(data_key="VendorDescription", allow_none=True, load_default=None)
    description = fields.String(data_key="Description", allow_none=True, load_default=None)
    last_modified = ConcurDateTime(data_key="LastModified", allow_none=True, load_default=None)

    @pre_load
    def _payment_type(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, Mapping):
            return {**data, "payment_type_code": payment_type_of(data)}
        return data


class ConcurReportSchema(_Inbound):
    """``GET /api/v3.0/expense/reports/{id}`` (or one item of the reports list)."""

    id = fields.String(data_key="ID", required=True)
    name = fields.String(data_key="Name", allow_none=True, load_default="")
    owner_name = fields.String(data_key="OwnerName", allow_none=True, load_default=None)
    owner_login_id = fields.String(data_key="OwnerLoginID", allow_none=True, load_default=None)
    currency = fields.String(data_key="CurrencyCode", required=True)
    approval_status_code = fields.String(
        data_key="ApprovalStatusCode", allow_none=True, load_default=None
    )
    payment_status_code = fields.String(
        data_key="PaymentStatusCode", allow_none=True, load_default=None
    )
    submit_date = ConcurDateTime(data_key="SubmitDate", allow_none=True, load_default=None)
    processing_payment_date = ConcurDateTime(
        data_key="ProcessingPaymentDate", allow_none=True, load_default=None
    )
    paid_date = ConcurDateTime(data_key="PaidDate", allow_none=True, load_default=None)
    last_modified = ConcurDateTime(data_key="LastModifiedDate", allow_none=True, load_default=None)
    total = ConcurAmount(data_key="Total", allow_none=True, load_default=None)
    reported_approved_total = ConcurAmount(
        data_key="TotalApprovedAmount", allow_none=True, load_default=None
    )
    amount_due_employee = ConcurAmount(
        data_key="AmountDueEmployee", allow_none=True, load_default=None
    )
    amount_due_company_card = ConcurAmount(
        data_key="AmountDueCompanyCard", allow_none=True, load_default=None
    )
    personal_amount = ConcurAmount(data_key="PersonalAmount", allow_none=True, load_default=None)


# --------------------------------------------------------------------------- assembly


def _items(
    pages: Iterable[Any] | Mapping[str, Any] | None, where: str, errors: dict[str, Any]
) -> list[Any]:
    """Flatten v3 pages (``{"Items": [...], "NextPage": ...}``) or plain item lists.

    A page or ``Items`` value of another shape (``null``, a number, a string) is reported in
    ``errors`` under ``where``, like an item that fails its schema.
    """
    if pages is None:
        return []
    if isinstance(pages, Mapping):
        seq: list[Any] = [pages]
    elif isinstance(pages, list | tuple):
        seq = list(pages)
    else:
        errors[where] = [f"expected a page or a list of pages, got {type(pages).__name__}"]
        return []
    out: list[Any] = []
    for n, page in enumerate(seq):
        if isinstance(page, Mapping) and "Items" in page:
            items = page.get("Items")
            if isinstance(items, list | tuple):
                out.extend(items)
            elif items is not None:
                errors[f"{where}[{n}].Items"] = [f"expected a list, got {type(items).__name__}"]
        elif isinstance(page, Mapping):
            out.append(page)
        elif isinstance(page, list | tuple):
            out.extend(page)
        else:
            errors[f"{where}[{n}]"] = [f"expected an object or a list, got {type(page).__name__}"]
    return out


def _load(schema: Schema, raw: Any, where: str, errors: dict[str, Any]) -> dict[str, Any] | None:
    try:
        loaded: dict[str, Any] = schema.load(raw)
    except ValidationError as exc:
        errors[where] = exc.messages
        return None
    return loaded


def assemble_report(
    report_json: Mapping[str, Any],
    entries_json_pages: Iterable[Any] | Mapping[str, Any] | None,
    allocations_json_pages: Iterable[Any] | Mapping[str, Any] | None,
    *,
    approved_at: datetime | None = None,
) -> ConcurReport:
    """Join a v3 report with its entries (by ``ReportID``) and allocations (by ``EntryID``).

    Pages may repeat an item when Concur's offset paging shifts under a concurrent change, so
    items are de-duplicated by ``ID`` (last one wins). Entries of other reports and allocations
    of unknown entries (itemizations, other reports) are ignored. Personal entries
    (``IsPersonal``) are moved to ``personal_entries``: they are neither debited nor credited.

    Args:
        report_json: the report object.
        entries_json_pages: the entries pages (``{"Items": [...]}``) or a flat list of entries.
        allocations_json_pages: the allocations pages or a flat list of allocations.
        approved_at: the approval instant when the flow knows it (ESS ``statusChanged`` time).

    Raises:
        ValidationFailed: some item does not have the shape v3.0 documents; ``errors`` has all.
    """
    errors: dict[str, Any] = {}
    report = _load(ConcurReportSchema(), report_json, "report", errors)
    entry_schema, alloc_schema = ConcurEntrySchema(), ConcurAllocationSchema()

    entries: dict[str, dict[str, Any]] = {}
    for n, raw in enumerate(_items(entries_json_pages, "entries", errors)):
        loaded = _load(entry_schema, raw, f"entries[{n}]", errors)
        if loaded is not None:
            entries[loaded["id"]] = loaded
    allocations: dict[str, dict[str, Any]] = {}
    for n, raw in enumerate(_items(allocations_json_pages, "allocations", errors)):
        loaded = _load(alloc_schema, raw, f"allocations[{n}]", errors)
        if loaded is not None:
            allocations[loaded["id"]] = loaded
    if errors or report is None:
        raise ValidationFailed(
            f"Concur report data is malformed ({len(errors)} item(s))", errors=errors
        )

    by_entry: dict[str, list[ConcurAllocation]] = {}
    for a in allocations.values():
        a["is_hidden"] = bool(a["is_hidden"])
        by_entry.setdefault(a["entry_id"], []).append(ConcurAllocation(**a))

    business: list[ConcurEntry] = []
    personal: list[ConcurEntry] = []
    for e in entries.values():
        if e["report_id"] != report["id"]:
            continue
        txn = e.pop("transaction_date")
        e["is_personal"] = bool(e["is_personal"])
        entry = ConcurEntry(
            **e,
            transaction_date=txn.date() if txn else None,
            allocations=tuple(by_entry.get(e["id"], ())),
        )
        (personal if entry.is_personal else business).append(entry)

    report["name"] = report["name"] or ""
    return ConcurReport(
        **report,
        entries=tuple(business),
        personal_entries=tuple(personal),
        approved_at=approved_at,
    )
