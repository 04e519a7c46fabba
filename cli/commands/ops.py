"""Operator commands: ``connector replay`` and ``connector records list|show``.

Thin Click wrappers around ``connector.operations_*``. Celery is imported only inside ``replay``
(to enqueue), so importing this module loads neither Celery nor Flask (tests/test_layering.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cli.commands import common
from connector.operations import STATE_ORDER, local_user
from flows import FLOWS

REPLAY_STATES = ("dead", "failed", "waiting", "needs_reauth")
LIST_STATES = STATE_ORDER


_errors = common.friendly_errors


def _db() -> Any:
    return common.context()[1]


def _who() -> str:
    user = local_user()
    return f"cli:{user}" if user else "cli"


# --------------------------------------------------------------------------- replay


@click.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option(
    "--state",
    type=click.Choice([*REPLAY_STATES, "posted"]),
    help="replay every record in this state (posted only with --verify)",
)
@click.option("--connection", help="connection id or name")
@click.option("--flow", help="payables, expenses, vendors, ...")
@click.option("--since", help="only records that changed within this long (2h, 3d) or since a date")
@click.option("--limit", type=int, default=None, help="at most this many records")
@click.option(
    "--verify",
    is_flag=True,
    help="for posted records: check the target still has them (never posts)",
)
@click.option("--json", "as_json", is_flag=True)
@_errors
def replay_command(
    ids: tuple[int, ...],
    state: str | None,
    connection: str | None,
    flow: str | None,
    since: str | None,
    limit: int | None,
    verify: bool,
    as_json: bool,
) -> None:
    """Restart failed, dead or waiting records at the step that failed.

    Give record IDs, or --state (with --connection/--flow/--since to narrow it). Each record
    resumes at its failed step with a fresh attempt budget, and "replay requested by" is added
    to its audit trail. A posted record is never re-posted; with --verify the target is asked
    whether it still has it and the answer (found / missing) is reported and audited.
    """
    from connector import operations
    from connector.operations import replay as operations_replay

    if not ids and not state:
        raise click.UsageError("give record IDs or --state")
    if ids and state:
        raise click.UsageError("give record IDs or --state, not both")
    if state == "posted" and not verify:
        raise click.UsageError(
            "--state posted only makes sense with --verify (posted records are never re-posted)"
        )
    db = _db()
    from tasks.pipeline import enqueue

    report = operations_replay.replay(
        db,
        list(ids) or None,
        state=state,
        connection=connection,
        flow=flow,
        since=operations.parse_since(since) if since else None,
        requested_by=_who(),
        enqueue=enqueue,
        verify=verify,
        registry=FLOWS,
        allowed_states=set(REPLAY_STATES) if ids else {state or ""},
        limit=limit,
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for o in report.outcomes:
            click.echo(o.line())
        click.echo(f"replay: {report.counts_text() or 'nothing'}")
    if report.count("error"):
        sys.exit(1)


# --------------------------------------------------------------------------- records


@click.group("records")
def records_group() -> None:
    """The ledger: what happened to each record."""


@records_group.command("list")
@click.option("--connection", help="connection id or name")
@click.option("--flow")
@click.option("--state", type=click.Choice(LIST_STATES), multiple=True, help="repeatable")
@click.option("--since", help="changed within this long (2h, 3d) or since an ISO date")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_errors
def records_list(
    connection: str | None,
    flow: str | None,
    state: tuple[str, ...],
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Records, most recently changed first."""
    from connector import operations
    from connector.operations import records as operations_records

    rows = operations_records.list_records(
        _db(),
        connection=connection,
        flow=flow,
        state=list(state) or None,
        since=operations.parse_since(since) if since else None,
        limit=limit,
    )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no records")
        return
    click.echo(
        f"{'id':>8}  {'connection':16} {'flow':10} {'state':12} {'step':8} {'source':24} "
        f"{'target':20} error"
    )
    for r in rows:
        source = (r["source_ref"] or r["source_id"])[:24]
        error = (
            f"{r['last_error_code']}: {(r['last_error_message'] or '')[:60]}"
            if r["last_error_code"]
            else ""
        )
        click.echo(
            f"{r['id']:>8}  {(r['connection'] or '')[:16]:16} {r['flow'][:10]:10} "
            f"{r['state']:12} {r['step']:8} {source:24} {(r['target_id'] or '-')[:20]:20} {error}"
        )


@records_group.command("show")
@click.argument("record_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@_errors
def records_show(record_id: int, as_json: bool) -> None:
    """One record: state, last error and fix hint, target, payloads and its audit trail."""
    from connector.operations import records as operations_records

    settings, db = common.context()
    info = operations_records.show_record(db, record_id, sandbox_url=settings.sandbox_url)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"record {info['id']}  {info['flow']}  connection {info['connection']}")
    click.echo(
        f"  source   {info['source']} {info['source_ref'] or ''} (id {info['source_id']}, "
        f"version {info['source_version']})"
    )
    click.echo(f"  state    {info['state']} (step {info['step']}, attempts {info['attempts']}, "
               f"post attempts {info['post_attempts']})")  # fmt: skip
    if info["last_error_code"] or info["last_error_message"]:
        click.echo(f"  error    {info['last_error_code']}: {info['last_error_message']}")
    if info["hint"]:
        click.echo(f"  fix      {info['hint']}")
    target = info["target_id"] or "-"
    if info["target_url"]:
        target += f"  {info['target_url']}"
    click.echo(f"  target   {info['target_system']} {target}")
    click.echo(f"  stable reference {info['stable_ref'] or '-'}")
    click.echo("audit trail:")
    for a in info["audit"]:
        move = f"{a['from_state'] or ''}->{a['to_state']}" if a["to_state"] else ""
        extra = " ".join(x for x in (a["http"], a["error_class"]) if x)
        click.echo(
            f"  {a['at']}  {a['step']:8} {a['outcome']:10} {move:22} {a['message'] or ''}"
            + (f"  [{extra}]" if extra else "")
        )
    for label in ("source_payload", "mapped_payload"):
        click.echo(f"{label.replace('_', ' ')}:")
        click.echo(json.dumps(info[label], indent=2, default=str) if info[label] else "  (none)")


def register(main: click.Group) -> None:
    main.add_command(replay_command)
    main.add_command(records_group)
