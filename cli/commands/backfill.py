"""``connector backfill ID --flow F --since DATE [--dry-run] [--json-lines FILE]``.

Thin Click wrapper around ``flows.backfill`` (docs/backfill.md). Celery is imported only to
enqueue, inside the command, so importing this module loads neither Celery nor Flask.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import click

from cli.commands import common
from connector.errors import ConnectorError, QuotaExhaustedError, QuotaReserveError


def _quota_spent(exc: ConnectorError) -> int:
    from flows.backfill_budget import human_duration

    retry_after = getattr(exc, "retry_after", 0.0)
    if isinstance(exc, QuotaReserveError):
        click.echo(
            f"\nstopped at the Zoho daily reserve: {exc}. The cursor is saved: run the same "
            f"command again in {human_duration(retry_after)} to continue; live webhooks and "
            "polls keep posting meanwhile (the reserve is theirs)",
            err=True,
        )
        return 3
    click.echo(
        f"\nstopped: the Zoho daily quota is spent ({exc}); the cursor is saved: run the "
        f"same command again in {human_duration(retry_after)} to continue",
        err=True,
    )
    return 3


_errors = common.friendly_errors(extra=((QuotaExhaustedError, _quota_spent),))


def _summary_line(item: dict[str, Any]) -> str:
    ledger = item.get("ledger")
    known = ""
    if ledger:
        version = "this version" if ledger.get("same_version") else "another version"
        known = f"  [ledger: record {ledger['record_id']} ({version}) {ledger['state']}]"
    text = f"{item.get('result', '?'):11} {item.get('source_id')}  {item.get('source_ref') or ''}"
    body = item.get("target_payload") or {}
    if item.get("flow") == "payables" and body:
        text += f"  -> {body.get('InvoiceAmount')} {body.get('CurrencyCode')}"
    elif item.get("flow") == "expenses" and body:
        lines = body.get("line_items") or []
        text += f"  -> journal, {len(lines)} line(s), {body.get('reference_number', '')}"
    elif item.get("action"):
        text += f"  -> {item['action']} {item.get('target') or ''}"
    text += known
    for problem in item.get("problems") or []:
        text += f"\n{'':12}- {problem}"
    return text


def register(main: click.Group) -> None:
    @main.command("backfill")
    @click.argument("connection")
    @click.option("--flow", required=True, type=click.Choice(["payables", "expenses", "vendors"]))
    @click.option(
        "--since",
        required=True,
        type=click.DateTime(formats=["%Y-%m-%d"]),
        help="documents modified on or after this date (YYYY-MM-DD, UTC)",
    )
    @click.option("--dry-run", is_flag=True, help="fetch, map and validate only; post nothing")
    @click.option(
        "--json-lines",
        "json_lines",
        type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
        help="with --dry-run: write one JSON object per document to FILE ('-' = stdout)",
    )
    @click.option("--page-size", type=int, default=None, help="list page size (default: max)")
    @click.option("--limit", type=int, default=None, help="with --dry-run: stop after N")
    @click.option("--restart", is_flag=True, help="forget the saved cursor and start over")
    @_errors
    def backfill_command(
        connection: str,
        flow: str,
        since: dt.datetime,
        dry_run: bool,
        json_lines: Path | None,
        page_size: int | None,
        limit: int | None,
        restart: bool,
    ) -> None:
        """Bring a connection's documents since DATE through the pipeline (resumable).

        Lists the source in a stable order, creates ledger records (never twice) and enqueues
        them for the worker, saving a cursor after every page: after Ctrl-C or a crash, the
        same command continues where it stopped. --dry-run shows what would be posted, with
        the validation result of each document, and changes nothing.
        """
        from connector import connections
        from connector.config import get_settings
        from connector.db import get_database
        from connector.logs import configure_logging
        from flows import backfill

        settings = get_settings()
        configure_logging(settings.log_level)
        db = get_database(settings.database_url)
        ref = connections.resolve(db, connection)
        day = since.date()
        if json_lines is not None and not dry_run:
            raise click.UsageError("--json-lines goes with --dry-run")
        if dry_run:
            _dry_run(db, settings, ref.id, flow, day, page_size, limit, json_lines)
            return
        _run(db, settings, ref.id, ref.name, flow, day, page_size, restart, backfill)


def _dry_run(
    db: Any,
    settings: Any,
    connection_id: int,
    flow: str,
    day: dt.date,
    page_size: int | None,
    limit: int | None,
    json_lines: Path | None,
) -> None:
    from flows import backfill

    out: TextIO | None = None
    if json_lines is not None:
        out = sys.stdout if str(json_lines) == "-" else json_lines.open("w", encoding="utf-8")
    counts: dict[str, int] = {}
    try:
        for item in backfill.dry_run(
            db, settings, connection_id, flow, day, page_size=page_size, limit=limit
        ):
            counts[item["result"]] = counts.get(item["result"], 0) + 1
            if out is not None:
                out.write(json.dumps(item, sort_keys=True, default=str) + "\n")
                out.flush()
            else:
                click.echo(_summary_line(item))
    finally:
        if out is not None and out is not sys.stdout:
            out.close()
    total = sum(counts.values())
    parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing found"
    click.echo(
        f"dry run: {total} {flow} document(s) since {day.isoformat()}: {parts}. "
        "Nothing was written or posted.",
        err=out is sys.stdout,
    )


def _run(
    db: Any,
    settings: Any,
    connection_id: int,
    name: str,
    flow: str,
    day: dt.date,
    page_size: int | None,
    restart: bool,
    backfill: Any,
) -> None:
    from connector.models import Connection
    from flows.backfill_budget import Budget, Progress, human_duration
    from flows.backfill_cursor import load_cursor

    with db.session() as session:
        company = session.get(Connection, connection_id).concur_company_id or ""
    progress = Progress(flow, day, Budget.from_settings(settings, flow, company), stream=sys.stderr)

    from tasks.pipeline import enqueue_all

    click.echo(f"backfill of {flow} for connection {connection_id} ({name}) since {day}", err=True)
    try:
        outcome = backfill.run(
            db, settings, connection_id, flow, day,
            page_size=page_size, progress=progress, on_page=enqueue_all, restart=restart,
        )  # fmt: skip
    except KeyboardInterrupt:
        cursor = load_cursor(db, connection_id, flow, day)
        click.echo(
            f"\ninterrupted after {cursor.found} {flow} document(s) ({cursor.new} new record(s) "
            "enqueued); run the same command again to continue where it stopped",
            err=True,
        )
        sys.exit(130)
    cursor = outcome.cursor
    if outcome.already_done:
        click.echo(
            f"already complete: {cursor.found} document(s) listed, {cursor.new} record(s) "
            f"created in {cursor.runs} run(s). --restart lists everything again (the ledger "
            "still creates nothing twice).",
            err=True,
        )
        return
    progress.show(final=True)
    seconds, bound = progress.eta()
    click.echo(
        f"done: {cursor.found} {flow} document(s) since {day}, {cursor.new} new record(s) in "
        f"{cursor.runs} run(s); the worker posts them (ETA {human_duration(seconds)} "
        f"at best, {bound}-bound). Follow: connector records list --connection "
        f"{connection_id} --flow {flow}, or /ops.",
        err=True,
    )
