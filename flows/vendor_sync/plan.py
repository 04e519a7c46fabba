"""The matching plan: every decision of a pass, from what ``listing.gather`` read.

``plan_pass`` runs named steps in an order that keeps "no duplicates" true: vendors whose create
another worker is finishing stay out; linked pairs first (the links are the truth); then open
creates of an interrupted pass (found on the target before anything is created again); then
matching what is left (code, tax id, name); then the creates that would neither copy an
ambiguity nor make a duplicate on the target. Only the search for an open create's target
touches the network.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from connector.concur import vendors as concur_vendors
from connector.db import utcnow
from connector.models import SyncRecord, VendorLink
from connector.zoho import contacts as zoho_contacts
from flows.vendor_sync.decisions import Pair, Plan, ZohoCreate, concur_create, make_pair
from flows.vendor_sync.listing import Inputs
from flows.vendor_sync.lock import PASS_OWNER_PREFIX
from flows.vendor_sync.state import ZOHO_TO_CONCUR, Clients, key_of
from mappings import vendors as vm

ConcurKey = tuple[str, str]


@dataclass
class _Scope:
    """The working sets of one planning run: what is linked, and what is still free to match
    or create (each step takes vendors out of the ``unlinked_*`` sets)."""

    concur_by_key: dict[ConcurKey, vm.ConcurVendor]
    linked_codes: set[str]
    linked_zoho: set[str] = field(default_factory=set)
    unlinked_zoho: dict[str, vm.ZohoVendor] = field(default_factory=dict)
    unlinked_concur: dict[ConcurKey, vm.ConcurVendor] = field(default_factory=dict)


@dataclass
class _Owners:
    """Who already holds a name or a code on either side (a create must not duplicate it)."""

    zoho_names: dict[str, set[str]]
    concur_names: dict[str, set[str]]
    zoho_codes: dict[str, set[str]]
    concur_codes: set[str]


def plan_pass(inputs: Inputs, connection_id: int, clients: Clients | None = None) -> Plan:
    """Decide everything from what ``gather`` read. Only ``clients`` searches (for open
    creates whose target the listings do not show) touch the network."""
    rules = inputs.rules
    plan = Plan(connection_id, rules, listing=inputs.listing, zoho_cursor=inputs.zoho_cursor)
    plan.deferred = list(inputs.deferred)
    now = utcnow()
    chosen, others = vm.primary_addresses(
        inputs.concur_all,
        rules.address_code,
        linked=[(x.concur_vendor_code, x.concur_address_code) for x in inputs.links],
    )
    plan.secondary_addresses = [o.ref for o in others]
    owners = _owners_of(inputs)  # every Concur code, including those an open create finds later
    busy_zoho, busy_concur = _creates_in_progress(plan, inputs, now)
    scope = _linked_pairs(plan, inputs)
    scope.unlinked_zoho = {
        cid: z
        for cid, z in inputs.zoho.items()
        if cid not in scope.linked_zoho and cid not in busy_zoho
    }
    scope.unlinked_concur = {
        c.key: c
        for code, c in chosen.items()
        if code not in scope.linked_codes and c.key not in busy_concur
    }
    if inputs.only_zoho is not None:
        # A single-vendor sync decides only about that vendor.
        scope.unlinked_zoho = {
            k: v for k, v in scope.unlinked_zoho.items() if k == inputs.only_zoho
        }
    _recover_open_creates(plan, inputs, scope, clients, now)
    result = _match_rest(plan, inputs, scope)
    _owners_add_listed(owners, inputs)
    if rules.to_concur:
        _plan_concur_creates(plan, inputs, result, owners)
    if rules.to_zoho and inputs.only_zoho is None:
        _plan_zoho_creates(plan, inputs, result, owners)
    plan.zoho_unlinked = _left_unlinked(plan, result, scope)
    return plan


# --------------------------------------------------------------------------- the steps


def _lease_live(record: SyncRecord, now: dt.datetime) -> bool:
    return bool(
        record.lease_owner
        and not record.lease_owner.startswith(PASS_OWNER_PREFIX)
        and record.lease_expires_at is not None
        and record.lease_expires_at > now
    )


def _creates_in_progress(
    plan: Plan, inputs: Inputs, now: dt.datetime
) -> tuple[set[str], set[ConcurKey]]:
    """Vendors whose create another worker is finishing right now stay out of this pass."""
    busy_zoho: set[str] = set()
    busy_concur: set[ConcurKey] = set()
    for rec in inputs.intents:
        if _lease_live(rec, now):
            if rec.source_type == ZOHO_TO_CONCUR:
                busy_zoho.add(rec.source_id)
            else:
                busy_concur.add(key_of(rec.source_id))
            plan.skipped.append({"record_id": rec.id, "reason": "create in progress elsewhere"})
    return busy_zoho, busy_concur


def _link_key(link: VendorLink) -> ConcurKey:
    return vm.normalize_code(link.concur_vendor_code), vm.normalize_code(link.concur_address_code)


def _linked_pairs(plan: Plan, inputs: Inputs) -> _Scope:
    """Step 1: the linked pairs (with their diffs), and links whose vendor is gone."""
    scope = _Scope(
        concur_by_key={v.key: v for v in inputs.concur_all},
        linked_codes={_link_key(x)[0] for x in inputs.links},
    )
    for link in inputs.links:
        scope.linked_zoho.add(link.zoho_contact_id)
        c = scope.concur_by_key.get(_link_key(link))
        z = inputs.zoho.get(link.zoho_contact_id)
        if inputs.only_zoho is not None and link.zoho_contact_id != inputs.only_zoho:
            continue
        if link.zoho_contact_id in inputs.deferred:
            continue
        if c is None:
            plan.missing.append(
                {
                    "side": "concur",
                    "zoho_contact_id": link.zoho_contact_id,
                    "concur_vendor": f"{link.concur_vendor_code}/{link.concur_address_code}",
                }
            )
            continue
        if z is None:
            if inputs.listing == "full":
                plan.missing.append(
                    {
                        "side": "zoho",
                        "zoho_contact_id": link.zoho_contact_id,
                        "concur_vendor": c.ref,
                    }
                )
            continue
        plan.pairs.append(_new_pair(z, c, inputs, link=link))
    return scope


def _recover_open_creates(
    plan: Plan, inputs: Inputs, scope: _Scope, clients: Clients | None, now: dt.datetime
) -> None:
    """Step 2: open creates from an earlier, interrupted pass: find what landed before
    creating again (in the listings, or by searching the target once a POST was tried)."""

    def take(z: vm.ZohoVendor, c: vm.ConcurVendor, rec: SyncRecord, how: str) -> None:
        plan.pairs.append(_new_pair(z, c, inputs, matched_by="recovered"))
        scope.unlinked_zoho.pop(z.contact_id, None)
        for k in [k for k in scope.unlinked_concur if k[0] == c.key[0]]:
            scope.unlinked_concur.pop(k)
        plan.recovered.append((rec.id, how))

    for rec in inputs.intents:
        if _lease_live(rec, now):
            continue
        if rec.source_type == ZOHO_TO_CONCUR:
            if rec.source_id in scope.linked_zoho:
                plan.recovered.append((rec.id, "already linked"))
                continue
            z = scope.unlinked_zoho.get(rec.source_id)
            key = key_of(rec.stable_ref or "")
            if z is None or key[0] in scope.linked_codes:
                continue
            c = scope.concur_by_key.get(key)
            if c is None and rec.post_attempts > 0 and clients is not None:
                c = _search_concur_created(key, clients, inputs)
            if c is not None:
                take(z, c, rec, f"found Concur vendor {c.ref}")
        else:
            key = key_of(rec.source_id)
            if key[0] in scope.linked_codes:
                plan.recovered.append((rec.id, "already linked"))
                continue
            c = scope.unlinked_concur.get(key)
            if c is None:
                continue
            z = _find_zoho_created(rec, c, scope.unlinked_zoho)
            if z is None and rec.post_attempts > 0 and clients is not None:
                z = _search_zoho_created(rec, c, clients, inputs)
            if z is not None:
                take(z, c, rec, f"found Zoho contact {z.contact_id}")


def _match_rest(plan: Plan, inputs: Inputs, scope: _Scope) -> vm.MatchResult:
    """Step 3: match what is left (code rule, tax id, name + country)."""
    result = vm.match(list(scope.unlinked_zoho.values()), list(scope.unlinked_concur.values()))
    for z, c, stage in result.pairs:
        plan.pairs.append(_new_pair(z, c, inputs, matched_by=stage))
    plan.ambiguous.extend(result.ambiguous)
    return result


def _plan_concur_creates(
    plan: Plan, inputs: Inputs, result: vm.MatchResult, owners: _Owners
) -> None:
    """Step 4a: Zoho vendors to create in Concur, unless the create would copy an ambiguity
    (two Zoho vendors with one code or one name) or take a code or name Concur has."""
    planned_codes: dict[str, list[vm.ZohoVendor]] = {}
    for z in result.zoho_only:
        planned_codes.setdefault(z.effective_code(), []).append(z)
    for code, zs in sorted(planned_codes.items()):
        z = zs[0]
        same_name = owners.zoho_names.get(z.name_key, set()) - {z.contact_id}
        taken = owners.concur_names.get(z.name_key, set())
        if len(zs) > 1:
            problem = vm.Ambiguity(
                "same_code_in_zoho",
                [z.contact_id for z in zs],
                [],
                f"{len(zs)} Zoho vendors carry the code {code!r}",
            )
        elif code in owners.concur_codes:
            problem = vm.Ambiguity(
                "code_taken_in_concur",
                [z.contact_id],
                sorted(v.ref for v in inputs.concur_all if v.key[0] == code),
                f"Concur already has vendor code {code!r}, linked or ambiguous elsewhere",
            )
        elif z.name_key and same_name:
            problem = vm.Ambiguity(
                "same_name_in_zoho",
                [z.contact_id, *sorted(same_name)],
                [],
                f"another Zoho vendor is also called {z.values.get('name')!r}",
            )
        elif z.name_key and taken:
            problem = vm.Ambiguity(
                "name_taken_in_concur",
                [z.contact_id],
                sorted(taken),
                f"Concur already has a vendor called {z.values.get('name')!r}",
            )
        else:
            plan.create_in_concur.append(concur_create(z, inputs.rules))
            continue
        plan.ambiguous.append(problem)


def _plan_zoho_creates(plan: Plan, inputs: Inputs, result: vm.MatchResult, owners: _Owners) -> None:
    """Step 4b: Concur vendors to create in Zoho, unless the create would copy an ambiguity
    or take a name or contact number Zoho has (or the Zoho listing is incomplete this run)."""
    by_name: dict[str, list[vm.ConcurVendor]] = {}
    for c in result.concur_only:
        by_name.setdefault(c.name_key, []).append(c)
    for name_key, cs in sorted(by_name.items()):
        if name_key and len(cs) > 1:
            plan.ambiguous.append(
                vm.Ambiguity(
                    "same_name_in_concur",
                    [],
                    [c.ref for c in cs],
                    f"{len(cs)} Concur vendors are called {cs[0].values.get('name')!r}",
                )
            )
            continue
        for c in cs:
            _plan_zoho_create(plan, inputs, c, owners)


def _plan_zoho_create(plan: Plan, inputs: Inputs, c: vm.ConcurVendor, owners: _Owners) -> None:
    name_key = c.name_key
    if inputs.deferred:
        plan.skipped.append({"concur_vendor": c.ref, "reason": "Zoho listing incomplete this run"})
        return
    named = owners.zoho_names.get(name_key, set()) if name_key else set()
    if named:
        plan.ambiguous.append(
            vm.Ambiguity(
                "name_taken_in_zoho",
                sorted(named),
                [c.ref],
                f"Zoho already has a vendor called {c.values.get('name')!r}",
            )
        )
        return
    if inputs.rules.code_from == "contact_number" and owners.zoho_codes.get(c.key[0]):
        plan.ambiguous.append(
            vm.Ambiguity(
                "code_taken_in_zoho",
                sorted(owners.zoho_codes[c.key[0]]),
                [c.ref],
                f"a Zoho vendor already has contact number {c.code!r}",
            )
        )
        return
    if not c.values.get("name"):
        plan.skipped.append({"concur_vendor": c.ref, "reason": "no VendorName"})
        return
    plan.create_in_zoho.append(ZohoCreate(c, dict(c.values)))


def _left_unlinked(plan: Plan, result: vm.MatchResult, scope: _Scope) -> int:
    """How many Zoho vendors this pass leaves without a link (a full listing comes next)."""
    planned = {c.zoho.contact_id for c in plan.create_in_concur if not c.problem}
    left = {z.contact_id for z in result.zoho_only} - planned
    left |= {cid for a in plan.ambiguous for cid in a.zoho if cid in scope.unlinked_zoho}
    return len(left)


# --------------------------------------------------------------------------- helpers


def _owners_of(inputs: Inputs) -> _Owners:
    """The Concur codes as listed before any open create is searched for (as before)."""
    return _Owners({}, {}, {}, {c.key[0] for c in inputs.concur_all})


def _owners_add_listed(owners: _Owners, inputs: Inputs) -> None:
    """Names and codes after recovery (a searched-for vendor counts as listed)."""
    for cid, z in inputs.zoho.items():
        owners.zoho_names.setdefault(z.name_key, set()).add(cid)
    for cid, name in inputs.zoho_names.items():  # deferred vendors count by their listed name
        owners.zoho_names.setdefault(vm.normalize_name(name), set()).add(cid)
    for v in inputs.concur_all:
        owners.concur_names.setdefault(v.name_key, set()).add(v.key[0])
    for cid, z in inputs.zoho.items():
        if z.code:
            owners.zoho_codes.setdefault(z.code, set()).add(cid)


def _new_pair(
    z: vm.ZohoVendor,
    c: vm.ConcurVendor,
    inputs: Inputs,
    *,
    link: VendorLink | None = None,
    matched_by: str | None = None,
) -> Pair:
    return make_pair(
        z,
        c,
        link,
        inputs.rules,
        matched_by=matched_by,
        zoho_raw=inputs.zoho_raw.get(z.contact_id),
        concur_raw=inputs.concur_raw.get(c.key),
    )


def _search_concur_created(
    key: ConcurKey, clients: Clients, inputs: Inputs
) -> vm.ConcurVendor | None:
    """The explicit search-before-create: the Concur vendor an open create would make."""
    found = concur_vendors.find(clients.concur, key[0], key[1])
    if not found:
        return None
    c = vm.concur_vendor(found[0])
    inputs.concur_raw[c.key] = found[0]
    inputs.concur_all.append(c)
    return c


def _find_zoho_created(
    rec: SyncRecord, c: vm.ConcurVendor, unlinked: dict[str, vm.ZohoVendor]
) -> vm.ZohoVendor | None:
    name = vm.normalize_name(rec.stable_ref or c.values.get("name"))
    for z in unlinked.values():
        if (z.code and z.code == c.key[0]) or (name and z.name_key == name):
            return z
    return None


def _search_zoho_created(
    rec: SyncRecord, c: vm.ConcurVendor, clients: Clients, inputs: Inputs
) -> vm.ZohoVendor | None:
    """The explicit search-before-create: Zoho contacts named like the open create."""
    name = rec.stable_ref or c.values.get("name") or ""
    if not name:
        return None
    for item in zoho_contacts.find_by_name(clients.zoho, name):
        cid = str(item.get("contact_id"))
        if any(link.zoho_contact_id == cid for link in inputs.links):
            continue
        detail = zoho_contacts.get(clients.zoho, cid)
        inputs.zoho_raw[cid] = detail
        z = vm.zoho_vendor(detail, inputs.rules)
        inputs.zoho[cid] = z
        return z
    return None
