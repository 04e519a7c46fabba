"""A vendor's canonical values: normalized names, codes, tax ids and countries (docs/vendors.md).

Both sides are reduced to one dict over ``FIELDS`` before they are compared, and names, codes
and countries are normalized the same way on both, so "ACME Ltd." in Zoho and "Acme" in Concur
meet while the values written keep their original spelling.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from mappings.vendors_rules import (
    CONCUR_FIELD,
    FIELDS,
    VENDOR_CODE_MAX,
    ZOHO_ADDRESS_FIELD,
    ZOHO_PERSON_FIELD,
    ZOHO_TAX_FIELDS,
    VendorRules,
)

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


def scalar_text(value: Any) -> str | None:
    """A field as trimmed text, or None when empty or not a scalar (both sides use it so that
    an empty string and a missing field compare equal)."""
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
            return scalar_text(cf.get("value"))
    return None


def zoho_code(contact: Mapping[str, Any], rules: VendorRules) -> str | None:
    """The Concur ``VendorCode`` the code rule reads from a Zoho contact (None when empty)."""
    if rules.code_from == "contact_number":
        value = scalar_text(contact.get("contact_number"))
    elif rules.code_from == "contact_id":
        value = scalar_text(contact.get("contact_id"))
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
    tax = scalar_text(contact.get(rules.tax_id_field))
    for key in ZOHO_TAX_FIELDS:
        tax = tax or scalar_text(contact.get(key))
    values: dict[str, str | None] = {
        "name": scalar_text(contact.get("contact_name")),
        "country_code": country_code(address.get("country"))
        or scalar_text(contact.get("country_code")),
        "currency_code": (scalar_text(contact.get("currency_code")) or "").upper() or None,
        "payment_terms": _terms(contact.get("payment_terms")),
        "tax_id": tax,
    }
    for canon, key in ZOHO_ADDRESS_FIELD.items():
        values[canon] = scalar_text(address.get(key))
    for canon, key in ZOHO_PERSON_FIELD.items():
        values[canon] = scalar_text(person.get(key))
    if values["country_code"]:
        values["country_code"] = values["country_code"].upper()
    return {f: values.get(f) for f in FIELDS}


def concur_values(vendor: Mapping[str, Any]) -> dict[str, str | None]:
    """A Concur vendor (search item or POST/PUT echo) -> canonical values."""
    values = {canon: scalar_text(vendor.get(name)) for canon, name in CONCUR_FIELD.items()}
    values["payment_terms"] = _terms(vendor.get("PaymentTerms"))
    for key in ("country_code", "currency_code"):
        if values[key]:
            values[key] = values[key].upper()  # type: ignore[union-attr]
    return {f: values.get(f) for f in FIELDS}


def fingerprint(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(values), sort_keys=True).encode()).hexdigest()[:16]
