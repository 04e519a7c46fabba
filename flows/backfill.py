"""Backfill: bring a connection's history since a date through the pipeline, resumably.

``connector backfill ID --flow payables|expenses|vendors --since DATE`` lists the source the way
the flow's polling pass does (same list endpoint, same filter, same ``ensure_record``), but from
an explicit ``since`` and page by page in a stable order (oldest created first), so that:

- **Resumable.** Each page's ledger records and the backfill cursor are written in one
  transaction; the cursor lives in ``sync_cursors`` under its own key per (connection, flow,
  since) (``flows.backfill_cursor.cursor_key``). A restart after Ctrl-C or a crash re-reads the page before the
  cursor (documents deleted meanwhile shift later ones back by up to a page) and goes on.
- **No duplicates.** Records are made with ``ledger.get_or_create`` through each flow's
  ``ensure_record``: re-reading a page finds the records it made, and a record a webhook or
  the poll made first is found, not copied. Posting is the pipeline's, with its own guarantees.
- **Dry run.** ``--dry-run`` runs fetch -> map -> validate in this process for each document,
  read-only (no ledger writes, no cursor, no audit rows, nothing posted), and reports what would
  be posted with the validation result (:func:`dry_run`).
- **ETA** from the rate limits and the Zoho daily quota (``flows.backfill_budget``,
  docs/backfill.md).

This module is the runner: it pages any source, records each page with its cursor and paces
itself by the quota. What a flow's history looks like is its source's business
(``flows.backfill_payables``, ``flows.backfill_expenses``, ``flows.backfill_vendors``, all
on ``flows.backfill_source.Source``): a new flow's backfill is one source and one line in
:data:`SOURCES`.

Nothing here imports Flask or Celery; the CLI (``cli/commands/backfill.py``) enqueues.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from connector import connections
from connector.config import Settings
from connector.db import Database
from connector.errors import ConfigurationError, ConnectorError
from connector.limits import quota as quota_mod
from connector.models import RecordState, Step
from flows.backfill_budget import COSTS, MAX_PAGE, Progress, Quota, check_pace
from flows.backfill_cursor import Cursor, load_cursor, reset_cursor, save_cursor_in
from flows.backfill_expenses import ExpensesSource
from flows.backfill_payables import PayablesSource
from flows.backfill_source import Page, Source
from flows.backfill_vendors import VendorsSource

FLOWS = ("payables", "expenses", "vendors")

SOURCES: dict[str, type[Source]] = {
    "payables": PayablesSource,
    "expenses": ExpensesSource,
    "vendors": VendorsSource,
}


def make_source(
    db: Database,
    settings: Settings,
    connection_id: int,
    flow: str,
    since: dt.date,
    *,
    page_size: int | None = None,
    quota: Quota | None = None,
    dry_run: bool = False,
) -> Source:
    if flow not in SOURCES:
        raise ConfigurationError(f"unknown flow {flow!r}: one of {', '.join(FLOWS)}")
    from mappings.rules import register_flow_sections

    register_flow_sections()
    limit = MAX_PAGE[COSTS[flow].source]
    size = min(max(1, page_size or limit), limit)
    return SOURCES[flow](
        db, settings, connection_id, since, size, quota=quota or Quota(), dry_run=dry_run
    )


# =========================================================================== the run


@dataclass
class Outcome:
    cursor: Cursor
    enqueue: list[tuple[int, Step]] = field(default_factory=list)
    already_done: bool = False


def _with_retry(fn: Callable[[], Page], progress: Progress | None,
                sleep: Callable[[float], None]) -> Page:  # fmt: skip
    """Call ``fn``; on the shared limiter's (or the vendor's) "wait N s", wait and call again.

    A spent daily quota is not waited out here: the error reaches the caller with the cursor
    saved, and the run is resumed after the reset.
    """
    from connector.errors import QuotaExhaustedError, RateLimitedError

    while True:
        try:
            return fn()
        except QuotaExhaustedError:
            raise
        except RateLimitedError as exc:
            wait = min(max(exc.retry_after, 0.05), 120.0)
            if progress is not None:
                progress.waiting = f"rate limit: waiting {wait:.1f}s"
                progress.show()
            sleep(wait)


def run(
    db: Database,
    settings: Settings,
    connection_id: int,
    flow: str,
    since: dt.date,
    *,
    page_size: int | None = None,
    progress: Progress | None = None,
    on_page: Callable[[list[tuple[int, Step]]], None] | None = None,
    restart: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Enumerate and record, page by page, from the saved cursor; ``on_page`` gets each
    committed page's ``(record_id, step)`` pairs to enqueue (new records, and records of a
    re-read page still waiting for their first step)."""
    quota = progress.budget.quota if progress is not None else Quota()
    if restart:
        reset_cursor(db, connection_id, flow, since)
    cursor = load_cursor(db, connection_id, flow, since)
    if cursor.done:
        return Outcome(cursor, already_done=True)
    source = make_source(db, settings, connection_id, flow, since, page_size=page_size,
                         quota=quota)  # fmt: skip
    if progress is not None:
        progress.page_size = source.page_size
        progress.found, progress.new = cursor.found, cursor.new
    cursor.runs += 1
    part = cursor.part
    resume_at = cursor.position
    # Stopped inside a part: re-read the page before where it stopped (see ``overlap``).
    position = source.overlap(resume_at) if resume_at is not None else source.first_position
    first = True
    bulk = quota_mod.bulk("the backfill")  # its Zoho calls stop at the daily reserve
    bulk.__enter__()
    try:
        if flow == "expenses":  # the list is Concur's; one cheap Zoho read shows the quota
            from contextlib import suppress

            with suppress(Exception):
                source.zoho().request("GET", "/settings/currencies")
        try:
            organization_id = source.zoho().organization_id or ""
        except ConnectorError:  # an expenses backfill lists Concur; pacing needs Zoho's org
            organization_id = ""
        if progress is not None and organization_id:
            progress.budget.seed(
                connections.quota_store(settings).get(organization_id), progress.clock
            )
        while part < len(source.parts):
            if organization_id:
                check_pace(db, settings, connection_id, flow, organization_id, source.page_size)
            page = _with_retry(lambda: source.page(part, position), progress, sleep)  # noqa: B023
            batch: list[tuple[int, Step]] = []
            created = 0
            with db.session() as session:
                for item in page.items:
                    made = source.ensure(session, part, item)
                    if made is None:
                        continue
                    record, is_new = made
                    if is_new:
                        created += 1
                        batch.append((record.id, Step.FETCH))
                    elif record.state == RecordState.RECEIVED.value and record.lease_owner is None:
                        batch.append((record.id, Step(record.step)))
                seen_before = 0
                if first and resume_at is not None:
                    seen_before = _overlap_count(source, page, position, resume_at)
                cursor.found += len(page.items) - seen_before
                cursor.new += created
                if page.more:
                    cursor.position = page.next_position
                else:
                    cursor.part = part + 1
                    cursor.position = None
                cursor.done = cursor.part >= len(source.parts)
                save_cursor_in(session, connection_id, flow, since, cursor)
            if on_page is not None and batch:
                on_page(batch)
            if progress is not None:
                progress.advance(source.parts[part], _page_number(source, position),
                                 cursor.found, cursor.new, len(page.items),
                                 more=not cursor.done)  # fmt: skip
            first = False
            part = cursor.part
            position = source.first_position if cursor.position is None else cursor.position
    finally:
        bulk.__exit__(None, None, None)
        source.close()
    return Outcome(cursor)


def _overlap_count(source: Source, page: Page, position: int, resume_at: int) -> int:
    """Items of the re-read page that a previous run already counted."""
    if source.first_position == 1:  # Zoho: positions are page numbers
        return len(page.items) if position < resume_at else 0
    return min(len(page.items), max(0, resume_at - position))  # Concur: offsets


def _page_number(source: Source, position: int) -> int:
    if source.first_position == 1:
        return position
    return position // max(1, source.page_size) + 1


def dry_run(
    db: Database,
    settings: Settings,
    connection_id: int,
    flow: str,
    since: dt.date,
    *,
    page_size: int | None = None,
    limit: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """Each document since ``since``: what would be posted and its validation result.

    Read-only: the list and each document are read (fetch), mapped and validated in this
    process; nothing is written to the ledger, the cursor or the audit trail, and nothing is
    posted. Token refreshes are stored as usual.
    """
    source = make_source(db, settings, connection_id, flow, since, page_size=page_size,
                         dry_run=True)  # fmt: skip
    count = 0
    try:
        for part in range(len(source.parts)):
            position = source.first_position
            while True:
                page = _with_retry(lambda: source.page(part, position), None, sleep)  # noqa: B023
                for item in page.items:
                    yield source.dry_run(part, item)
                    count += 1
                    if limit is not None and count >= limit:
                        return
                if not page.more:
                    break
                position = page.next_position
    finally:
        source.close()


def summarize(results: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r.get("result", "?")] = out.get(r.get("result", "?"), 0) + 1
    return out
