"""What the vendors flow writes: the outbound Concur vendor and Zoho contact bodies, checked.

The schemas refuse any field we do not map (``unknown = RAISE``), so a body that would change
something the other side owns fails here, with the field named, rather than in the vendor's
system.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from mappings.vendors_rules import (
    ADDRESS_CODE_MAX,
    CONCUR_FIELD,
    FIELDS,
    VENDOR_CODE_MAX,
    ZOHO_ADDRESS_FIELD,
    ZOHO_PERSON_FIELD,
    VendorRules,
)
from mappings.vendors_values import country_name


def _concur_string_fields() -> dict[str, fields.Field]:
    optional = [
        "VendorName", "Address1", "Address2", "Address3", "City", "State", "PostalCode",
        "Country", "TaxID", "ContactFirstName", "ContactLastName", "ContactEmail",
        "ContactPhoneNumber",
    ]  # fmt: skip
    out: dict[str, fields.Field] = {name: fields.String() for name in optional}
    out["VendorCode"] = fields.String(
        required=True, validate=validate.Length(min=1, max=VENDOR_CODE_MAX)
    )
    out["AddressCode"] = fields.String(
        required=True, validate=validate.Length(min=1, max=ADDRESS_CODE_MAX)
    )
    out["CountryCode"] = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{2}$"))
    out["CurrencyCode"] = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$"))
    out["PaymentTerms"] = fields.String(validate=validate.Regexp(r"^([1-9][0-9]{0,2})$"))
    return out


#: The outbound Concur vendor (v3.1 ``Vendor``): only fields we map, all strings (the Swagger
#: types every field ``string``), the four required ones required; any other name is refused.
ConcurVendorSchema = Schema.from_dict(_concur_string_fields(), name="ConcurVendorSchema")
ConcurVendorSchema.Meta.unknown = RAISE  # type: ignore[attr-defined]


class _Address(Schema):
    class Meta:
        unknown = RAISE

    attention = fields.String()
    address = fields.String()
    street2 = fields.String()
    city = fields.String()
    state = fields.String()
    state_code = fields.String()
    zip = fields.String()
    country = fields.String()
    phone = fields.String()
    fax = fields.String()


class _Person(Schema):
    class Meta:
        unknown = RAISE

    contact_person_id = fields.String()
    salutation = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    email = fields.String()
    phone = fields.String()
    mobile = fields.String()
    designation = fields.String()
    department = fields.String()
    is_primary_contact = fields.Boolean()


class _CustomField(Schema):
    class Meta:
        unknown = RAISE

    index = fields.Integer()
    label = fields.String()
    value = fields.String()


class ZohoContactSchema(Schema):
    """The outbound Zoho contact (``create-a-contact-request`` / ``update-a-contact-request``)."""

    class Meta:
        unknown = RAISE

    contact_name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    company_name = fields.String(validate=validate.Length(max=200))
    contact_type = fields.String(validate=validate.OneOf(("vendor",)))
    contact_number = fields.String(validate=validate.Length(max=200))
    ignore_auto_number_generation = fields.Boolean()
    currency_id = fields.String()
    payment_terms = fields.Integer(validate=validate.Range(min=0))
    payment_terms_label = fields.String()
    billing_address = fields.Nested(_Address)
    contact_persons = fields.List(fields.Nested(_Person))
    custom_fields = fields.List(fields.Nested(_CustomField))
    tax_reg_no = fields.String()
    vat_reg_no = fields.String()
    gst_no = fields.String()
    tax_id_value = fields.String()

    @validates_schema
    def _has_name(self, data: dict[str, Any], **_kw: Any) -> None:
        if not str(data.get("contact_name") or "").strip():
            raise ValidationError("contact_name must not be blank", "contact_name")


def validate_concur_vendor(body: Mapping[str, Any]) -> dict[str, Any]:
    """Check one outbound Concur vendor; returns it unchanged. Raises ``ValidationError``."""
    ConcurVendorSchema().load(dict(body))
    return dict(body)


def validate_zoho_contact(body: Mapping[str, Any]) -> dict[str, Any]:
    ZohoContactSchema().load(dict(body))
    return dict(body)


def concur_body(
    values: Mapping[str, str | None],
    code: str,
    address_code: str,
    *,
    only: Iterable[str] | None = None,
    base: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """A Concur vendor body from canonical values.

    For a create, every non-empty field. For an update, ``only`` names the fields to change
    and ``base`` gives the vendor's current values for the required ones (``CountryCode``,
    ``CurrencyCode``, ``State`` where a country requires it), which a PUT must carry.
    """
    body: dict[str, Any] = {"VendorCode": code, "AddressCode": address_code}
    wanted = set(FIELDS if only is None else only)
    merged = {**(base or {}), **{k: v for k, v in values.items() if k in wanted}}
    for f in FIELDS:
        if (
            f in wanted
            or f in ("country_code", "currency_code")
            or (only is not None and f == "state")
        ):
            value = merged.get(f)
            if value is not None:
                body[CONCUR_FIELD[f]] = str(value)
    return body


def zoho_body(
    values: Mapping[str, str | None],
    rules: VendorRules,
    *,
    code: str | None = None,
    currency_id: str | None = None,
    only: Iterable[str] | None = None,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Zoho contact body from canonical values.

    Create (``current`` None): a vendor contact with name, company name, code (per
    ``code_from``), currency, terms, billing address, tax number and a primary contact person.
    Update: ``only`` the changed fields; the billing address and contact persons are sent whole
    (merged into ``current``, the contact as Zoho returned it), because Zoho replaces them as a
    unit.
    """
    wanted = set(FIELDS if only is None else only)
    v = {k: values.get(k) for k in wanted}
    body: dict[str, Any] = {}
    if current is None:
        body["contact_name"] = values.get("name") or ""
        body["company_name"] = values.get("name") or ""
        body["contact_type"] = "vendor"
        if code:
            if rules.code_from == "contact_number":
                body["contact_number"] = code
                body["ignore_auto_number_generation"] = True
            elif rules.code_in_custom_field:
                body["custom_fields"] = [{"label": rules.code_from, "value": code}]
    else:
        body["contact_name"] = (v.get("name") if "name" in wanted else None) or str(
            current.get("contact_name") or ""
        )
    if "currency_code" in wanted and currency_id:
        body["currency_id"] = str(currency_id)
    if "payment_terms" in wanted and v.get("payment_terms"):
        days = int(v["payment_terms"])  # type: ignore[arg-type]
        body["payment_terms"] = days
        body["payment_terms_label"] = f"Net {days}"
    if "tax_id" in wanted and v.get("tax_id"):
        body[rules.tax_id_field] = v["tax_id"]
    address_keys = [*ZOHO_ADDRESS_FIELD, "country_code"]
    if any(k in wanted and v.get(k) is not None for k in address_keys):
        address = {
            k: str(val)
            for k, val in dict((current or {}).get("billing_address") or {}).items()
            if k in _Address().fields and val not in (None, "")
        }
        for canon, key in ZOHO_ADDRESS_FIELD.items():
            if canon in wanted and v.get(canon) is not None:
                address[key] = str(v[canon])
        if "country_code" in wanted and v.get("country_code"):
            address["country"] = country_name(v["country_code"]) or ""
        body["billing_address"] = address
    if any(k in wanted and v.get(k) is not None for k in ZOHO_PERSON_FIELD):
        persons = [
            {k: val for k, val in p.items() if k in _Person().fields and val is not None}
            for p in (current or {}).get("contact_persons") or []
            if isinstance(p, dict)
        ]
        primary = next((p for p in persons if p.get("is_primary_contact")), None)
        if primary is None:
            primary = persons[0] if persons else {}
            if not persons:
                persons.append(primary)
        primary["is_primary_contact"] = True
        for canon, key in ZOHO_PERSON_FIELD.items():
            if canon in wanted and v.get(canon) is not None:
                primary[key] = str(v[canon])
        for p in persons:
            for key in ("contact_person_id",):
                if key in p:
                    p[key] = str(p[key])
        body["contact_persons"] = persons
    return body


def canonical_after_zoho_write(
    current: Mapping[str, str | None], written: Mapping[str, str | None]
) -> dict[str, str | None]:
    """What the canonical values become once ``written`` landed (used for dry runs)."""
    return {f: written.get(f, current.get(f)) if f in written else current.get(f) for f in FIELDS}
