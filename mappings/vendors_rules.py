"""The vendor field map and the ``vendors:`` section of a connection's rules file (docs/vendors.md).

Which canonical field is which on each side, and what a connection decides (where the Concur code
comes from, which directions sync, which fields): the matching and the payloads both read these,
so they are defined once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

FIELDS: tuple[str, ...] = (
    "name",
    "address1",
    "address2",
    "city",
    "state",
    "postal_code",
    "country_code",
    "currency_code",
    "payment_terms",
    "tax_id",
    "contact_first_name",
    "contact_last_name",
    "contact_email",
)

#: Canonical field -> Concur vendor field.
CONCUR_FIELD: dict[str, str] = {
    "name": "VendorName",
    "address1": "Address1",
    "address2": "Address2",
    "city": "City",
    "state": "State",
    "postal_code": "PostalCode",
    "country_code": "CountryCode",
    "currency_code": "CurrencyCode",
    "payment_terms": "PaymentTerms",
    "tax_id": "TaxID",
    "contact_first_name": "ContactFirstName",
    "contact_last_name": "ContactLastName",
    "contact_email": "ContactEmail",
}

#: Canonical field -> key inside Zoho's ``billing_address``.
ZOHO_ADDRESS_FIELD: dict[str, str] = {
    "address1": "address",
    "address2": "street2",
    "city": "city",
    "state": "state",
    "postal_code": "zip",
}
ZOHO_PERSON_FIELD: dict[str, str] = {
    "contact_first_name": "first_name",
    "contact_last_name": "last_name",
    "contact_email": "email",
}

#: Zoho fields that may hold a vendor's tax registration number (by edition), in reading order
#: after the configured one.
ZOHO_TAX_FIELDS: tuple[str, ...] = ("tax_reg_no", "vat_reg_no", "gst_no", "tax_id_value")

#: Special ``code_from`` values; anything else names a Zoho custom field (label or ``cf_`` api
#: name) that holds the Concur vendor code.
CODE_FROM_BUILTIN: tuple[str, ...] = ("contact_number", "contact_id")

#: Concur limits (v3.1 reference page).
VENDOR_CODE_MAX = 32
ADDRESS_CODE_MAX = 32

# --------------------------------------------------------------------------- rules section


class VendorsSectionSchema(Schema):
    """``vendors:`` in the connection's rules file.

    ``code_from``: ``contact_number`` (default), ``contact_id``, or the label / ``cf_`` API name
    of a Zoho contact custom field holding the Concur ``VendorCode``.
    """

    class Meta:
        unknown = RAISE

    master = fields.String(load_default="zoho", validate=validate.OneOf(("zoho", "concur")))
    code_from = fields.String(
        load_default="contact_number", validate=validate.Length(min=1, max=100)
    )
    address_code = fields.String(
        load_default="MAIN", validate=validate.Length(min=1, max=ADDRESS_CODE_MAX)
    )
    directions = fields.List(
        fields.String(validate=validate.OneOf(("zoho_to_concur", "concur_to_zoho"))),
        load_default=lambda: ["zoho_to_concur", "concur_to_zoho"],
    )
    #: Which Zoho field holds the vendor's tax registration number (edition-specific).
    tax_id_field = fields.String(
        load_default="tax_reg_no", validate=validate.OneOf(ZOHO_TAX_FIELDS)
    )
    #: ISO country used for a Zoho vendor without a billing country (Concur requires one).
    default_country = fields.String(
        allow_none=True, load_default=None, validate=validate.Regexp(r"^[A-Z]{2}$")
    )


@dataclass(frozen=True)
class VendorRules:
    master: str = "zoho"
    code_from: str = "contact_number"
    address_code: str = "MAIN"
    directions: tuple[str, ...] = ("zoho_to_concur", "concur_to_zoho")
    tax_id_field: str = "tax_reg_no"
    default_country: str | None = None

    @property
    def to_concur(self) -> bool:
        return "zoho_to_concur" in self.directions

    @property
    def to_zoho(self) -> bool:
        return "concur_to_zoho" in self.directions

    @property
    def code_in_custom_field(self) -> bool:
        return self.code_from not in CODE_FROM_BUILTIN


def parse_rules(section: Mapping[str, Any] | None) -> VendorRules:
    """The ``vendors:`` section (as stored) -> ``VendorRules``; defaults for what is missing."""
    try:
        data = VendorsSectionSchema().load(dict(section or {}))
    except ValidationError as exc:  # stored rules were validated on import; be loud if not
        raise ValueError(f"invalid vendors rules: {exc.messages}") from None
    return VendorRules(
        master=data["master"],
        code_from=data["code_from"],
        address_code=data["address_code"].upper(),
        directions=tuple(data["directions"]),
        tax_id_field=data["tax_id_field"],
        default_country=data["default_country"],
    )
