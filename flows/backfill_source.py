"""What every backfill source shares: paging, the audited clients, the dry-run result shapes.

A source lists one flow's history in a stable order, page by page; the runner
(``flows.backfill``) only knows this interface, so a new flow's backfill is one subclass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector import audit
from connector.config import Settings
from connector.db import Database
from connector.errors import ParkError, ValidationFailed
from connector.models import SyncRecord
from flows.backfill_budget import Quota, watch_quota


@dataclass
class Page:
    items: list[dict[str, Any]]
    more: bool
    next_position: int


def midnight(since: dt.date) -> dt.datetime:
    return dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)


def existing_record(db: Database, connection_id: int, flow: str, source_id: str,
              version: str | None) -> dict[str, Any] | None:  # fmt: skip
    """The ledger's record of this source version (or its latest version), read-only."""
    with db.session() as session:
        query = select(SyncRecord).where(
            SyncRecord.connection_id == connection_id,
            SyncRecord.flow == flow,
            SyncRecord.source_id == source_id,
        )
        rows = list(session.execute(query.order_by(SyncRecord.id)).scalars())
    same = [r for r in rows if version is None or r.source_version == version]
    if not (same or rows):
        return None
    row = (same or rows)[-1]
    return {
        "record_id": row.id,
        "state": row.state,
        "source_version": row.source_version,
        "target_id": row.target_id,
        "same_version": row in same,
    }


def problem_result(exc: Exception) -> tuple[str, list[str]]:
    """A step's exception as a dry-run result: ``would_wait`` (the record would park: missing
    vendor, mapping, currency...), ``invalid`` (it would fail validation) or ``error``."""
    if isinstance(exc, ParkError):
        what = f"waiting for {exc.dependency} {exc.key}".rstrip() if exc.dependency else ""
        return "would_wait", [str(exc)] + ([what] if what else [])
    if isinstance(exc, ValidationFailed):
        errors = exc.errors
        if isinstance(errors, dict):
            details = [f"{k}: {v}" for k, v in errors.items()]
        else:
            details = [str(e) for e in errors]
        return "invalid", [str(exc), *details]
    return "error", [f"{type(exc).__name__}: {exc}"]


class Source:
    """One flow's list, in a stable order, page by page; subclasses say how to read a page,
    make a record of an item, and dry-run an item."""

    flow = ""
    parts: tuple[str, ...] = ()  # the lists read one after the other (bills, invoices)
    first_position = 1  # Zoho lists count pages from 1; Concur's count offsets from 0

    def __init__(
        self,
        db: Database,
        settings: Settings,
        connection_id: int,
        since: dt.date,
        page_size: int,
        *,
        quota: Quota,
        dry_run: bool,
    ) -> None:
        self.db, self.settings, self.connection_id = db, settings, connection_id
        self.since, self.page_size, self.quota, self.dry = since, page_size, quota, dry_run
        self._zoho: Any = None
        self._concur: Any = None

    def zoho(self) -> Any:
        if self._zoho is None:
            self._zoho = audit.audited_zoho(
                self.db,
                self.settings,
                self.connection_id,
                step="backfill",
                record_calls=not self.dry,
            )
            watch_quota(self._zoho, self.quota)
        return self._zoho

    def concur(self) -> Any:
        if self._concur is None:
            self._concur = audit.audited_concur(
                self.db,
                self.settings,
                self.connection_id,
                step="backfill",
                record_calls=not self.dry,
            )
        return self._concur

    def page(self, part: int, position: int) -> Page:
        raise NotImplementedError

    def ensure(
        self, session: Session, part: int, item: Mapping[str, Any]
    ) -> tuple[SyncRecord, bool] | None:
        raise NotImplementedError

    def dry_run(self, part: int, item: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def overlap(self, position: int) -> int:
        """Where a resumed run starts: one page before ``position``."""
        return max(self.first_position, position - 1)

    def close(self) -> None:
        for client in (self._zoho, self._concur):
            if client is not None:
                client.close()

    def _zoho_page(self, path: str, key: str, page: int, **filters: Any) -> Page:
        body = self.zoho().request(
            "GET", path, params={**filters, "page": page, "per_page": self.page_size}
        )
        items = [dict(i) for i in (body or {}).get(key) or []]
        more = bool(((body or {}).get("page_context") or {}).get("has_more_page"))
        return Page(items, more, page + 1)
