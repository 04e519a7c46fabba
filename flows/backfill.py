"""Backfill: bring a connection's history since a date through the pipeline, resumably.

``connector backfill ID --flow payables|expenses|vendors --since DATE`` lists the source the way
the flow's polling pass does (same list endpoint, same filter, same ``ensure_record``), but from
an explicit ``since`` and page by page in a stable order (oldest created first), so that:

- **Resumable.** Each page's ledger records and the backfill cursor are written in one
  transaction; the cursor lives in ``sync_cursors`` under its own key per (connection, flow,
  since) (:func:`cursor_key`). A restart after Ctrl-C or a crash re-reads the page before the
  cursor (documents deleted meanwhile shift later ones back by up to a page) and goes on.
- **No duplicates.** Records are made with ``ledger.get_or_create`` through each flow's
  ``ensure_record``: re-reading a page finds the records it made, and a record a webhook or
  the poll made first is found, not copied. Posting is the pipeline's, with its own guarantees.
- **Dry run.** ``--dry-run`` runs fetch -> map -> validate in this process for each document,
  read-only (no ledger writes, no cursor, no audit rows, nothing posted), and reports what would
  be posted with the validation result (:func:`dry_run_item`).
- **ETA** from the rate limits and the Zoho daily quota (:func:`eta_seconds`, docs/backfill.md).

Nothing here imports Flask or Celery; the CLI (``cli/commands/backfill.py``) enqueues.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector import connections, ledger
from connector import quota as quota_mod
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import ConfigurationError, ConnectorError, ParkError, ValidationFailed
from connector.models import RecordState, Step, SyncCursor, SyncRecord, VendorLink
from connector.ratelimit import Limit, parse_limit

FLOWS = ("payables", "expenses", "vendors")
_FLOW_CODE = {"payables": "p", "expenses": "e", "vendors": "v"}
#: Zoho's and Concur's largest list pages (Zoho ``per_page`` <= 200; Concur v3 reports <= 100).
MAX_PAGE = {"zoho": 200, "concur": 100}
DAY = 86400.0


# =========================================================================== cost and ETA


@dataclass(frozen=True)
class CallCost:
    """API calls the pipeline makes per record of a flow (happy path, measured in the e2e
    tests: docs/payables.md, docs/expenses.md, docs/vendors.md), and where the list is read."""

    zoho: float
    concur: float
    source: str  # the system whose list pages the backfill reads
    concur_path: str  # the Concur path whose limit governs the flow's Concur calls


COSTS: dict[str, CallCost] = {
    # fetch GET /bills/{id} | POST paymentrequest
    "payables": CallCost(1.0, 1.0, "zoho", "/api/v3.0/invoice/paymentrequest"),
    # POST /journals | header, entries, allocations (the list replaces the intake header read)
    "expenses": CallCost(1.0, 3.0, "concur", "/api/v3.0/expense/reports"),
    # GET /contacts/{id} | vendor listing (per 1,000 vendors) + the create or update
    "vendors": CallCost(1.0, 2.0, "zoho", "/api/v3.1/invoice/vendors"),
}


@dataclass
class Quota:
    """Zoho's daily quota as its last response told it (``X-Rate-Limit-*`` headers)."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # seconds until the quota renews, as of ``seen_at``
    seen_at: float | None = None  # clock() when the headers were read

    def observe(self, headers: Mapping[str, str], now: float) -> None:
        def number(name: str) -> float | None:
            raw = headers.get(name)
            try:
                return float(raw) if raw not in (None, "") else None
            except (TypeError, ValueError):
                return None

        remaining = number("X-Rate-Limit-Remaining")
        if remaining is None:
            return
        self.remaining = int(remaining)
        limit = number("X-Rate-Limit-Limit")
        self.limit = int(limit) if limit is not None else self.limit
        reset = number("X-Rate-Limit-Reset")
        if reset is not None and reset > 1_000_000_000:  # an epoch rather than a countdown
            reset = max(0.0, reset - time.time())
        self.reset = reset
        self.seen_at = now

    def reset_in(self, now: float) -> float | None:
        if self.reset is None or self.seen_at is None:
            return None
        return max(0.0, self.reset - (now - self.seen_at))


@dataclass
class Budget:
    """What limits the pipeline's pace for one connection and flow.

    ``reserve`` is the share of Zoho's daily quota a backfill leaves to live traffic
    (``ZOHO_DAILY_RESERVE``, :mod:`connector.quota`)."""

    zoho: Limit
    concur: Limit
    quota: Quota = field(default_factory=Quota)
    reserve: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, flow: str, company_id: str = "") -> Budget:
        policy = connections.rate_policy(settings)
        _key, concur = policy.for_concur(company_id or "-", COSTS[flow].concur_path)
        return cls(
            zoho=parse_limit(settings.zoho_rate_limit),
            concur=concur,
            reserve=settings.zoho_daily_reserve,
        )

    def reserve_calls(self) -> int:
        return quota_mod.reserve_calls(self.quota.limit, self.reserve)

    def seed(self, state: quota_mod.QuotaState | None, clock: Callable[[], float]) -> None:
        """Start from the quota the shared store knows (every process's last Zoho answer), so
        the first ETA already counts it; the backfill's own responses refine it."""
        now = time.time()
        if state is None or not state.current(now) or self.quota.remaining is not None:
            return
        self.quota = Quota(state.limit, state.remaining, state.reset_at - now, clock())


def eta_seconds(
    zoho_calls: float, concur_calls: float, budget: Budget, *, now: float = 0.0
) -> tuple[float, str]:
    """Seconds the pipeline needs for ``zoho_calls`` + ``concur_calls`` at best, and what
    binds (``zoho``, ``concur`` or ``zoho quota``).

    ``t = max(Z * Pz / Nz,  C * Pc / Nc,  t_quota)`` where ``Nz/Pz`` is ``ZOHO_RATE_LIMIT``
    (requests per period, per organization), ``Nc/Pc`` the Concur limit of the flow's path, and,
    when Zoho's headers gave a remaining daily quota ``Q`` (limit ``D``, renewing in ``R`` s) and
    ``Z > Q``: ``t_quota = R + (d - 1) * 86400 + r * Pz / Nz`` with ``d = ceil((Z - Q) / D)``
    further days and ``r = Z - Q - (d - 1) * D`` calls on the last of them. ``Q`` and ``D`` are
    net of the daily reserve ``V = ceil(D_zoho * ZOHO_DAILY_RESERVE)`` the backfill leaves to
    live traffic. A lower bound: other traffic of the same organization or company shares these
    budgets.
    """
    per_zoho = budget.zoho.period / budget.zoho.requests
    per_concur = budget.concur.period / budget.concur.requests
    candidates = [(zoho_calls * per_zoho, "zoho"), (concur_calls * per_concur, "concur")]
    quota = budget.quota
    reset = quota.reset_in(now)
    reserve = budget.reserve_calls()
    usable = None if quota.remaining is None else max(0, quota.remaining - reserve)
    if usable is not None and reset is not None and zoho_calls > usable:
        over = zoho_calls - usable
        per_day = max((quota.limit or max(quota.remaining or 0, 1)) - reserve, 1)
        days = math.ceil(over / per_day)
        last = over - (days - 1) * per_day
        candidates.append((reset + (days - 1) * DAY + last * per_zoho, "zoho quota"))
    seconds, bound = max(candidates, key=lambda c: c[0])
    return seconds, bound


def projected_days(seconds: float) -> int:
    """Calendar days a quota-bound backfill spans: today counts as the first."""
    return max(1, math.ceil(seconds / DAY))


def human_duration(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds) or math.isnan(seconds):
        return "?"
    seconds = max(0, round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """One status line: a bar, count, rate and ETA (``\\r``-redrawn on a terminal, one line
    per page otherwise). ``clock`` is injectable so the arithmetic is testable."""

    WIDTH = 20

    def __init__(
        self,
        flow: str,
        since: dt.date,
        budget: Budget,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
        resumed_found: int = 0,
        resumed_new: int = 0,
    ) -> None:
        self.flow, self.since, self.budget, self.clock = flow, since, budget, clock
        self.cost = COSTS[flow]
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = clock()
        self.found = resumed_found  # listed, over every run of this backfill
        self.new = resumed_new  # records created, over every run
        self.found_here = 0  # listed by this run (the rate)
        self.more = True
        self.part = ""
        self.page = 0
        self.page_size = MAX_PAGE[self.cost.source]
        self.waiting: str | None = None

    # ------------------------------------------------------------------ numbers

    def rate(self) -> float:
        elapsed = self.clock() - self.started
        return self.found_here / elapsed if elapsed > 0 else 0.0

    def eta(self) -> tuple[float, str]:
        """Time for the pipeline to post what this backfill has created so far (plus the list
        pages still to read when the list is Zoho's)."""
        pages = 1 if self.more else 0
        zoho = self.new * self.cost.zoho + (pages if self.cost.source == "zoho" else 0)
        concur = self.new * self.cost.concur + (pages if self.cost.source == "concur" else 0)
        return eta_seconds(zoho, concur, self.budget, now=self.clock())

    def fraction(self) -> float:
        """Share of the list read: exact at the end; while pages remain, ``found`` out of
        ``found + one more page`` (the lists give no total)."""
        if not self.more:
            return 1.0
        return self.found / (self.found + self.page_size) if self.found else 0.0

    # ------------------------------------------------------------------ text

    def line(self) -> str:
        filled = round(self.fraction() * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        seconds, bound = self.eta()
        quota = self.budget.quota
        extra = f"{bound}-bound"
        if quota.remaining is not None:
            extra += f", Zoho quota {quota.remaining:,} left"
            reserve = self.budget.reserve_calls()
            if reserve:
                extra += f" of which {reserve:,} reserved for live traffic"
            reset = quota.reset_in(self.clock())
            if reset is not None:
                extra += f" (renews in {human_duration(reset)})"
        if bound == "zoho quota":
            extra += f", {projected_days(seconds)} day(s) at the daily quota"
        where = f"{self.part} p.{self.page}" if self.part else "starting"
        text = (
            f"{self.flow} since {self.since.isoformat()} [{bar}] {where}: {self.found:,} found, "
            f"{self.new:,} new, {self.rate():.1f}/s, ETA {human_duration(seconds)} to post "
            f"({extra})"
        )
        if self.waiting:
            text += f" - {self.waiting}"
        return text

    def show(self, *, final: bool = False) -> None:
        """Redraw the line (a terminal), or print it (a log); ``final`` ends the line."""
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line() + ("\n" if final else ""))
        elif not final:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def advance(
        self, part: str, page: int, found: int, new: int, listed_here: int, *, more: bool
    ) -> None:
        """After a committed page: totals over every run, ``listed_here`` for the rate."""
        self.part, self.page = part, page
        self.found, self.new = found, new
        self.found_here += listed_here
        self.more = more
        self.waiting = None
        self.show()


# =========================================================================== cursor


def cursor_key(flow: str, since: dt.date) -> str:
    """``bf:p:2025-01-01``: the backfill's row in ``sync_cursors`` (whose ``flow`` column holds
    16 characters), distinct from the poll's ``payables`` row and per ``since``."""
    if flow not in _FLOW_CODE:
        raise ValueError(f"unknown flow {flow!r}")
    return f"bf:{_FLOW_CODE[flow]}:{since.isoformat()}"


@dataclass
class Cursor:
    """Where a backfill stands: the list part (``bill``/``invoice``...) and page to read next."""

    part: int = 0
    #: Zoho: the next page (1-based); Concur: the next offset; None: the start of ``part``.
    position: int | None = None
    found: int = 0
    new: int = 0
    done: bool = False
    runs: int = 0

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def load_cursor(db: Database, connection_id: int, flow: str, since: dt.date) -> Cursor:
    with db.session() as session:
        text = session.execute(
            select(SyncCursor.cursor).where(
                SyncCursor.connection_id == connection_id,
                SyncCursor.flow == cursor_key(flow, since),
            )
        ).scalar_one_or_none()
    return Cursor.loads(text)


def save_cursor_in(
    session: Session, connection_id: int, flow: str, since: dt.date, cursor: Cursor
) -> None:
    """Write the cursor in the caller's transaction (the one that made the page's records)."""
    key = cursor_key(flow, since)
    row = session.execute(
        select(SyncCursor).where(SyncCursor.connection_id == connection_id, SyncCursor.flow == key)
    ).scalar_one_or_none()
    if row is None:
        session.add(SyncCursor(connection_id=connection_id, flow=key, cursor=cursor.dumps()))
    else:
        row.cursor = cursor.dumps()
        row.updated_at = utcnow()


def reset_cursor(db: Database, connection_id: int, flow: str, since: dt.date) -> None:
    with db.session() as session:
        save_cursor_in(session, connection_id, flow, since, Cursor())


# =========================================================================== sources


@dataclass
class Page:
    items: list[dict[str, Any]]
    more: bool
    next_position: int


def _midnight(since: dt.date) -> dt.datetime:
    return dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)


def _existing(db: Database, connection_id: int, flow: str, source_id: str,
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


def _problem_result(exc: Exception) -> tuple[str, list[str]]:
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


class _ZohoHeaders:
    """A ``requests`` response hook that feeds Zoho's quota headers into a :class:`Quota`."""

    def __init__(self, quota: Quota, clock: Callable[[], float]) -> None:
        self.quota, self.clock = quota, clock

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self.quota.observe(response.headers, self.clock())
        return response


def watch_quota(client: Any, quota: Quota, clock: Callable[[], float] = time.monotonic) -> None:
    """Read ``X-Rate-Limit-*`` off every response of a Zoho client into ``quota``."""
    client.session.hooks.setdefault("response", []).append(_ZohoHeaders(quota, clock))


class _Base:
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
            from connector import audit

            observer = (
                None
                if self.dry
                else audit.recorder(self.db, connection_id=self.connection_id, step="backfill")
            )
            self._zoho = connections.zoho_client(
                self.db, self.settings, self.connection_id, on_response=observer
            )
            watch_quota(self._zoho, self.quota)
        return self._zoho

    def concur(self) -> Any:
        if self._concur is None:
            from connector import audit

            observer = (
                None
                if self.dry
                else audit.recorder(self.db, connection_id=self.connection_id, step="backfill")
            )
            self._concur = connections.concur_client(
                self.db, self.settings, self.connection_id, on_response=observer
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


class PayablesSource(_Base):
    """Zoho bills and invoices modified since the date, oldest created first (the payables
    poll's list, ``last_modified_time`` filter and ``ensure_record``)."""

    flow = "payables"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from flows import payables

        self.mod = payables
        with self.db.session() as session:
            section = payables._section_in(session, self.connection_id)
        if not section:
            raise ConfigurationError(
                f"connection {self.connection_id} has no payables rules: import a rules file "
                "with a payables section first (`connector mappings import`)"
            )
        self.parts = payables._included_kinds(section)
        self._rules: Any = None

    def page(self, part: int, position: int) -> Page:
        from connector.zoho.documents import documents

        kind = self.parts[part]
        docs = documents(self.zoho(), kind)
        return self._zoho_page(
            docs.path, docs.list_key, position,
            last_modified_time=self.mod._zoho_time(_midnight(self.since)),
            sort_column="created_time", sort_order="A",
        )  # fmt: skip

    def ensure(self, session: Session, part: int, item: Mapping[str, Any]) -> Any:
        return self.mod.ensure_record(
            session, self.connection_id, self.parts[part], item, trigger="backfill"
        )

    def dry_run(self, part: int, item: Mapping[str, Any]) -> dict[str, Any]:
        from connector.zoho.documents import documents
        from mappings.payables import is_void, map_document, validate_payment_request
        from mappings.zoho_documents import load_zoho_document

        p = self.mod
        kind = self.parts[part]
        document_id = str(item.get(f"{kind}_id") or "")
        source_id = p.source_id_of(kind, document_id)
        version = p.hint_version(kind, item)
        out: dict[str, Any] = {
            "flow": self.flow,
            "source_id": source_id,
            "source_ref": p.label(kind, item.get(f"{kind}_number"), p._contact_name(kind, item)),
            "source_version": version,
            "ledger": _existing(self.db, self.connection_id, self.flow, source_id, version),
        }
        try:
            obj = documents(self.zoho(), kind).get(document_id)  # fetch
            doc = load_zoho_document({kind: obj}, kind)  # type: ignore[arg-type]
            if self._rules is None:
                self._rules = p.load_rules(self.db, self.connection_id)
            rules_ = self._rules
            if is_void(doc):
                out.update(result="void", problems=[f"{doc.label} is void: never posted"])
                return out
            vendor = self._vendor(doc, rules_)  # map
            body = map_document(doc, vendor, rules_)
            out["target_payload"] = body
            validate_payment_request(  # validate
                body,
                currency=doc.currency_code or "",
                allow_negative_lines=rules_.allows_negative_lines,
            )
        except Exception as exc:  # reported, never raised: a dry run lists every problem
            out["result"], out["problems"] = _problem_result(exc)
            if isinstance(exc, ParkError) and exc.dependency == "vendor":
                out["problems"].append(
                    "the map step first asks the vendors flow to sync this contact (it links "
                    "or creates it as the vendors rules say): see `connector vendors diff`"
                )
            return out
        out.update(result="would_post", problems=[])
        return out

    def _vendor(self, doc: Any, rules_: Any) -> Any:
        """The Concur vendor the map step would use, read-only (never asks the vendors flow to
        create one; a missing link is reported as the wait it would cause)."""
        from flows import remit_to
        from mappings.payables import VendorRef

        with self.db.session() as session:
            link = session.execute(
                select(VendorLink).where(
                    VendorLink.connection_id == self.connection_id,
                    VendorLink.zoho_contact_id == str(doc.contact_id),
                )
            ).scalar_one_or_none()
            if link is not None:
                session.expunge(link)
        if link is None:
            return None  # map_document raises the vendor ParkError, with its reason
        code = link.concur_vendor_code
        remit = remit_to.resolve(  # the map step's own resolution, so the dry run waits alike
            rules_.remit_to,
            code,
            link.concur_address_code,
            lambda c: self.concur().vendors.iter_all(vendorCode=c),
            who=self.mod._party(doc),
            contact_id=str(doc.contact_id),
        )
        address = remit.address_code
        if remit.vendor is not None:
            return self.mod._vendor_from(code, address, remit.vendor, None)
        snap = link.concur_snapshot or {}
        name = self.mod._pick(snap, "VendorName", "Name", "name", "vendor_name")
        country = self.mod._pick(snap, "CountryCode", "country_code")
        currency = self.mod._pick(snap, "CurrencyCode", "currency_code")
        same_address = address.upper() == link.concur_address_code.strip().upper()
        if same_address and name and (country or rules_.country_code):
            return VendorRef(code, address, country, currency, name)
        for v in self.concur().vendors.find(vendorCode=code, addressCode=address, limit=10):
            if str(v.get("VendorCode", "")).upper() == code.upper() and (
                str(v.get("AddressCode", "")).upper() == address.upper()
            ):
                return self.mod._vendor_from(code, address, v, name)
        raise ParkError(
            f"Zoho contact {doc.contact_id} is linked to Concur vendor {code}/{address}, which "
            "is not in Concur",
            dependency="vendor",
            key=str(doc.contact_id),
        )


class ExpensesSource(_Base):
    """Approved Concur reports modified since the date (the expenses poll's filter and
    ``ensure_record``), by offset."""

    flow = "expenses"
    parts = ("report",)
    first_position = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from flows import expenses

        self.mod = expenses
        if not expenses.enabled(self.db, self.connection_id):
            raise ConfigurationError(
                f"connection {self.connection_id}: {expenses.NOT_ENABLED.split(';')[0]}"
            )

    def overlap(self, position: int) -> int:
        return max(0, position - self.page_size)

    def page(self, part: int, position: int) -> Page:
        from connector.concur.expense import APPROVED_FILTER, REPORTS_PATH

        since = _midnight(self.since).replace(tzinfo=None)
        body = self.concur().request(
            "GET", REPORTS_PATH,
            params={**APPROVED_FILTER, "modifiedDateAfter": self.mod._v3_time(since),
                    "limit": self.page_size, "offset": position},
        )  # fmt: skip
        items = [dict(i) for i in (body or {}).get("Items") or []]
        return Page(items, bool((body or {}).get("NextPage")) and bool(items),
                    position + len(items))  # fmt: skip

    def ensure(self, session: Session, part: int, item: Mapping[str, Any]) -> Any:
        return self.mod.ensure_record(session, self.connection_id, item, trigger="backfill")

    def dry_run(self, part: int, item: Mapping[str, Any]) -> dict[str, Any]:
        from connector.concur.expense import ExpenseReports
        from mappings.concur_reports import assemble_report
        from mappings.expenses import journal_date_for, map_report, validate_journal

        e = self.mod
        report_id = str(item.get("ID") or "")
        version = e.approval_version(item)
        out: dict[str, Any] = {
            "flow": self.flow,
            "source_id": report_id,
            "source_ref": str(item.get("Name") or report_id),
            "source_version": version,
            "ledger": _existing(self.db, self.connection_id, self.flow, report_id, version),
        }
        try:
            api = ExpenseReports(self.concur())  # fetch: header, entries, allocations
            header = api.get(report_id)
            entries = [e._compact(x) for x in api.entries(report_id)]
            allocations = [e._compact(x) for x in api.allocations(report_id)]
            report = assemble_report(e._compact(header), entries, allocations)
            rules_ = e._rules(self.db, self.connection_id)  # map
            lk = e.lookups(self.zoho())
            code = report.currency.upper()
            day = journal_date_for(report, rules_)
            rate_info = None
            if code != lk.base_currency and code in lk.currencies and day is not None:
                rate_info = e.exchange_rate(self.zoho(), lk, code, day)
            from decimal import Decimal

            rate = Decimal(rate_info["rate"]) if rate_info else None
            body = map_report(report, rules_, lk, exchange_rate=rate)
            out["target_payload"] = body
            validate_journal(body, currency_precision=lk.currencies[code].precision)  # validate
            problems = e._body_problems(body, lk)
            if problems:
                kind, key, _ = problems[0]
                raise ParkError("; ".join(p[2] for p in problems), dependency=kind, key=key)
        except Exception as exc:
            out["result"], out["problems"] = _problem_result(exc)
            return out
        out.update(result="would_post", problems=[])
        return out


class VendorsSource(_Base):
    """Zoho vendor contacts modified since the date, oldest created first; each becomes a
    ``contact`` sync request (the record a contact webhook makes), posted by ``sync_one``."""

    flow = "vendors"
    parts = ("contact",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plan: dict[str, Any] | None = None

    def page(self, part: int, position: int) -> Page:
        return self._zoho_page(
            "/contacts", "contacts", position,
            contact_type="vendor", sort_column="created_time", sort_order="A",
            last_modified_time=_zoho_time(_midnight(self.since)),
        )  # fmt: skip

    def _version(self, item: Mapping[str, Any]) -> str:
        raw = str(item.get("last_modified_time") or "")
        return (
            raw[:64]
            or "sha256:"
            + hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()[
                :40
            ]
        )

    def ensure(self, session: Session, part: int, item: Mapping[str, Any]) -> Any:
        from flows import vendor_sync as engine

        contact_id = str(item.get("contact_id") or "")
        if not contact_id:
            return None
        version = self._version(item)
        link = session.execute(
            select(VendorLink).where(
                VendorLink.connection_id == self.connection_id,
                VendorLink.zoho_contact_id == contact_id,
            )
        ).scalar_one_or_none()
        if link is not None and (link.zoho_snapshot or {}).get("last_modified_time") == version:
            return None  # already synced at this version (as the contact webhook intake says)
        return ledger.get_or_create(
            session,
            connection_id=self.connection_id,
            flow=self.flow,
            source_system="zoho",
            source_type=engine.SYNC_REQUEST,
            source_id=contact_id,
            source_version=version,
            target_system="concur",
            source_ref=str(item.get("contact_name") or "")[:255] or None,
            trigger="backfill",
        )

    def dry_run(self, part: int, item: Mapping[str, Any]) -> dict[str, Any]:
        contact_id = str(item.get("contact_id") or "")
        version = self._version(item)
        out: dict[str, Any] = {
            "flow": self.flow,
            "source_id": contact_id,
            "source_ref": item.get("contact_name"),
            "source_version": version,
            "ledger": _existing(self.db, self.connection_id, self.flow, contact_id, version),
        }
        try:
            plan = self.plan()
        except Exception as exc:
            out["result"], out["problems"] = _problem_result(exc)
            return out
        out.update(_vendor_decision(plan, contact_id))
        return out

    def plan(self) -> dict[str, Any]:
        """The reconciliation's decisions (``vendors diff --full``), computed once."""
        if self._plan is None:
            from flows import vendor_sync as engine

            report = engine.reconcile(
                self.db, self.settings, self.connection_id, dry_run=True, full=True
            )
            assert report.plan is not None
            self._plan = report.plan.as_dict()
        return self._plan


def _zoho_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _vendor_decision(plan: Mapping[str, Any], contact_id: str) -> dict[str, Any]:
    for x in plan.get("would_create_in_concur") or []:
        if x.get("zoho_contact_id") == contact_id:
            if x.get("problem"):
                return {"result": "invalid", "problems": [x["problem"]], "target": x.get("vendor")}
            return {"result": "would_post", "problems": [], "action": "create in Concur",
                    "target": x.get("vendor")}  # fmt: skip
    for x in plan.get("would_update") or []:
        if x.get("zoho_contact_id") == contact_id:
            return {"result": "would_post", "problems": [], "action": "update",
                    "target": x.get("concur_vendor"), "changes": x.get("changes")}  # fmt: skip
    for x in plan.get("linked") or []:
        if x.get("zoho_contact_id") == contact_id:
            action = f"link (matched by {x.get('matched_by')})" if x.get("new") else "linked"
            return {"result": "would_post" if x.get("new") else "unchanged", "problems": [],
                    "action": action, "target": x.get("concur_vendor")}  # fmt: skip
    for x in plan.get("ambiguous") or []:
        if contact_id in (x.get("zoho_contact_ids") or []):
            return {"result": "would_wait", "problems": [f"{x.get('reason')}: {x.get('detail')}"]}
    return {"result": "skip", "problems": ["not part of the reconciliation (rules or directions)"]}


SOURCES: dict[str, type[_Base]] = {
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
) -> _Base:
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


#: States in which a record still owes its flow's Zoho call: payables and vendors read Zoho
#: first (fetch), expenses write Zoho last (the journal POST).
_OWES_ZOHO: dict[str, tuple[RecordState, ...]] = {
    "payables": (RecordState.RECEIVED,),
    "vendors": (RecordState.RECEIVED,),
    "expenses": (RecordState.RECEIVED, RecordState.FETCHED, RecordState.MAPPED,
                 RecordState.VALIDATED),
}  # fmt: skip


def pending_zoho_calls(db: Database, connection_id: int, flow: str) -> int:
    """Zoho calls the flow's records not yet past their Zoho step still need (webhook records
    included: counting them too keeps the estimate on the safe side)."""
    from sqlalchemy import func

    with db.session() as session:
        count = session.execute(
            select(func.count())
            .select_from(SyncRecord)
            .where(
                SyncRecord.connection_id == connection_id,
                SyncRecord.flow == flow,
                SyncRecord.state.in_([st.value for st in _OWES_ZOHO[flow]]),
            )
        ).scalar_one()
    return math.ceil(count * COSTS[flow].zoho)


def check_pace(
    db: Database,
    settings: Settings,
    connection_id: int,
    flow: str,
    organization_id: str,
    page_size: int,
    *,
    now: float | None = None,
) -> None:
    """Raise ``QuotaReserveError`` unless today's Zoho quota above the reserve covers the next
    page: its list call, the Zoho calls of the records it may create, and those still owed by
    records already queued. This is what keeps a backfill within the daily quota: it lists no
    more than the pipeline can post today without touching the reserve, and goes on (the
    same command, from the saved cursor) once the quota renews."""
    state = connections.quota_store(settings).get(organization_id)
    cost = COSTS[flow]
    page = (1 if cost.source == "zoho" else 0) + math.ceil(page_size * cost.zoho)
    pending = pending_zoho_calls(db, connection_id, flow)
    quota_mod.check_reserve(
        state, settings.zoho_daily_reserve, time.time() if now is None else now,
        "the backfill", cost=page + pending,
        detail=f"the next page needs up to {page:,} call(s)"
        + (f" and records already queued {pending:,} more" if pending else ""),
    )  # fmt: skip


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


def _overlap_count(source: _Base, page: Page, position: int, resume_at: int) -> int:
    """Items of the re-read page that a previous run already counted."""
    if source.first_position == 1:  # Zoho: positions are page numbers
        return len(page.items) if position < resume_at else 0
    return min(len(page.items), max(0, resume_at - position))  # Concur: offsets


def _page_number(source: _Base, position: int) -> int:
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
