"""``celery -A tasks dead ...``: records the ledger gave up on (state ``dead``).

Registered through Celery's ``celery.commands`` entry point (pyproject.toml), the way Flower
adds ``celery flower``. "Dead" means the ledger's ``dead`` state, not Celery's result backend:
the broker never holds a dead letter here (Redis has no dead-letter queue), the database does.

- ``celery -A tasks dead list [--connection C] [--flow F] [--since 2d] [--json]``
- ``celery -A tasks dead retry ID... | --all [--flow F] [--connection C]``
- ``celery -A tasks dead retry --event ID ... | --all-events``

Webhook events that intake gave up on (``failed`` after ``INBOX_MAX_ATTEMPTS``, issue #12.3)
are listed beside the dead records (not when ``--flow`` narrows the list: an event has no flow
yet), and ``retry --event``/``--all-events`` re-drives them (``connector.inbox.replay_failed``).
- ``celery -A tasks dead purge --older-than DAYS [--flow F] [--connection C] [--dry-run]``

``retry`` is ``connector replay`` limited to dead records; both call ``connector.operations.replay``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click
from celery.bin.base import CeleryCommand, handle_preload_options

from connector.errors import ConnectorError


def _db() -> Any:
    from connector.db import get_database

    return get_database()


def _who() -> str:
    from connector.operations import local_user

    user = local_user()
    return f"celery dead retry ({user})" if user else "celery dead retry"


def _fail(exc: ConnectorError) -> click.ClickException:
    return click.ClickException(f"{type(exc).__name__}: {exc}")


@click.group()
@click.pass_context
@handle_preload_options
def dead(ctx: click.Context) -> None:
    """Dead records (retries exhausted): list, retry, purge."""


@dead.command("list", cls=CeleryCommand)
@click.option("--connection", help="connection id or name")
@click.option("--flow", help="payables, expenses, vendors, ...")
@click.option("--since", help="died within this long (2h, 3d) or since an ISO date")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON document")
@click.pass_context
def dead_list(
    ctx: click.Context,
    connection: str | None,
    flow: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List dead records, newest first."""
    from connector import inbox, operations
    from connector.operations import records as operations_records

    try:
        cutoff = operations.parse_since(since) if since else None
        rows = operations_records.list_records(
            _db(), connection=connection, flow=flow, state="dead", since=cutoff, limit=limit
        )
    except ConnectorError as exc:
        raise _fail(exc) from exc
    # An event has no flow yet, so ``--flow`` leaves the failed webhook events out.
    events = (
        [] if flow else inbox.list_failed(_db(), limit=limit, since=cutoff, connection=connection)
    )
    if as_json:
        click.echo(json.dumps(rows + [{"kind": "webhook_event", **e} for e in events], indent=2))
        return
    _echo_events(events)
    if not rows:
        click.echo("no dead records")
        return
    click.echo(
        f"{'id':>8}  {'connection':16} {'flow':10} {'step':8} {'source':28} {'died':20} error"
    )
    for r in rows:
        source = (r["source_ref"] or r["source_id"])[:28]
        error = f"{r['last_error_code'] or '-'}: {(r['last_error_message'] or '')[:80]}"
        click.echo(
            f"{r['id']:>8}  {(r['connection'] or '')[:16]:16} {r['flow'][:10]:10} "
            f"{r['step']:8} {source:28} {r['updated_at'] or '':20} {error}"
        )
    click.echo(f"{len(rows)} dead record(s); retry with: celery -A tasks dead retry ID... | --all")


def _echo_events(events: list[dict[str, Any]]) -> None:
    if not events:
        return
    click.echo(f"{'event':>8}  {'source':8} {'type':24} {'connection':10} {'tries':>5}  reason")
    for e in events:
        click.echo(
            f"{e['id']:>8}  {e['source']:8} {(e['event_type'] or '-')[:24]:24} "
            f"{e['connection_id'] or 'unrouted'!s:10} {e['attempts']:>5}  {(e['reason'] or '')[:100]}"
        )
    click.echo(
        f"{len(events)} failed webhook event(s); retry with: "
        "celery -A tasks dead retry --event ID... | --all-events"
    )


@dead.command("retry", cls=CeleryCommand)
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="every dead record (narrow with --flow)")
@click.option("--flow")
@click.option("--connection", help="connection id or name")
@click.option("--event", "event_ids", multiple=True, type=int, help="a failed webhook event id")
@click.option("--all-events", is_flag=True, help="every failed webhook event")
@click.pass_context
def dead_retry(
    ctx: click.Context,
    ids: tuple[int, ...],
    all_: bool,
    flow: str | None,
    connection: str | None,
    event_ids: tuple[int, ...],
    all_events: bool,
) -> None:
    """Restart dead records at the step that failed (a posted record is never re-posted), or
    re-drive failed webhook events (``--event``/``--all-events``)."""
    from connector.operations import replay as operations_replay
    from tasks.pipeline import enqueue

    if event_ids or all_events:
        if ids or all_ or (event_ids and all_events):
            raise click.UsageError("give --event ids or --all-events, without record ids")
        _retry_events(ctx, list(event_ids) or None)
        return
    if bool(ids) == all_:
        raise click.UsageError("give record ids or --all (not both)")
    try:
        report = operations_replay.replay_dead(
            _db(), ids, flow=flow, connection=connection, requested_by=_who(), enqueue=enqueue
        )
    except ConnectorError as exc:
        raise _fail(exc) from exc
    for o in report.outcomes:
        click.echo(o.line())
    click.echo(f"{len(report.queued)} record(s) re-queued")
    if not report.queued and ids:
        ctx.exit(1)


def _retry_events(ctx: click.Context, event_ids: list[int] | None) -> None:
    from connector import inbox
    from tasks.intake import enqueue_event

    done = inbox.replay_failed(_db(), event_ids, requested_by=_who(), enqueue_event=enqueue_event)
    for event_id in done:
        click.echo(f"{event_id:>8}  event re-queued")
    click.echo(f"{len(done)} webhook event(s) re-queued")
    if event_ids and len(done) < len(event_ids):
        missing = sorted(set(event_ids) - set(done))
        click.echo(f"not failed (left alone): {', '.join(map(str, missing))}")
        ctx.exit(1)


@dead.command("purge", cls=CeleryCommand)
@click.option("--older-than", "days", type=float, required=True, help="days since it died")
@click.option("--flow")
@click.option("--connection", help="connection id or name")
@click.option("--dry-run", is_flag=True, help="show what would go, delete nothing")
@click.pass_context
def dead_purge(
    ctx: click.Context,
    days: float,
    flow: str | None,
    connection: str | None,
    dry_run: bool,
) -> None:
    """Delete dead records older than DAYS; one summary audit row per record stays."""
    from connector.operations import replay as operations_replay

    if days < 0:
        raise click.BadParameter("must be zero or more", param_hint="--older-than")
    try:
        ids = operations_replay.purge_dead(
            _db(),
            older_than=dt.timedelta(days=days),
            flow=flow,
            connection=connection,
            dry_run=dry_run,
        )
    except ConnectorError as exc:
        raise _fail(exc) from exc
    verb = "would purge" if dry_run else "purged"
    click.echo(
        f"{verb} {len(ids)} dead record(s)" + (f": {', '.join(map(str, ids))}" if ids else "")
    )
