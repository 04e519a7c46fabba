"""Vendor ⇄ vendor: field map, name normalization, matching and the three-way field diff.

Pure functions only (no HTTP, no database): ``flows.vendor_sync`` feeds them what it listed on
both sides and what ``vendor_links`` remembers, and carries out what they decide. See
``docs/vendors.md`` for the rules in prose.

Both sides are first reduced to one *canonical* dict over :data:`FIELDS` (strings or ``None``),
so comparing a Zoho contact with a Concur vendor is comparing two dicts:

=====================  ========================================  ==========================
canonical field        Zoho Books contact                        Concur vendor (v3.1)
=====================  ========================================  ==========================
name                   ``contact_name``                          ``VendorName``
address1               ``billing_address.address``               ``Address1``
address2               ``billing_address.street2``               ``Address2``
city                   ``billing_address.city``                  ``City``
state                  ``billing_address.state``                 ``State``
postal_code            ``billing_address.zip``                   ``PostalCode``
country_code           ``billing_address.country`` (→ ISO 2)     ``CountryCode``
currency_code          ``currency_code`` (write: ``currency_id``)  ``CurrencyCode``
payment_terms          ``payment_terms`` (days; 0 = not set)     ``PaymentTerms`` (1-999)
tax_id                 the rules' ``tax_id_field``               ``TaxID``
contact_first_name     primary contact person ``first_name``     ``ContactFirstName``
contact_last_name      primary contact person ``last_name``      ``ContactLastName``
contact_email          primary contact person ``email``          ``ContactEmail``
=====================  ========================================  ==========================

The vendor code is not a diffed field: it is the link (Zoho's code field per ``code_from`` ⇄
``VendorCode``). Fields only one side has (Concur ``PaymentMethodType``, Zoho ``website``, …)
are never sent, so the other side keeps them.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

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


# --------------------------------------------------------------------------- normalization

#: Legal-form words dropped from the end of a name before matching (repeatedly, so
#: "Foo Holdings Co., Ltd." -> "foo holdings"). Matching only; names are written as they are.
LEGAL_SUFFIXES = frozenset(
    {
        "inc", "incorporated", "llc", "llp", "lp", "ltd", "limited", "plc", "corp",
        "corporation", "co", "company", "gmbh", "ag", "kg", "ug", "se", "sa", "sas", "sarl",
        "srl", "spa", "bv", "nv", "ab", "as", "asa", "oy", "oyj", "aps", "pty", "pvt", "pte",
        "kk", "kft", "sro", "sp", "zoo", "doo", "ooo", "bhd", "sdn",
    }
)  # fmt: skip
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalize_name(name: str | None) -> str:
    """Case, accents, punctuation and trailing legal forms removed: the name-matching key.

    ``"Uber Technologies, Inc."`` and ``"UBER TECHNOLOGIES"`` both give ``"uber technologies"``;
    ``"&"`` reads as ``"and"``. A name made only of legal words keeps them (``"Co"``).
    """
    if not name:
        return ""
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("&", " and ")
    # "G.m.b.H." / "S.A." collapse to one word before punctuation becomes spaces.
    text = re.sub(r"\b(\w)\.(?=\w\.)", r"\1", text)
    text = re.sub(r"(?<=\w)\.(?=\w\b)", "", text)
    words = _PUNCT.sub(" ", text).split()
    stripped = False
    while len(words) > 1 and (words[-1] in LEGAL_SUFFIXES or (stripped and words[-1] == "and")):
        words.pop()
        stripped = True
    return " ".join(words)


def normalize_tax_id(value: str | None) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", value or "").upper()


def normalize_code(value: str | None) -> str:
    """Concur codes are case-insensitive (v3.1 reference page)."""
    return (value or "").strip().upper()


#: Country names and aliases Zoho addresses carry -> ISO 3166 alpha-2. Zoho stores the billing
#: country as free text; unknown names give ``None`` (and a two-letter code is taken as is).
COUNTRY_ALIASES: dict[str, str] = {
    "usa": "US", "us": "US", "u s a": "US", "u s": "US", "united states": "US",
    "united states of america": "US", "america": "US",
    "uk": "GB", "u k": "GB", "united kingdom": "GB", "great britain": "GB", "england": "GB",
    "germany": "DE", "deutschland": "DE", "france": "FR", "italy": "IT", "spain": "ES",
    "netherlands": "NL", "the netherlands": "NL", "belgium": "BE", "austria": "AT",
    "switzerland": "CH", "ireland": "IE", "portugal": "PT", "sweden": "SE", "norway": "NO",
    "denmark": "DK", "finland": "FI", "poland": "PL", "czech republic": "CZ", "czechia": "CZ",
    "hungary": "HU", "greece": "GR", "ukraine": "UA", "romania": "RO", "luxembourg": "LU",
    "canada": "CA", "mexico": "MX", "brazil": "BR", "argentina": "AR", "chile": "CL",
    "india": "IN", "japan": "JP", "china": "CN", "hong kong": "HK", "singapore": "SG",
    "australia": "AU", "new zealand": "NZ", "south africa": "ZA", "israel": "IL",
    "united arab emirates": "AE", "uae": "AE", "u a e": "AE", "saudi arabia": "SA",
    "south korea": "KR", "korea": "KR", "taiwan": "TW", "malaysia": "MY", "philippines": "PH",
    "indonesia": "ID", "thailand": "TH", "vietnam": "VN", "turkey": "TR", "egypt": "EG",
}  # fmt: skip
#: ISO code -> the name we write into a Zoho billing address (Zoho's own spelling where known).
COUNTRY_NAMES: dict[str, str] = {
    "US": "U.S.A", "GB": "U.K", "DE": "Germany", "FR": "France", "IT": "Italy", "ES": "Spain",
    "NL": "Netherlands", "BE": "Belgium", "AT": "Austria", "CH": "Switzerland", "IE": "Ireland",
    "PT": "Portugal", "SE": "Sweden", "NO": "Norway", "DK": "Denmark", "FI": "Finland",
    "PL": "Poland", "CZ": "Czech Republic", "HU": "Hungary", "GR": "Greece", "UA": "Ukraine",
    "RO": "Romania", "LU": "Luxembourg", "CA": "Canada", "MX": "Mexico", "BR": "Brazil",
    "AR": "Argentina", "CL": "Chile", "IN": "India", "JP": "Japan", "CN": "China",
    "HK": "Hong Kong", "SG": "Singapore", "AU": "Australia", "NZ": "New Zealand",
    "ZA": "South Africa", "IL": "Israel", "AE": "United Arab Emirates", "SA": "Saudi Arabia",
    "KR": "South Korea", "TW": "Taiwan", "MY": "Malaysia", "PH": "Philippines",
    "ID": "Indonesia", "TH": "Thailand", "VN": "Vietnam", "TR": "Turkey", "EG": "Egypt",
}  # fmt: skip


def country_code(value: str | None) -> str | None:
    """A Zoho country text (``"U.S.A"``, ``"Germany"``, ``"de"``) -> ISO alpha-2, or None."""
    if not value or not str(value).strip():
        return None
    key = " ".join(_PUNCT.sub(" ", str(value).lower()).split())
    if key in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[key]
    compact = key.replace(" ", "")
    if len(compact) == 2 and compact.isalpha():
        return compact.upper()
    return None


def country_name(code: str | None) -> str | None:
    if not code:
        return None
    return COUNTRY_NAMES.get(code.upper(), code.upper())


# --------------------------------------------------------------------------- canonical values


def _s(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _terms(value: Any) -> str | None:
    """Payment terms in days as a string; 0 / blank / out of Concur's 1-999 range -> None."""
    try:
        days = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return str(days) if 1 <= days <= 999 else None


def primary_person(contact: Mapping[str, Any]) -> dict[str, Any]:
    persons = [p for p in contact.get("contact_persons") or [] if isinstance(p, dict)]
    for person in persons:
        if person.get("is_primary_contact"):
            return person
    if persons:
        return persons[0]
    # List items and some payloads carry only the primary person's summary at the top level.
    return {k: contact.get(k) for k in ("first_name", "last_name", "email") if contact.get(k)}


def _custom_field(contact: Mapping[str, Any], name: str) -> str | None:
    wanted = name.strip().lower()
    for cf in contact.get("custom_fields") or []:
        if not isinstance(cf, dict):
            continue
        names = {str(cf.get(k) or "").strip().lower() for k in ("label", "api_name", "placeholder")}
        if wanted in names or (wanted.startswith("index:") and str(cf.get("index")) == wanted[6:]):
            return _s(cf.get("value"))
    return None


def zoho_code(contact: Mapping[str, Any], rules: VendorRules) -> str | None:
    """The Concur ``VendorCode`` the code rule reads from a Zoho contact (None when empty)."""
    if rules.code_from == "contact_number":
        value = _s(contact.get("contact_number"))
    elif rules.code_from == "contact_id":
        value = _s(contact.get("contact_id"))
    else:
        value = _custom_field(contact, rules.code_from)
    return normalize_code(value)[:VENDOR_CODE_MAX] or None


def generated_code(contact_id: str) -> str:
    """A stable code for a Zoho vendor whose code field is empty: ``ZB`` + its contact id."""
    return normalize_code(f"ZB{contact_id}")[:VENDOR_CODE_MAX]


def zoho_values(contact: Mapping[str, Any], rules: VendorRules) -> dict[str, str | None]:
    """A Zoho contact (as ``GET /contacts/{id}`` returns it) -> canonical values."""
    address = contact.get("billing_address") or {}
    if not isinstance(address, dict):
        address = {}
    person = primary_person(contact)
    tax = _s(contact.get(rules.tax_id_field))
    for key in ZOHO_TAX_FIELDS:
        tax = tax or _s(contact.get(key))
    values: dict[str, str | None] = {
        "name": _s(contact.get("contact_name")),
        "country_code": country_code(address.get("country")) or _s(contact.get("country_code")),
        "currency_code": (_s(contact.get("currency_code")) or "").upper() or None,
        "payment_terms": _terms(contact.get("payment_terms")),
        "tax_id": tax,
    }
    for canon, key in ZOHO_ADDRESS_FIELD.items():
        values[canon] = _s(address.get(key))
    for canon, key in ZOHO_PERSON_FIELD.items():
        values[canon] = _s(person.get(key))
    if values["country_code"]:
        values["country_code"] = values["country_code"].upper()
    return {f: values.get(f) for f in FIELDS}


def concur_values(vendor: Mapping[str, Any]) -> dict[str, str | None]:
    """A Concur vendor (search item or POST/PUT echo) -> canonical values."""
    values = {canon: _s(vendor.get(name)) for canon, name in CONCUR_FIELD.items()}
    values["payment_terms"] = _terms(vendor.get("PaymentTerms"))
    for key in ("country_code", "currency_code"):
        if values[key]:
            values[key] = values[key].upper()  # type: ignore[union-attr]
    return {f: values.get(f) for f in FIELDS}


def fingerprint(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(values), sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the two sides


@dataclass(frozen=True)
class ZohoVendor:
    """One Zoho vendor contact as the matcher sees it."""

    contact_id: str
    values: dict[str, str | None]
    code: str | None = None
    last_modified_time: str | None = None

    @property
    def name_key(self) -> str:
        return normalize_name(self.values.get("name"))

    def effective_code(self) -> str:
        return self.code or generated_code(self.contact_id)


@dataclass(frozen=True)
class ConcurVendor:
    """One Concur vendor record (one ``VendorCode`` + ``AddressCode``)."""

    code: str
    address_code: str
    values: dict[str, str | None]

    @property
    def key(self) -> tuple[str, str]:
        return normalize_code(self.code), normalize_code(self.address_code)

    @property
    def ref(self) -> str:
        return f"{self.code}/{self.address_code}"

    @property
    def name_key(self) -> str:
        return normalize_name(self.values.get("name"))


def concur_vendor(raw: Mapping[str, Any]) -> ConcurVendor:
    return ConcurVendor(
        str(raw.get("VendorCode") or ""), str(raw.get("AddressCode") or ""), concur_values(raw)
    )


def zoho_vendor(raw: Mapping[str, Any], rules: VendorRules) -> ZohoVendor:
    return ZohoVendor(
        str(raw["contact_id"]),
        zoho_values(raw, rules),
        zoho_code(raw, rules),
        _s(raw.get("last_modified_time")),
    )


def primary_addresses(
    vendors: Iterable[ConcurVendor], address_code: str, linked: Iterable[tuple[str, str]] = ()
) -> tuple[dict[str, ConcurVendor], list[ConcurVendor]]:
    """One record per ``VendorCode``: the linked address, else ``address_code``, else the first
    ``AddressCode`` alphabetically. Returns ``(code -> record, the other addresses)``.

    A Zoho contact has one billing address, so a Concur vendor with several remit-to addresses
    (``GLOBEX``/``HQ`` + ``GLOBEX``/``REMIT2``) pairs with one Zoho contact through one of them;
    the others stay Concur-only remit-to addresses of the same vendor.
    """
    linked_keys = {(normalize_code(c), normalize_code(a)) for c, a in linked}
    groups: dict[str, list[ConcurVendor]] = defaultdict(list)
    for v in vendors:
        groups[v.key[0]].append(v)
    chosen: dict[str, ConcurVendor] = {}
    others: list[ConcurVendor] = []
    want = normalize_code(address_code)
    for code, members in groups.items():
        members.sort(key=lambda v: v.key[1])
        pick = next((v for v in members if v.key in linked_keys), None)
        pick = pick or next((v for v in members if v.key[1] == want), None) or members[0]
        chosen[code] = pick
        others.extend(v for v in members if v is not pick)
    return chosen, others


# --------------------------------------------------------------------------- matching


@dataclass
class Ambiguity:
    """Several candidates for one vendor: nothing is linked or created; a person decides."""

    reason: str
    zoho: list[str] = field(default_factory=list)
    concur: list[str] = field(default_factory=list)
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "zoho_contact_ids": sorted(self.zoho),
            "concur_vendors": sorted(self.concur),
            "detail": self.detail,
        }


@dataclass
class MatchResult:
    pairs: list[tuple[ZohoVendor, ConcurVendor, str]] = field(default_factory=list)
    ambiguous: list[Ambiguity] = field(default_factory=list)
    zoho_only: list[ZohoVendor] = field(default_factory=list)
    concur_only: list[ConcurVendor] = field(default_factory=list)


def _countries_agree(a: str | None, b: str | None) -> bool:
    return not a or not b or a.upper() == b.upper()


MATCH_STAGES: tuple[str, ...] = ("code", "tax_id", "name")


def _key(stage: str, v: ZohoVendor | ConcurVendor) -> str:
    if stage == "code":
        return v.effective_code() if isinstance(v, ZohoVendor) else v.key[0]
    if stage == "tax_id":
        return normalize_tax_id(v.values.get("tax_id"))
    return v.name_key


def match(zoho: Sequence[ZohoVendor], concur: Sequence[ConcurVendor]) -> MatchResult:
    """Pair unlinked vendors: code rule, then tax id, then normalized name + country.

    ``concur`` holds one record per ``VendorCode`` (``primary_addresses``). At each stage a pair
    is made only when the key is unique on *both* sides; two or more candidates on either side
    make an ``Ambiguity`` and take every vendor involved out of the later stages (an ambiguous
    vendor is never linked by a weaker rule). Countries must agree (or one be unknown) for a
    tax-id or name match.
    """
    result = MatchResult()
    left = {z.contact_id: z for z in sorted(zoho, key=lambda z: z.contact_id)}
    right = {c.key: c for c in sorted(concur, key=lambda c: c.key)}
    for stage in MATCH_STAGES:
        by_z: dict[str, list[ZohoVendor]] = defaultdict(list)
        by_c: dict[str, list[ConcurVendor]] = defaultdict(list)
        for z in left.values():
            if k := _key(stage, z):
                by_z[k].append(z)
        for c in right.values():
            if k := _key(stage, c):
                by_c[k].append(c)
        for k in sorted(set(by_z) & set(by_c)):
            zs, cs = by_z[k], by_c[k]
            if stage != "code":
                zs = [
                    z
                    for z in zs
                    if any(
                        _countries_agree(z.values["country_code"], c.values["country_code"])
                        for c in cs
                    )
                ]
                cs = [
                    c
                    for c in cs
                    if any(
                        _countries_agree(z.values["country_code"], c.values["country_code"])
                        for z in zs
                    )
                ]
            zs = [z for z in zs if z.contact_id in left]
            cs = [c for c in cs if c.key in right]
            if not zs or not cs:
                continue
            if len(zs) == 1 and len(cs) == 1:
                result.pairs.append((zs[0], cs[0], stage))
            else:
                result.ambiguous.append(
                    Ambiguity(
                        f"{stage}_match",
                        [z.contact_id for z in zs],
                        [c.ref for c in cs],
                        f"{len(zs)} Zoho and {len(cs)} Concur vendors share the {stage} {k!r}",
                    )
                )
            for z in zs:
                left.pop(z.contact_id, None)
            for c in cs:
                right.pop(c.key, None)
    result.zoho_only = list(left.values())
    result.concur_only = list(right.values())
    return result


# --------------------------------------------------------------------------- three-way diff


@dataclass
class Conflict:
    field: str
    winner: str
    value: str | None
    loser_value: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "winner": self.winner,
            "value": self.value,
            "loser": "concur" if self.winner == "zoho" else "zoho",
            "loser_value": self.loser_value,
        }


@dataclass
class FieldDiff:
    """What one linked pair needs: values to write on each side, and the conflicts decided."""

    to_concur: dict[str, str | None] = field(default_factory=dict)
    to_zoho: dict[str, str | None] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.to_concur and not self.to_zoho


def three_way(
    zoho_now: Mapping[str, str | None],
    concur_now: Mapping[str, str | None],
    zoho_base: Mapping[str, str | None] | None,
    concur_base: Mapping[str, str | None] | None,
    master: str,
) -> FieldDiff:
    """Decide each field of a linked pair from its value now and at the last sync on each side.

    - changed on Zoho only -> written to Concur; on Concur only -> written to Zoho;
    - changed on both to different values -> ``master`` wins, the other value becomes a
      ``Conflict`` (audited by the caller);
    - a value that became empty is not propagated (clearing is left to people: neither API
      documents a uniform way to clear a field), and an empty value never beats a real one;
    - without a base (a pair linked just now) every difference counts as changed on both sides.
    """
    diff = FieldDiff()
    for f in FIELDS:
        z, c = zoho_now.get(f), concur_now.get(f)
        if z == c:
            continue
        if zoho_base is None or concur_base is None:
            z_changed = c_changed = True
        else:
            z_changed = z != zoho_base.get(f)
            c_changed = c != concur_base.get(f)
        if z_changed and c_changed:
            if z is None:
                diff.to_zoho[f] = c
            elif c is None:
                diff.to_concur[f] = z
            elif master == "zoho":
                diff.to_concur[f] = z
                diff.conflicts.append(Conflict(f, "zoho", z, c))
            else:
                diff.to_zoho[f] = c
                diff.conflicts.append(Conflict(f, "concur", c, z))
        elif z_changed and z is not None:
            diff.to_concur[f] = z
        elif c_changed and c is not None:
            diff.to_zoho[f] = c
    return diff


# --------------------------------------------------------------------------- outbound bodies


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
