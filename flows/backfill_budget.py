"""What a backfill costs and how fast it may go: calls per record, Zoho's daily quota, the ETA.

A backfill can list years of documents in minutes, but the pipeline posts them at the vendors'
rate limits and within Zoho's daily quota; these estimates and the pace check keep it honest
about how long that takes and stop it listing more than today's quota can post
(docs/backfill.md).
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from sqlalchemy import select

from connector import connections
from connector.config import Settings
from connector.db import Database
from connector.limits import quota as quota_mod
from connector.limits.ratelimit import Limit, parse_limit
from connector.models import RecordState, SyncRecord

#: Zoho's and Concur's largest list pages (Zoho ``per_page`` <= 200; Concur v3 reports <= 100).
MAX_PAGE = {"zoho": 200, "concur": 100}
DAY = 86400.0


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
    (``ZOHO_DAILY_RESERVE``, :mod:`connector.limits.quota`)."""

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
