"""The matching plan: every decision of a pass, from what ``listing.gather`` read.

Linked pairs first (the links are the truth), then open creates of an interrupted pass (found
on the target before anything is created again), then matching (code, tax id, name), then the
creates that would not copy an ambiguity or make a duplicate. Only the search for an open
create's target touches the network.
"""

from __future__ import annotations

import datetime as dt

from connector.concur import vendors as concur_vendors
from connector.db import utcnow
from connector.models import SyncRecord
from connector.zoho import contacts as zoho_contacts
from flows.vendor_sync.decisions import Pair, Plan, ZohoCreate, concur_create, make_pair
from flows.vendor_sync.listing import Inputs
from flows.vendor_sync.lock import PASS_OWNER_PREFIX
from flows.vendor_sync.state import ZOHO_TO_CONCUR, Clients, key_of
from mappings import vendors as vm


def _lease_live(record: SyncRecord, now: dt.datetime) -> bool:
    return bool(
        record.lease_owner
        and not record.lease_owner.startswith(PASS_OWNER_PREFIX)
        and record.lease_expires_at is not None
        and record.lease_expires_at > now
    )


def plan_pass(inputs: Inputs, connection_id: int, clients: Clients | None = None) -> Plan:
    """Decide everything from what ``gather`` read. Only ``clients`` searches (for open
    creates whose target the listings do not show) touch the network."""
    rules = inputs.rules
    plan = Plan(connection_id, rules, listing=inputs.listing, zoho_cursor=inputs.zoho_cursor)
    plan.deferred = list(inputs.deferred)
    now = utcnow()
    links = inputs.links
    linked_concur = {
        (vm.normalize_code(x.concur_vendor_code), vm.normalize_code(x.concur_address_code)): x
        for x in links
    }
    chosen, others = vm.primary_addresses(
        inputs.concur_all,
        rules.address_code,
        linked=[(x.concur_vendor_code, x.concur_address_code) for x in links],
    )
    plan.secondary_addresses = [o.ref for o in others]
    all_codes = {c.key[0] for c in inputs.concur_all}

    # Vendors whose create another worker is finishing right now stay out of this pass.
    busy_zoho: set[str] = set()
    busy_concur: set[tuple[str, str]] = set()
    for rec in inputs.intents:
        if _lease_live(rec, now):
            if rec.source_type == ZOHO_TO_CONCUR:
                busy_zoho.add(rec.source_id)
            else:
                busy_concur.add(key_of(rec.source_id))
            plan.skipped.append({"record_id": rec.id, "reason": "create in progress elsewhere"})

    # 1. Linked pairs.
    concur_by_key = {v.key: v for v in inputs.concur_all}
    linked_codes = {k[0] for k in linked_concur}
    linked_zoho: set[str] = set()
    for link in links:
        key = (
            vm.normalize_code(link.concur_vendor_code),
            vm.normalize_code(link.concur_address_code),
        )
        linked_zoho.add(link.zoho_contact_id)
        c = concur_by_key.get(key)
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
        plan.pairs.append(
            make_pair(
                z,
                c,
                link,
                rules,
                matched_by=None,
                zoho_raw=inputs.zoho_raw.get(z.contact_id),
                concur_raw=inputs.concur_raw.get(c.key),
            )
        )

    unlinked_zoho = {
        cid: z for cid, z in inputs.zoho.items() if cid not in linked_zoho and cid not in busy_zoho
    }
    unlinked_concur = {
        c.key: c
        for code, c in chosen.items()
        if code not in linked_codes and c.key not in busy_concur
    }
    if inputs.only_zoho is not None:
        # A single-vendor sync decides only about that vendor.
        unlinked_zoho = {k: v for k, v in unlinked_zoho.items() if k == inputs.only_zoho}

    def take(z: vm.ZohoVendor, c: vm.ConcurVendor, rec: SyncRecord, how: str) -> None:
        plan.pairs.append(_recovered_pair(z, c, rules, inputs))
        unlinked_zoho.pop(z.contact_id, None)
        for k in [k for k in unlinked_concur if k[0] == c.key[0]]:
            unlinked_concur.pop(k)
        plan.recovered.append((rec.id, how))

    # 2. Open creates from an earlier, interrupted pass: find what landed before creating again.
    for rec in inputs.intents:
        if _lease_live(rec, now):
            continue
        if rec.source_type == ZOHO_TO_CONCUR:
            if rec.source_id in linked_zoho:
                plan.recovered.append((rec.id, "already linked"))
                continue
            z = unlinked_zoho.get(rec.source_id)
            key = key_of(rec.stable_ref or "")
            if z is None or key[0] in linked_codes:
                continue
            c = concur_by_key.get(key)
            if c is None and rec.post_attempts > 0 and clients is not None:
                found = concur_vendors.find(clients.concur, key[0], key[1])
                if found:
                    c = vm.concur_vendor(found[0])
                    inputs.concur_raw[c.key] = found[0]
                    inputs.concur_all.append(c)
            if c is not None:
                take(z, c, rec, f"found Concur vendor {c.ref}")
        else:
            key = key_of(rec.source_id)
            if key[0] in linked_codes:
                plan.recovered.append((rec.id, "already linked"))
                continue
            c = unlinked_concur.get(key)
            if c is None:
                continue
            z = _find_zoho_created(rec, c, unlinked_zoho)
            if z is None and rec.post_attempts > 0 and clients is not None:
                z = _search_zoho_created(rec, c, clients, inputs)
            if z is not None:
                take(z, c, rec, f"found Zoho contact {z.contact_id}")

    # 3. Match what is left: code rule, tax id, name + country.
    result = vm.match(list(unlinked_zoho.values()), list(unlinked_concur.values()))
    for z, c, stage in result.pairs:
        plan.pairs.append(
            make_pair(
                z,
                c,
                None,
                rules,
                matched_by=stage,
                zoho_raw=inputs.zoho_raw.get(z.contact_id),
                concur_raw=inputs.concur_raw.get(c.key),
            )
        )
    plan.ambiguous.extend(result.ambiguous)

    # 4. Creates, unless a create would copy an ambiguity or make a duplicate on the target.
    zoho_name_owner: dict[str, set[str]] = {}
    for cid, z in inputs.zoho.items():
        zoho_name_owner.setdefault(z.name_key, set()).add(cid)
    for cid, name in inputs.zoho_names.items():  # deferred vendors count by their listed name
        zoho_name_owner.setdefault(vm.normalize_name(name), set()).add(cid)
    concur_name_owner: dict[str, set[str]] = {}
    for v in inputs.concur_all:
        concur_name_owner.setdefault(v.name_key, set()).add(v.key[0])
    zoho_codes: dict[str, set[str]] = {}
    for cid, z in inputs.zoho.items():
        if z.code:
            zoho_codes.setdefault(z.code, set()).add(cid)

    if rules.to_concur:
        planned_codes: dict[str, list[vm.ZohoVendor]] = {}
        for z in result.zoho_only:
            planned_codes.setdefault(z.effective_code(), []).append(z)
        for code, zs in sorted(planned_codes.items()):
            if len(zs) > 1:
                plan.ambiguous.append(
                    vm.Ambiguity(
                        "same_code_in_zoho",
                        [z.contact_id for z in zs],
                        [],
                        f"{len(zs)} Zoho vendors carry the code {code!r}",
                    )
                )
                continue
            z = zs[0]
            if code in all_codes:
                plan.ambiguous.append(
                    vm.Ambiguity(
                        "code_taken_in_concur",
                        [z.contact_id],
                        sorted(v.ref for v in inputs.concur_all if v.key[0] == code),
                        f"Concur already has vendor code {code!r}, linked or ambiguous elsewhere",
                    )
                )
                continue
            same_name = zoho_name_owner.get(z.name_key, set()) - {z.contact_id}
            if z.name_key and same_name:
                plan.ambiguous.append(
                    vm.Ambiguity(
                        "same_name_in_zoho",
                        [z.contact_id, *sorted(same_name)],
                        [],
                        f"another Zoho vendor is also called {z.values.get('name')!r}",
                    )
                )
                continue
            taken = concur_name_owner.get(z.name_key, set())
            if z.name_key and taken:
                plan.ambiguous.append(
                    vm.Ambiguity(
                        "name_taken_in_concur",
                        [z.contact_id],
                        sorted(taken),
                        f"Concur already has a vendor called {z.values.get('name')!r}",
                    )
                )
                continue
            plan.create_in_concur.append(concur_create(z, rules))

    if rules.to_zoho and inputs.only_zoho is None:
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
                if inputs.deferred:
                    plan.skipped.append(
                        {"concur_vendor": c.ref, "reason": "Zoho listing incomplete this run"}
                    )
                    continue
                owners = zoho_name_owner.get(name_key, set()) if name_key else set()
                if owners:
                    plan.ambiguous.append(
                        vm.Ambiguity(
                            "name_taken_in_zoho",
                            sorted(owners),
                            [c.ref],
                            f"Zoho already has a vendor called {c.values.get('name')!r}",
                        )
                    )
                    continue
                if rules.code_from == "contact_number" and zoho_codes.get(c.key[0]):
                    plan.ambiguous.append(
                        vm.Ambiguity(
                            "code_taken_in_zoho",
                            sorted(zoho_codes[c.key[0]]),
                            [c.ref],
                            f"a Zoho vendor already has contact number {c.code!r}",
                        )
                    )
                    continue
                if not c.values.get("name"):
                    plan.skipped.append({"concur_vendor": c.ref, "reason": "no VendorName"})
                    continue
                plan.create_in_zoho.append(ZohoCreate(c, dict(c.values)))

    planned = {c.zoho.contact_id for c in plan.create_in_concur if not c.problem}
    left = {z.contact_id for z in result.zoho_only} - planned
    left |= {cid for a in plan.ambiguous for cid in a.zoho if cid in unlinked_zoho}
    plan.zoho_unlinked = len(left)
    return plan


def _recovered_pair(
    z: vm.ZohoVendor, c: vm.ConcurVendor, rules: vm.VendorRules, inputs: Inputs
) -> Pair:
    return make_pair(
        z,
        c,
        None,
        rules,
        matched_by="recovered",
        zoho_raw=inputs.zoho_raw.get(z.contact_id),
        concur_raw=inputs.concur_raw.get(c.key),
    )


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
