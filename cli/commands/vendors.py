"""``connector vendors diff ID [--json] [--full]``: what a vendor reconciliation would do.

A dry run of ``flows.vendor_sync.reconcile``: it lists both sides and prints the decisions
(linked, would create on each side, would update field by field, ambiguous) without writing
anything to Zoho, Concur or the database (no lock, no cursor, no audit rows). ``connector sync
ID --flow vendors`` runs the pass for real.
"""

from __future__ import annotations

import json
from typing import Any

import click

from cli.commands import common

_errors = common.friendly_errors


def _show(value: Any) -> str:
    return "(empty)" if value is None else repr(value)


def render(plan: dict[str, Any], name: str) -> str:
    """The human-readable diff."""
    out: list[str] = []
    out.append(
        f"Vendors of connection {plan['connection_id']} ({name}): master {plan['master']}, "
        f"Zoho listing {plan['listing']}. Nothing was changed."
    )
    linked = plan["linked"]
    out.append(f"\nLinked ({len(linked)}, {sum(1 for x in linked if x['new'])} new):")
    for x in linked:
        how = f"matched by {x['matched_by']}" if x["new"] else "linked"
        out.append(f"  {x['name'] or '(no name)'}: Zoho {x['zoho_contact_id']} = Concur "
                   f"{x['concur_vendor']} ({how})")  # fmt: skip
    creates = plan["would_create_in_concur"]
    out.append(f"\nWould create in Concur ({len(creates)}):")
    for x in creates:
        note = f"  NOT SENT: {x['problem']}" if x["problem"] else ""
        out.append(f"  {x['name']}: Zoho {x['zoho_contact_id']} -> Concur {x['vendor']}{note}")
    creates = plan["would_create_in_zoho"]
    out.append(f"\nWould create in Zoho ({len(creates)}):")
    for x in creates:
        out.append(f"  {x['name']}: Concur {x['concur_vendor']} -> new Zoho vendor contact")
    updates = plan["would_update"]
    out.append(f"\nWould update ({len(updates)}):")
    for x in updates:
        out.append(f"  {x['name']} (Zoho {x['zoho_contact_id']} = Concur {x['concur_vendor']})")
        for c in x["changes"]:
            side = "Concur" if c["side"] == "concur" else "Zoho  "
            note = f"  [changed on both sides: {plan['master']} wins]" if c["conflict"] else ""
            out.append(f"    {side} {c['field']}: {_show(c['from'])} -> {_show(c['to'])}{note}")
    amb = plan["ambiguous"]
    out.append(f"\nAmbiguous, left for a person to decide ({len(amb)}):")
    for x in amb:
        who = [f"Zoho {i}" for i in x["zoho_contact_ids"]] + [
            f"Concur {v}" for v in x["concur_vendors"]
        ]
        out.append(f"  {x['reason']}: {x['detail']} ({', '.join(who)})")
    if plan["secondary_addresses"]:
        out.append(
            "\nOther remit-to addresses of linked or listed vendors (not synced): "
            + ", ".join(plan["secondary_addresses"])
        )
    for key, title in (("missing", "Linked but missing"), ("skipped", "Skipped this pass"),
                       ("deferred", "Deferred (rate limit)")):  # fmt: skip
        if plan[key]:
            out.append(f"\n{title} ({len(plan[key])}):")
            out.extend(f"  {json.dumps(x, sort_keys=True)}" for x in plan[key])
    return "\n".join(out)


def register(main: click.Group) -> None:
    @main.group("vendors")
    def vendors_group() -> None:
        """The vendor master across Zoho Books and SAP Concur (docs/vendors.md)."""

    @vendors_group.command("diff")
    @click.argument("connection")
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output")
    @click.option("--full", is_flag=True, help="list every Zoho vendor, not only recent changes")
    @_errors
    def diff(connection: str, as_json: bool, full: bool) -> None:
        """Show what a vendor reconciliation would do, changing nothing."""
        from connector import connections
        from connector.config import get_settings
        from connector.db import get_database
        from connector.logs import configure_logging
        from flows import vendor_sync as vendors

        settings = get_settings()
        configure_logging(settings.log_level)
        db = get_database(settings.database_url)
        ref = connections.resolve(db, connection)
        report = vendors.reconcile(db, settings, ref.id, dry_run=True, full=full or None)
        assert report.plan is not None
        plan = report.plan.as_dict()
        if as_json:
            click.echo(json.dumps(plan, indent=2, sort_keys=True))
        else:
            click.echo(render(plan, ref.name))
