"""Zoho Books bill/invoice -> SAP Concur payment request (Invoice v3.0): the payables mapping.

Pure functions only: no HTTP, no database, no Flask or Celery. The pipeline calls them in order::

    doc = load_zoho_document(response)            # mappings.zoho_documents
    if is_void(doc): ...                          # flag it, never ignore it (issue #6 §8)
    body = map_document(doc, vendor, rules)       # ParkError -> record waits with the reason
    validate_payment_request(body, currency=...)  # ValidationFailed -> record fails, all problems
    ... POST, with stable_reference(doc) / matches_existing(digest, body) for the retry search

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
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from connector.errors import MappingError, ParkError, ValidationFailed
from mappings.money import format_amount, precision, quantize, split, to_decimal
from mappings.payment_requests import (
    AMOUNT_FIELDS,
    CUSTOM_FIELD_STYLES,
    LINE_AMOUNT_FIELDS,
    LINE_ITEMS_SHAPES,
    OWNER_FIELDS,
    REQUIRED_FIELDS,
    PaymentRequestSchema,
    custom_field_name,
    iter_line_items,
    wrap_line_items,
)
from mappings.zoho_documents import ZohoDocument, ZohoLineItem, flatten_messages

__all__ = [
    "CONFIGURABLE_OWNER_FIELDS",
    "DEFAULT_CUSTOM_FIELD_STYLE",
    "DEFAULT_INCLUDE",
    "DEFAULT_NAME_MAX_LENGTH",
    "ISO_4217_CURRENCIES",
    "SECTION",
    "PayablesRules",
    "PayablesSectionSchema",
    "VendorRef",
    "document_version",
    "is_void",
    "map_document",
    "matches_existing",
    "parse_payables_rules",
    "stable_reference",
    "validate_payment_request",
    "version_from_timestamp",
]

#: The rules-file section this module parses (``connector/rules.py`` registers it).
SECTION = "payables"

#: Owner fields a connection may configure (a static value per connection). Purchase-order
#: ownership is per document, so it is not offered here.
CONFIGURABLE_OWNER_FIELDS: tuple[str, ...] = (
    "LedgerCode",
    "EmployeeLoginId",
    "EmployeeId",
    "EmployeeEmailAddress",
    "ExternalPolicyId",
)

#: ``Name`` length cap. Neither the Swagger nor the reference page states one (UNCONFIRMED);
#: 64 is a conservative cap that fits "<bill number> <vendor name>" and is a rules setting.
DEFAULT_NAME_MAX_LENGTH = 64

#: Active ISO 4217 currency codes used for trade (funds, metals and test codes left out), plus a
#: few recently withdrawn codes that old Zoho documents may still carry. A code outside this set
#: parks the record ("currency") instead of being sent to Concur.
_ISO_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
    KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
    MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
    RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY
    TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
"""
ISO_4217_CURRENCIES: frozenset[str] = frozenset(_ISO_CODES.split())

_KINDS = {"bills": "bill", "invoices": "invoice"}

#: Bills only by default: a Zoho *invoice* is a sales document (money a customer owes us), so
#: posting it as a Concur payable surprises most companies. ``include: [bills, invoices]`` is
#: for the few that route customer refunds or rebates through Concur (docs/payables-mapping.md).
DEFAULT_INCLUDE: tuple[str, ...] = ("bills",)

#: ``Custom5``: the spelling of the Invoice v3 reference page and of GET responses. Only the
#: Swagger's POST/PUT definitions say ``Custom05``; that stays available as ``padded``.
DEFAULT_CUSTOM_FIELD_STYLE = "plain"


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class PayablesRules:
    """The ``payables:`` section of a connection's rules file, parsed and checked.

    Attributes mirror the keys one to one (see ``docs/payables-mapping.md``). ``owner`` holds
    exactly one Concur owner field and its value, e.g. ``{"LedgerCode": "DEFAULT"}``.
    """

    owner: Mapping[str, str]
    include: tuple[str, ...] = DEFAULT_INCLUDE
    country_code: str | None = None
    expense_types: Mapping[str, str] = field(default_factory=dict)
    default_expense_type: str | None = None
    adjustment_expense_type: str | None = None
    adjustments: str = "spread"
    currencies: tuple[str, ...] | None = None
    line_items_shape: str = "flat"
    custom_field_style: str = DEFAULT_CUSTOM_FIELD_STYLE
    name_max_length: int = DEFAULT_NAME_MAX_LENGTH
    reference_custom_field: int | None = None
    remit_to: Mapping[str, str] = field(default_factory=dict)

    def includes(self, kind: str) -> bool:
        """Whether documents of ``kind`` (``bill``/``invoice``) flow to Concur at all."""
        return any(_KINDS[k] == kind for k in self.include)

    @property
    def allows_negative_lines(self) -> bool:
        """``adjustments: line`` can produce negative lines; the validator must allow them."""
        return self.adjustments == "line"


def _upper_code(length: int) -> validate.Validator:
    return validate.Regexp(rf"^[A-Z]{{{length}}}$", error=f"Must be {length} capital letters.")


class PayablesSectionSchema(Schema):
    """marshmallow schema of the ``payables:`` rules section; unknown keys are errors.

    Why RAISE: a misspelled key in a hand-written rules file would otherwise be silently ignored
    and the connection would run on defaults the operator did not choose.
    """

    class Meta:
        unknown = RAISE

    include = fields.List(
        fields.String(validate=validate.OneOf(tuple(_KINDS))),
        load_default=lambda: list(DEFAULT_INCLUDE),
    )
    owner = fields.Dict(
        keys=fields.String(validate=validate.OneOf(CONFIGURABLE_OWNER_FIELDS)),
        values=fields.String(validate=validate.Length(min=1)),
        required=True,
    )
    country_code = fields.String(load_default=None, allow_none=True, validate=_upper_code(2))
    expense_types = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1)),
        values=fields.String(validate=validate.Length(min=1)),
        load_default=dict,
    )
    default_expense_type = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1)
    )
    adjustment_expense_type = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1)
    )
    adjustments = fields.String(load_default="spread", validate=validate.OneOf(("spread", "line")))
    currencies = fields.List(
        fields.String(validate=_upper_code(3)), load_default=None, allow_none=True
    )
    line_items_shape = fields.String(
        load_default="flat", validate=validate.OneOf(LINE_ITEMS_SHAPES)
    )
    custom_field_style = fields.String(
        load_default=DEFAULT_CUSTOM_FIELD_STYLE, validate=validate.OneOf(CUSTOM_FIELD_STYLES)
    )
    name_max_length = fields.Integer(
        load_default=DEFAULT_NAME_MAX_LENGTH, validate=validate.Range(min=16, max=255)
    )
    reference_custom_field = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=24)
    )
    #: Concur VendorCode -> the AddressCode (remit-to address) its payment requests use.
    remit_to = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=32)),
        values=fields.String(validate=validate.Length(min=1, max=32)),
        load_default=dict,
    )

    @validates_schema(skip_on_field_errors=False)
    def _cross_checks(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        owner = data.get("owner")
        if isinstance(owner, dict) and len(owner) != 1:
            errors["owner"] = [
                "Give exactly one owner field, one of " + ", ".join(CONFIGURABLE_OWNER_FIELDS) + "."
            ]
        currencies = data.get("currencies") or []
        unknown = sorted(c for c in currencies if c not in ISO_4217_CURRENCIES)
        if unknown:
            errors["currencies"] = [f"Not ISO 4217 currency codes: {', '.join(unknown)}."]
        if data.get("adjustments") == "line" and not (
            data.get("adjustment_expense_type") or data.get("default_expense_type")
        ):
            errors["adjustment_expense_type"] = [
                "adjustments: line needs adjustment_expense_type or default_expense_type."
            ]
        if errors:
            raise ValidationError(errors)  # type: ignore[arg-type]


def parse_payables_rules(section: Mapping[str, Any] | None) -> PayablesRules:
    """Parse the ``payables:`` section; raises ``ValidationFailed`` listing every problem."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ValidationFailed(
            "payables rules must be a mapping", [f"{SECTION}: must be a mapping of keys"]
        )
    try:
        data = PayablesSectionSchema().load(dict(section))
    except ValidationError as exc:
        problems = [f"{SECTION}.{p}" for p in flatten_messages(exc.messages)]
        raise ValidationFailed(
            f"payables rules are invalid ({len(problems)} problem(s)): " + "; ".join(problems),
            problems,
        ) from exc
    return PayablesRules(
        owner=dict(data["owner"]),
        include=tuple(dict.fromkeys(data["include"])),
        country_code=data["country_code"],
        expense_types=dict(data["expense_types"]),
        default_expense_type=data["default_expense_type"],
        adjustment_expense_type=data["adjustment_expense_type"],
        adjustments=data["adjustments"],
        currencies=tuple(data["currencies"]) if data["currencies"] is not None else None,
        line_items_shape=data["line_items_shape"],
        custom_field_style=data["custom_field_style"],
        name_max_length=data["name_max_length"],
        reference_custom_field=data["reference_custom_field"],
        remit_to={k.strip().upper(): v.strip() for k, v in data["remit_to"].items()},
    )


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


# --------------------------------------------------------------------------- validation


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
