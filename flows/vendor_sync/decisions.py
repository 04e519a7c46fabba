"""What a pass decided (``Plan``) and what it did (``PassReport``).

Plain data with the two pure helpers that build it (a pair's three-way diff, a Concur create
body with its validation problem), so the plan, its execution and ``connector vendors diff``
read the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connector.models import VendorLink
from flows.vendor_sync.state import snapshot_values, vm_flatten
from mappings import vendors as vm


@dataclass
class Pair:
    """A linked (or just matched) Zoho vendor and Concur vendor, and what they need."""

    zoho: vm.ZohoVendor
    concur: vm.ConcurVendor
    diff: vm.FieldDiff
    link_id: int | None = None
    matched_by: str | None = None
    zoho_raw: dict[str, Any] | None = None
    concur_raw: dict[str, Any] | None = None
    snapshots_stale: bool = False

    def describe(self) -> dict[str, Any]:
        conflicted = {c.field for c in self.diff.conflicts}
        changes = [
            {"side": "concur", "field": f, "from": self.concur.values.get(f), "to": v,
             "conflict": f in conflicted}
            for f, v in self.diff.to_concur.items()
        ] + [
            {"side": "zoho", "field": f, "from": self.zoho.values.get(f), "to": v,
             "conflict": f in conflicted}
            for f, v in self.diff.to_zoho.items()
        ]  # fmt: skip
        return {
            "zoho_contact_id": self.zoho.contact_id,
            "concur_vendor": self.concur.ref,
            "name": self.zoho.values.get("name"),
            "matched_by": self.matched_by,
            "to_concur": dict(self.diff.to_concur),
            "to_zoho": dict(self.diff.to_zoho),
            "changes": changes,
            "conflicts": [c.as_dict() for c in self.diff.conflicts],
        }


@dataclass
class ConcurCreate:
    zoho: vm.ZohoVendor
    body: dict[str, Any]
    record_id: int | None = None
    problem: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.body['VendorCode']}/{self.body['AddressCode']}"


@dataclass
class ZohoCreate:
    concur: vm.ConcurVendor
    values: dict[str, str | None]
    record_id: int | None = None


@dataclass
class Plan:
    """Everything a pass decided (what ``connector vendors diff`` prints)."""

    connection_id: int
    rules: vm.VendorRules
    listing: str = "full"
    pairs: list[Pair] = field(default_factory=list)
    create_in_concur: list[ConcurCreate] = field(default_factory=list)
    create_in_zoho: list[ZohoCreate] = field(default_factory=list)
    ambiguous: list[vm.Ambiguity] = field(default_factory=list)
    secondary_addresses: list[str] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    zoho_cursor: str | None = None
    zoho_unlinked: int = 0
    recovered: list[tuple[int, str]] = field(default_factory=list)  # (record id, how)

    @property
    def updates(self) -> list[Pair]:
        return [p for p in self.pairs if not p.diff.empty]

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "master": self.rules.master,
            "listing": self.listing,
            "linked": sorted(
                (
                    {
                        "zoho_contact_id": p.zoho.contact_id,
                        "concur_vendor": p.concur.ref,
                        "name": p.zoho.values.get("name"),
                        "matched_by": p.matched_by,
                        "new": p.link_id is None,
                    }
                    for p in self.pairs
                ),
                key=lambda d: (str(d["name"] or ""), d["zoho_contact_id"]),
            ),
            "would_create_in_concur": [
                {
                    "zoho_contact_id": c.zoho.contact_id,
                    "name": c.zoho.values.get("name"),
                    "vendor": c.ref,
                    "problem": c.problem,
                }
                for c in self.create_in_concur
            ],
            "would_create_in_zoho": [
                {"concur_vendor": c.concur.ref, "name": c.values.get("name")}
                for c in self.create_in_zoho
            ],
            "would_update": [p.describe() for p in self.updates],
            "ambiguous": [a.as_dict() for a in self.ambiguous],
            "secondary_addresses": sorted(self.secondary_addresses),
            "missing": self.missing,
            "skipped": self.skipped,
            "deferred": sorted(self.deferred),
        }


@dataclass
class PassReport:
    """What a pass did; ``status`` is ``ok``, ``busy``, ``partial`` (some writes failed or the
    rate limit stopped it; the next pass continues) or ``dry_run``."""

    status: str
    plan: Plan | None = None
    linked: int = 0
    created_in_concur: int = 0
    created_in_zoho: int = 0
    updated_in_concur: int = 0
    updated_in_zoho: int = 0
    conflicts: int = 0
    failures: list[str] = field(default_factory=list)
    #: Zoho vendors whose create in Concur was refused this pass (they stay unlinked).
    zoho_left: int = 0
    #: Create records whose answer was lost (``posting``, lease given back): the caller hands
    #: them to the pipeline's post step, which searches the target before creating again.
    unresolved: list[int] = field(default_factory=list)

    def summary(self) -> str:
        if self.status == "busy":
            return "busy: another vendor reconciliation holds this connection"
        plan = self.plan
        parts = [
            f"{len(plan.pairs) if plan else 0} linked ({self.linked} new)",
            f"created {self.created_in_concur} in Concur, {self.created_in_zoho} in Zoho",
            f"updated {self.updated_in_concur} in Concur, {self.updated_in_zoho} in Zoho",
            f"{self.conflicts} conflict(s)",
            f"{len(plan.ambiguous) if plan else 0} ambiguous",
        ]
        if self.failures:
            parts.append(f"{len(self.failures)} failure(s): " + "; ".join(self.failures[:3]))
        return f"{self.status}: " + ", ".join(parts)


def make_pair(
    z: vm.ZohoVendor,
    c: vm.ConcurVendor,
    link: VendorLink | None,
    rules: vm.VendorRules,
    *,
    matched_by: str | None,
    zoho_raw: dict[str, Any] | None,
    concur_raw: dict[str, Any] | None,
) -> Pair:
    zbase = snapshot_values(link.zoho_snapshot) if link else None
    cbase = snapshot_values(link.concur_snapshot) if link else None
    diff = vm.three_way(z.values, c.values, zbase, cbase, rules.master)
    if not rules.to_concur:
        diff.to_concur.clear()
    if not rules.to_zoho:
        diff.to_zoho.clear()
    stale = (
        link is None
        or zbase != z.values
        or cbase != c.values
        or (link.zoho_snapshot or {}).get("last_modified_time") != z.last_modified_time
        or bool((link.zoho_snapshot or {}).get("confirm"))
    )
    return Pair(
        z,
        c,
        diff,
        link_id=link.id if link else None,
        matched_by=matched_by or (link.matched_by if link else None),
        zoho_raw=zoho_raw,
        concur_raw=concur_raw,
        snapshots_stale=stale,
    )


def concur_create(z: vm.ZohoVendor, rules: vm.VendorRules) -> ConcurCreate:
    values = dict(z.values)
    if not values.get("country_code") and rules.default_country:
        values["country_code"] = rules.default_country
    body = vm.concur_body(values, z.effective_code(), rules.address_code)
    problem = None
    try:
        vm.validate_concur_vendor(body)
    except Exception as exc:  # marshmallow ValidationError: reported, never sent
        messages = getattr(exc, "messages", str(exc))
        problem = "; ".join(vm_flatten(messages))
    return ConcurCreate(z, body, problem=problem)
