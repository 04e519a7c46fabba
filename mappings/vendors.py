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

This module holds the two sides and the decisions (matching, three-way diff); the field map and
rules section are in :mod:`mappings.vendors_rules`, the canonical values in
:mod:`mappings.vendors_values`, the outbound bodies in :mod:`mappings.vendors_payloads`. The
``X as X`` imports below re-export the names ``flows.vendor_sync`` still reads as ``vm.<name>``
(that module is being split by a parallel change for issue #16); drop them once its parts import
from the modules above.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mappings.vendors_payloads import concur_body as concur_body
from mappings.vendors_payloads import validate_concur_vendor as validate_concur_vendor
from mappings.vendors_payloads import validate_zoho_contact as validate_zoho_contact
from mappings.vendors_payloads import zoho_body as zoho_body
from mappings.vendors_rules import CONCUR_FIELD as CONCUR_FIELD
from mappings.vendors_rules import FIELDS, VendorRules
from mappings.vendors_rules import parse_rules as parse_rules
from mappings.vendors_values import (
    concur_values,
    generated_code,
    normalize_code,
    normalize_name,
    normalize_tax_id,
    scalar_text,
    zoho_code,
    zoho_values,
)
from mappings.vendors_values import fingerprint as fingerprint


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
        scalar_text(raw.get("last_modified_time")),
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
