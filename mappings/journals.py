"""The outbound Zoho Books journal (``POST /journals``) as a strict schema, and its wire rendering.

Field names follow Zoho's published ``create-a-journal-request`` (``journals.yml``). The schema is
``unknown = RAISE``: a typo in a key would otherwise be dropped silently by Zoho and post a
journal without, say, its cost-centre tags.

Wire types follow the published schema, which is what Zoho parses:

- ``amount`` and ``exchange_rate`` are JSON *numbers* (``type: number, format: double``). They are
  rendered from the rounded ``Decimal`` as ``int`` for 0-decimal currencies and ``float``
  otherwise. That is exact on the wire: Python prints the shortest text that round-trips, so
  ``float(Decimal("33.33"))`` serialises as ``33.33``; :func:`render_amount` refuses values with
  more than 15 significant digits, the point where a double can no longer carry them.
- ``tags[].tag_id`` / ``tag_option_id`` are ``integer`` (int64) in the spec while every other id
  is a string; :func:`render_id` sends Zoho's numeric-string ids as integers there.
- Lengths are not in the spec (it has no ``maxLength``): ``reference_number`` ≤ 100 (Zoho's
  expenses spec; the sandbox enforces it), ``notes`` ≤ 500 and line ``description`` ≤ 100 are
  conservative choices (UNCONFIRMED), applied by truncation in the mapper.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

__all__ = [
    "DESCRIPTION_MAX_LENGTH",
    "NOTES_MAX_LENGTH",
    "REFERENCE_MAX_LENGTH",
    "JournalLineSchema",
    "JournalTagSchema",
    "ZohoJournalSchema",
    "render_amount",
    "render_id",
    "to_wire_decimal",
]

REFERENCE_MAX_LENGTH = 100
NOTES_MAX_LENGTH = 500  # UNCONFIRMED: the spec states no limit; Zoho's UI caps notes near here
DESCRIPTION_MAX_LENGTH = 100  # UNCONFIRMED: same cap as Zoho's expense description

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_EXACT_DIGITS = 15  # a double carries 15 significant decimal digits exactly


def render_amount(amount: Decimal, places: int) -> int | float:
    """An already-rounded amount as the JSON number Zoho's schema asks for.

    Raises:
        ValueError: ``amount`` has more decimals than ``places`` or too many digits for a double.
    """
    quantum = Decimal(1).scaleb(-places)
    if amount != amount.quantize(quantum):
        raise ValueError(f"{amount} has more than {places} decimal place(s)")
    digits = len(amount.quantize(quantum).as_tuple().digits)
    if digits > _MAX_EXACT_DIGITS:
        raise ValueError(f"{amount} has more digits than a JSON double carries exactly")
    return int(amount) if places == 0 else float(amount.quantize(quantum))


def to_wire_decimal(value: Any) -> Decimal:
    """Read a number back from a body exactly as it will be printed (``repr`` of the float).

    Raises:
        ValueError: ``value`` is not a JSON number (strings and booleans are refused).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"not a JSON number: {value!r}")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def render_id(zoho_id: str) -> int | str:
    """A Zoho id for a field the spec types ``integer`` (tags): digits become an ``int``."""
    text = str(zoho_id).strip()
    return int(text) if text.isdigit() else text


# --------------------------------------------------------------------------- schema


class JsonNumber(fields.Field[Decimal]):
    """A JSON number only: ``"12.30"`` (a string) and ``true`` are refused, as the spec types it."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Decimal:
        try:
            out = to_wire_decimal(value)
        except ValueError as exc:
            raise ValidationError("Not a valid number.") from exc
        if not out.is_finite():
            raise ValidationError("Not a valid number.")
        return out


class ZohoId(fields.Field[str]):
    """A Zoho id: a numeric string, or an integer where the spec types the id ``integer``."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
            raise ValidationError("Not a valid id.")
        return str(value)


class _Outbound(Schema):
    class Meta:
        unknown = RAISE


class JournalTagSchema(_Outbound):
    """``line_items[].tags[]``: a reporting tag and the chosen option."""

    tag_id = ZohoId(required=True)
    tag_option_id = ZohoId(required=True)


class JournalLineSchema(_Outbound):
    """``line_items[]``; Zoho requires ``amount`` and ``debit_or_credit`` (and, in practice,
    ``account_id``: it answers "Please select an account" without one)."""

    account_id = fields.String(required=True, validate=validate.Length(min=1))
    customer_id = fields.String()
    description = fields.String(validate=validate.Length(max=DESCRIPTION_MAX_LENGTH))
    amount = JsonNumber(required=True)
    debit_or_credit = fields.String(required=True, validate=validate.OneOf(["debit", "credit"]))
    tax_id = fields.String()
    location_id = fields.String()
    project_id = fields.String()
    tags = fields.List(fields.Nested(JournalTagSchema))


class CustomFieldValueSchema(_Outbound):
    """``custom_fields[]``."""

    customfield_id = fields.String(required=True)
    value = fields.Raw(required=True)


class ZohoJournalSchema(_Outbound):
    """``create-a-journal-request``: only ``journal_date`` is required by Zoho's spec; the mapper
    always sends ``reference_number`` (our stable reference) and at least two lines."""

    journal_date = fields.String(
        required=True, validate=validate.Regexp(_DATE, error="Use the yyyy-mm-dd format.")
    )
    reference_number = fields.String(validate=validate.Length(max=REFERENCE_MAX_LENGTH))
    notes = fields.String(validate=validate.Length(max=NOTES_MAX_LENGTH))
    journal_type = fields.String(validate=validate.OneOf(["cash", "both"]))
    currency_id = fields.String(validate=validate.Length(min=1))
    exchange_rate = JsonNumber()
    location_id = fields.String()
    status = fields.String(validate=validate.OneOf(["draft", "published"]))
    line_items = fields.List(
        fields.Nested(JournalLineSchema), required=True, validate=validate.Length(min=2)
    )
    custom_fields = fields.List(fields.Nested(CustomFieldValueSchema))
