"""Zoho's daily call quota per organization: what is left, and the reserve bulk work must leave.

Zoho Books allows 1,000 (Free), 2,000 (Standard), 5,000 (Professional) or 10,000 (Premium and
above) calls a day per organization, shared with every other app on it, and says what is left
on every response: ``X-Rate-Limit-Limit`` (the day's quota), ``X-Rate-Limit-Remaining`` and
``X-Rate-Limit-Reset`` (seconds until it renews).  A backfill of a few thousand documents can
spend the whole day, after which live webhooks are refused too.  So:

- Every Zoho response's headers are stored per organization (:meth:`QuotaStore.observe`), with
  the time read, in the store all processes share (Redis, or SQLite in embedded mode).
- Every call takes one from the stored count before it is sent (:meth:`QuotaStore.spend`), so
  concurrent bulk callers cannot all pass the reserve check on the same stale number; the
  vendor's next answer corrects the estimate (the lower of the two wins within one day,
  because responses arrive out of order; a later reset means a new day and replaces it).
- Calls made inside :func:`bulk` (backfill, vendor reconciliation) are refused before they are
  sent once ``remaining <= reserve`` (``ZOHO_DAILY_RESERVE`` of the day's quota, default 10 %):
  :class:`~connector.errors.QuotaReserveError` says when the quota renews.  Live traffic
  (webhooks, polls, the records they make) is never refused here and uses the reserve.

Nothing is known before the first response of the day; then every call is allowed (the first
answer tells).  A stored state whose reset time has passed is a previous day and is ignored.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from connector.errors import QuotaReserveError
from connector.limits.sqlite_file import SharedSqliteFile

if TYPE_CHECKING:
    import redis

__all__ = [
    "MemoryQuotaStore",
    "QuotaState",
    "QuotaStore",
    "RedisQuotaStore",
    "SqliteQuotaStore",
    "bulk",
    "check_reserve",
    "current_bulk",
    "make_quota_store",
    "read_headers",
    "reserve_calls",
]

#: Two reset times closer than this belong to the same quota day (the header has 1 s
#: granularity and responses take a while to arrive).
SAME_DAY = 300.0


@dataclass(frozen=True)
class QuotaState:
    """One organization's daily quota as last known: ``remaining`` as of ``read_at``."""

    limit: int | None
    remaining: int
    reset_at: float  # epoch seconds when the day's quota renews
    read_at: float

    def current(self, now: float) -> bool:
        """False once the quota has renewed: the numbers are a previous day's."""
        return now < self.reset_at


def read_headers(headers: Mapping[str, str], now: float) -> tuple[int | None, int, float] | None:
    """``(limit, remaining, reset_at)`` from Zoho's ``X-Rate-Limit-*`` headers, or ``None``.

    ``X-Rate-Limit-Reset`` is documented by third parties as seconds until the reset; an epoch
    value is accepted too, defensively.  Unparseable values are ignored (never an exception):
    the quota is an optimisation over the vendor's own 429.
    """

    def number(name: str) -> float | None:
        raw = headers.get(name)
        try:
            value = float(raw) if raw not in (None, "") else None
        except (TypeError, ValueError):
            return None
        return value if value is not None and math.isfinite(value) and value >= 0 else None

    remaining = number("X-Rate-Limit-Remaining")
    reset = number("X-Rate-Limit-Reset")
    if remaining is None or reset is None:
        return None
    limit = number("X-Rate-Limit-Limit")
    reset_at = reset if reset > 1_000_000_000 else now + reset
    return (int(limit) if limit is not None else None), int(remaining), reset_at


def _merge(old: QuotaState | None, new: QuotaState) -> QuotaState:
    """The vendor's number wins, except that within one day the lower count stands."""
    if old is None or not old.current(new.read_at) or new.reset_at - old.reset_at > SAME_DAY:
        return new
    if old.remaining < new.remaining:
        return QuotaState(new.limit or old.limit, old.remaining, new.reset_at, new.read_at)
    return new


class QuotaStore(Protocol):
    def observe(self, org: str, headers: Mapping[str, str], now: float | None = None) -> None:
        """Store what a response's headers say (a no-op without the headers)."""
        ...

    def spend(self, org: str, now: float | None = None) -> None:
        """Count one call about to be sent against the stored remaining."""
        ...

    def get(self, org: str) -> QuotaState | None:
        """The stored state (possibly a previous day's: check :meth:`QuotaState.current`)."""
        ...


class MemoryQuotaStore:
    """One process only (tests, scripts)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, QuotaState] = {}

    def observe(self, org: str, headers: Mapping[str, str], now: float | None = None) -> None:
        now = self._clock() if now is None else now
        read = read_headers(headers, now)
        if read is None:
            return
        with self._lock:
            self._states[org] = _merge(self._states.get(org), QuotaState(*read, read_at=now))

    def spend(self, org: str, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        with self._lock:
            old = self._states.get(org)
            if old is not None and old.current(now):
                self._states[org] = QuotaState(
                    old.limit, max(0, old.remaining - 1), old.reset_at, old.read_at
                )

    def get(self, org: str) -> QuotaState | None:
        with self._lock:
            return self._states.get(org)


# KEYS[1] = hash; ARGV = limit ('' unknown), remaining, reset_at, read_at, same_day
_OBSERVE = """
local key = KEYS[1]
local limit, remaining = ARGV[1], tonumber(ARGV[2])
local reset_at, read_at = tonumber(ARGV[3]), tonumber(ARGV[4])
local old = redis.call('HMGET', key, 'limit', 'remaining', 'reset_at')
if old[2] and old[3] then
  local old_reset = tonumber(old[3])
  if read_at < old_reset and reset_at - old_reset <= tonumber(ARGV[5]) then
    if tonumber(old[2]) < remaining then remaining = tonumber(old[2]) end
    if limit == '' and old[1] then limit = old[1] end
  end
end
redis.call('HSET', key, 'limit', limit, 'remaining', remaining, 'reset_at', ARGV[3],
           'read_at', ARGV[4])
redis.call('EXPIRE', key, math.ceil(reset_at - read_at) + 86400)
return remaining
"""
# KEYS[1] = hash; ARGV = now
_SPEND = """
local reset_at = redis.call('HGET', KEYS[1], 'reset_at')
if reset_at and tonumber(ARGV[1]) < tonumber(reset_at) then
  local left = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
  if left > 0 then redis.call('HINCRBY', KEYS[1], 'remaining', -1) end
end
return 0
"""


class RedisQuotaStore:
    """Production: one hash per organization; merge and spend are atomic scripts."""

    def __init__(self, redis_client: redis.Redis, prefix: str = "quota") -> None:
        self._redis = redis_client
        self._prefix = prefix
        self._observe = redis_client.register_script(_OBSERVE)
        self._spend = redis_client.register_script(_SPEND)

    def _key(self, org: str) -> str:
        return f"{self._prefix}:zoho:{org}"

    def observe(self, org: str, headers: Mapping[str, str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        read = read_headers(headers, now)
        if read is None:
            return
        limit, remaining, reset_at = read
        args = ["" if limit is None else limit, remaining, repr(reset_at), repr(now), SAME_DAY]
        self._observe(keys=[self._key(org)], args=args)

    def spend(self, org: str, now: float | None = None) -> None:
        self._spend(keys=[self._key(org)], args=[repr(time.time() if now is None else now)])

    def get(self, org: str) -> QuotaState | None:
        raw: dict[Any, Any] = self._redis.hgetall(self._key(org))
        if not raw:
            return None
        values = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        return QuotaState(
            int(values["limit"]) if values.get("limit") else None,
            int(values["remaining"]),
            float(values["reset_at"]),
            float(values["read_at"]),
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS zoho_quota (
    org       TEXT PRIMARY KEY,
    qlimit    INTEGER,
    remaining INTEGER NOT NULL,
    reset_at  REAL NOT NULL,
    read_at   REAL NOT NULL
);
"""


class SqliteQuotaStore(SharedSqliteFile):
    """Embedded mode: a table in the rate limiter's SQLite file (same-host processes)."""

    SCHEMA = _SCHEMA

    def _read(self, conn: sqlite3.Connection, org: str) -> QuotaState | None:
        row = conn.execute(
            "SELECT qlimit, remaining, reset_at, read_at FROM zoho_quota WHERE org = ?", (org,)
        ).fetchone()
        return QuotaState(*row) if row else None

    def _write(self, org: str, update: Callable[[QuotaState | None], QuotaState | None]) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                new = update(self._read(conn, org))
                if new is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO zoho_quota VALUES (?, ?, ?, ?, ?)",
                        (org, new.limit, new.remaining, new.reset_at, new.read_at),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def observe(self, org: str, headers: Mapping[str, str], now: float | None = None) -> None:
        now = self._clock() if now is None else now
        read = read_headers(headers, now)
        if read is not None:
            state = QuotaState(*read, read_at=now)
            self._write(org, lambda old: _merge(old, state))

    def spend(self, org: str, now: float | None = None) -> None:
        now = self._clock() if now is None else now

        def take(old: QuotaState | None) -> QuotaState | None:
            if old is None or not old.current(now):
                return None
            return QuotaState(old.limit, max(0, old.remaining - 1), old.reset_at, old.read_at)

        self._write(org, take)

    def get(self, org: str) -> QuotaState | None:
        with self._lock:
            return self._read(self._connection(), org)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def make_quota_store(redis_url: str | None, sqlite_path: str | None) -> QuotaStore:
    """Redis if configured, else SQLite, else memory, like the limiter."""
    if redis_url:
        import redis as redis_lib

        return RedisQuotaStore(redis_lib.Redis.from_url(redis_url))
    if sqlite_path:
        return SqliteQuotaStore(sqlite_path)
    return MemoryQuotaStore()


# --------------------------------------------------------------------------- the reserve

_BULK: ContextVar[str | None] = ContextVar("zoho_quota_bulk", default=None)


@contextmanager
def bulk(what: str) -> Iterator[None]:
    """Mark the Zoho calls made inside as bulk work (``what``: "backfill", …): refused at the
    reserve.  A context variable, so it follows the code path without new parameters."""
    token = _BULK.set(what)
    try:
        yield
    finally:
        _BULK.reset(token)


def current_bulk() -> str | None:
    return _BULK.get()


def reserve_calls(limit: int | None, fraction: float) -> int:
    """Calls kept for live traffic: ``ceil(limit * fraction)`` (0 while the limit is unknown)."""
    if not limit or fraction <= 0:
        return 0
    return math.ceil(limit * fraction)


def resume_text(at: float) -> str:
    """``2026-12-06 00:00 UTC``: rounded up to the minute, so it is never early."""
    return dt.datetime.fromtimestamp(math.ceil(at / 60) * 60, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def check_reserve(
    state: QuotaState | None,
    fraction: float,
    now: float,
    what: str,
    *,
    cost: int = 1,
    detail: str = "",
) -> None:
    """Raise :class:`QuotaReserveError` if ``cost`` more calls would dip into the reserve."""
    if state is None or not state.current(now):
        return
    reserve = reserve_calls(state.limit, fraction)
    if state.remaining - cost >= reserve:
        return
    limit = f"{state.limit:,}" if state.limit else "?"
    raise QuotaReserveError(
        f"zoho daily reserve reached: {state.remaining:,} of {limit} calls left "
        f"today and {reserve:,} are kept for live traffic"
        + (f" ({detail})" if detail else "")
        + f"; {what} resumes at {resume_text(state.reset_at)}",
        retry_after=max(0.0, state.reset_at - now),
        resumes_at=state.reset_at,
        system="zoho",
    )


def overview(
    store: QuotaStore, organization_ids: list[str], fraction: float, now: float | None = None
) -> list[dict[str, Any]]:
    """One row per Zoho organization for ``/ops``: remaining daily calls, the reserve, when read
    and when it renews; ``status`` is unknown (no answer yet today), ok, reserve (bulk work
    stopped) or spent."""
    now = time.time() if now is None else now
    rows: list[dict[str, Any]] = []
    for org in sorted(set(filter(None, organization_ids))):
        state = store.get(org)
        if state is None or not state.current(now):
            rows.append({"organization_id": org, "status": "unknown"})
            continue
        reserve = reserve_calls(state.limit, fraction)
        status = "spent" if state.remaining <= 0 else "ok"
        if status == "ok" and state.remaining <= reserve:
            status = "reserve"
        rows.append(
            {
                "organization_id": org,
                "status": status,
                "limit": state.limit,
                "remaining": state.remaining,
                "reserve": reserve,
                "read_at": resume_text(state.read_at),
                "resets_at": resume_text(state.reset_at),
            }
        )
    return rows
