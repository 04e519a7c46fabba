"""The ``payables:`` section of a connection's rules file, parsed and checked (docs/payables-mapping.md).

A rules mistake must stop at import, with every problem named, not surface later as a record
that fails in the middle of a bill run; so the section is validated here, once, into an
immutable :class:`PayablesRules` the mapping reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from connector.errors import ValidationFailed
from mappings.payment_requests import (
    CUSTOM_FIELD_STYLES,
    LINE_ITEMS_SHAPES,
)
from mappings.zoho_documents import flatten_messages

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
