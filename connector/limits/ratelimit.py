"""Per-tenant API rate limits shared by every process of the connector.

Celery's ``rate_limit`` is enforced per worker process, so N workers make N times the calls a
vendor allows per tenant.  The real per-tenant budget therefore lives here, in one store all
processes share, and a caller gets an immediate answer -- "go" or "wait N seconds" -- instead of
sleeping in a worker slot: a task that is told to wait does ``self.retry(countdown=wait)``.

Algorithm: a sliding-window log.  Every granted unit is recorded with the store's own clock;
a request is granted only if fewer than ``limit.requests`` units remain in the last
``limit.period`` seconds.  This is the simplest algorithm that gives the guarantee the vendors
enforce and the benchmark checks -- *at most ``requests`` grants in any window of ``period``
seconds, wherever the window starts* -- which a token bucket does not (a bucket of capacity C
refilling N per period lets C + N through in one window).  GCRA can be tuned to the same bound
but its burst parameter makes the guarantee a derivation rather than a reading of the code, and
its "wait" answer is an emission interval, not the moment a slot frees up.  The log also makes
the wait exact: it is the time until the oldest relevant grant leaves the window, so a retry at
that moment succeeds (unless another caller takes the slot first, in which case it gets a new
exact wait).  The cost is memory: O(requests) entries per active key, which is small for
per-minute limits (100 entries for a Zoho organization).  Daily quotas live in
``connector/limits/quota.py`` and calls in flight in ``connector/limits/concurrency.py``.

Timestamps are integer microseconds so that every backend compares them exactly.  A grant
occupies the closed interval ``[t, t + period]``; the next grant that needs its slot comes at
``t + period + 1 µs``.  That one microsecond makes the bound hold whether a window is counted
half-open or closed.

Backends share the semantics and differ only in where the log lives:

- :class:`RedisLimiter`  -- production; one Lua script does trim, count, grant and expire
  atomically with Redis ``TIME``, so processes with skewed clocks agree.
- :class:`SqliteLimiter` -- embedded mode (web, worker and beat on one machine, no Redis);
  ``BEGIN IMMEDIATE`` serialises acquisitions across processes.
- :class:`MemoryLimiter` -- tests and single-process use; thread-safe, injectable clock.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import threading
import time
import uuid
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from connector.errors import RateLimitedError
from connector.limits.sqlite_file import SharedSqliteFile

if TYPE_CHECKING:
    import redis

__all__ = [
    "CONCUR_DEFAULT_LIMIT",
    "ZOHO_DEFAULT_LIMIT",
    "Decision",
    "Limit",
    "Limiter",
    "MemoryLimiter",
    "RateLimitPolicy",
    "RedisLimiter",
    "SqliteLimiter",
    "acquire_or_raise",
    "concur_key",
    "make_limiter",
    "max_in_window",
    "parse_concur_limits",
    "parse_limit",
    "zoho_key",
]

_US = 1_000_000


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Limit:
    """A budget of ``requests`` per ``period`` seconds; validated so a typo fails at start-up."""

    requests: int
    period: float

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int):
            raise ValueError(f"Limit.requests must be an int, got {self.requests!r}")
        if self.requests < 1:
            raise ValueError(f"Limit.requests must be >= 1, got {self.requests}")
        if not (isinstance(self.period, int | float) and math.isfinite(self.period)):
            raise ValueError(f"Limit.period must be a finite number, got {self.period!r}")
        if self.period <= 0:
            raise ValueError(f"Limit.period must be > 0 seconds, got {self.period}")

    @property
    def period_us(self) -> int:
        """Period in integer microseconds, the unit every backend compares in."""
        return max(1, round(self.period * _US))

    def __str__(self) -> str:
        return f"{self.requests}/{self.period:g}s"


@dataclass(frozen=True)
class Decision:
    """The limiter's answer.

    ``wait`` is 0.0 when allowed, else the seconds until enough grants leave the window.
    ``now`` is the store's clock at the decision (Redis ``TIME`` for Redis), so callers that
    record grants -- benchmarks, the multi-process test -- use one clock across processes.
    """

    allowed: bool
    wait: float
    now: float = 0.0


class Limiter(Protocol):
    """What callers depend on; the backend is chosen once by :func:`make_limiter`."""

    def acquire(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        """Take ``cost`` units now, or say how long until they would be available."""
        ...

    def peek(self, key: str, limit: Limit) -> int:
        """Units used in the current window (for ops pages and ETAs); takes nothing."""
        ...


def _check_cost(limit: Limit, cost: int) -> None:
    # A cost above the budget could never be granted; answering "wait" would loop forever.
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be a positive int, got {cost!r}")
    if cost > limit.requests:
        raise ValueError(f"cost {cost} exceeds the whole budget {limit}")


def _decide(log: list[int] | deque[int], now_us: int, limit: Limit, cost: int) -> int:
    """Return 0 if ``cost`` units fit, else the wait in µs; ``log`` is sorted and trimmed.

    Shared by the in-process backends so they cannot drift from the Lua script's arithmetic.
    """
    over = len(log) + cost - limit.requests
    if over <= 0:
        return 0
    # The ``over``-th oldest grant must leave: it frees its slot 1 µs after ``t + period``.
    return max(1, log[over - 1] + limit.period_us + 1 - now_us)


# --------------------------------------------------------------------------- memory


class MemoryLimiter:
    """In-process backend; exact for one process only, which is all tests and scripts need."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._logs: dict[str, deque[int]] = {}

    def _trim(self, key: str, now_us: int, limit: Limit) -> deque[int]:
        log = self._logs.setdefault(key, deque())
        horizon = now_us - limit.period_us
        while log and log[0] < horizon:
            log.popleft()
        return log

    def acquire(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        _check_cost(limit, cost)
        with self._lock:
            # Read the clock under the lock so the log stays sorted across threads.
            now_us = round(self._clock() * _US)
            log = self._trim(key, now_us, limit)
            wait_us = _decide(log, now_us, limit, cost)
            if wait_us == 0:
                log.extend([now_us] * cost)
            elif not log:
                del self._logs[key]
        return Decision(wait_us == 0, wait_us / _US, now_us / _US)

    def peek(self, key: str, limit: Limit) -> int:
        with self._lock:
            now_us = round(self._clock() * _US)
            if key not in self._logs:
                return 0
            log = self._trim(key, now_us, limit)
            if not log:
                del self._logs[key]  # idle keys must not accumulate
            return len(log)


# --------------------------------------------------------------------------- redis

# KEYS[1] = the log (sorted set; score = grant time in µs, member = token:i)
# ARGV = requests, period_us, cost (0 = peek), token, now_us override ('' = Redis TIME)
_LUA = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[5] ~= nil and ARGV[5] ~= '' then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', now - period))
local used = redis.call('ZCARD', key)
if cost == 0 then
  return {1, 0, string.format('%d', now), used}
end
local over = used + cost - limit
if over <= 0 then
  for i = 1, cost do
    redis.call('ZADD', key, now, ARGV[4] .. ':' .. i)
  end
  redis.call('PEXPIRE', key, math.ceil(period / 1000) + 1)
  return {1, 0, string.format('%d', now), used + cost}
end
local oldest = redis.call('ZRANGE', key, over - 1, over - 1, 'WITHSCORES')
local wait = tonumber(oldest[2]) + period + 1 - now
if wait < 1 then wait = 1 end
return {0, wait, string.format('%d', now), used}
"""


class RedisLimiter:
    """Production backend: one atomic Lua script per decision, on Redis's clock.

    The script touches a single key, so it also works on Redis Cluster.  Each grant re-arms the
    key's expiry to one period, which is exactly when its newest entry stops mattering, so idle
    tenants leave nothing behind.  Connection errors propagate: the caller's generic retry
    handles them like any other transient failure rather than the limiter guessing open/closed.
    """

    def __init__(self, redis_client: redis.Redis, prefix: str = "ratelimit") -> None:
        self._redis = redis_client
        self._prefix = prefix
        self._script = redis_client.register_script(_LUA)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    def _eval(self, key: str, limit: Limit, cost: int, now_us: int | None = None) -> list[Any]:
        """Run the script; ``now_us`` replaces Redis ``TIME`` and exists only for tests."""
        args: list[str | int] = [
            limit.requests,
            limit.period_us,
            cost,
            uuid.uuid4().hex,
            "" if now_us is None else str(int(now_us)),
        ]
        result = self._script(keys=[self._key(key)], args=args)
        return [int(x) for x in result]

    def _acquire_at(self, key: str, limit: Limit, cost: int, now_us: int | None) -> Decision:
        _check_cost(limit, cost)
        allowed, wait_us, at_us, _used = self._eval(key, limit, cost, now_us)
        return Decision(bool(allowed), wait_us / _US if not allowed else 0.0, at_us / _US)

    def acquire(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        return self._acquire_at(key, limit, cost, None)

    def peek(self, key: str, limit: Limit) -> int:
        return self._eval(key, limit, 0)[3]


# --------------------------------------------------------------------------- sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ratelimit_log (
    key        TEXT    NOT NULL,
    ts         INTEGER NOT NULL,
    cost       INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ratelimit_log_key_ts ON ratelimit_log (key, ts);
CREATE INDEX IF NOT EXISTS ratelimit_log_expires ON ratelimit_log (expires_at);
"""


class SqliteLimiter(SharedSqliteFile):
    """Embedded-mode backend: the log in a SQLite file shared by processes on one machine.

    ``BEGIN IMMEDIATE`` takes the write lock before reading, so trim-count-insert is atomic
    across processes, and the clock is read only once the lock is held, so the log stays
    ordered.  WAL lets readers (``peek``) proceed during writes; the busy timeout makes
    contenders queue instead of failing.  All processes are on one host, so the wall clock is
    shared; a clock step backwards only makes the limiter stricter for one period.  Each row
    carries its own expiry, swept on every acquisition, so keys that go quiet are removed too.
    """

    SCHEMA = _SCHEMA

    def _units(self, conn: sqlite3.Connection, key: str, now_us: int, limit: Limit) -> list[int]:
        rows = conn.execute(
            "SELECT ts, cost FROM ratelimit_log WHERE key = ? AND ts >= ? ORDER BY ts",
            (key, now_us - limit.period_us),
        ).fetchall()
        return [ts for ts, n in rows for _ in range(n)]

    def acquire(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        _check_cost(limit, cost)
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                now_us = round(self._clock() * _US)
                conn.execute("DELETE FROM ratelimit_log WHERE expires_at < ?", (now_us,))
                wait_us = _decide(self._units(conn, key, now_us, limit), now_us, limit, cost)
                if wait_us == 0:
                    conn.execute(
                        "INSERT INTO ratelimit_log (key, ts, cost, expires_at) VALUES (?, ?, ?, ?)",
                        (key, now_us, cost, now_us + limit.period_us),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return Decision(wait_us == 0, wait_us / _US, now_us / _US)

    def peek(self, key: str, limit: Limit) -> int:
        with self._lock:
            conn = self._connection()
            now_us = round(self._clock() * _US)
            return len(self._units(conn, key, now_us, limit))

    def close(self) -> None:
        """Close the connection (tests delete the file afterwards)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


# --------------------------------------------------------------------------- factory


def make_limiter(redis_url: str | None, sqlite_path: str | None) -> Limiter:
    """Pick the backend from settings: Redis if configured, else SQLite, else memory.

    Memory is only correct for a single process; it is the fallback for tests and one-off
    scripts, never for a deployment with more than one worker.
    """
    if redis_url:
        import redis as redis_lib  # imported here so embedded mode does not need a Redis client

        return RedisLimiter(redis_lib.Redis.from_url(redis_url))
    if sqlite_path:
        return SqliteLimiter(sqlite_path)
    return MemoryLimiter()


# --------------------------------------------------------------------------- keys & policy

#: Zoho Books: 100 requests per minute per organization.
ZOHO_DEFAULT_LIMIT = Limit(100, 60.0)
#: Concur publishes no single figure; a conservative default, overridden per path prefix.
CONCUR_DEFAULT_LIMIT = Limit(600, 60.0)
_CONCUR_DEFAULT_GROUP = "default"


def zoho_key(organization_id: str) -> str:
    """Zoho counts per organization, whichever token or worker makes the call."""
    return f"zoho:org:{organization_id}"


def concur_key(company_id: str, path_prefix: str) -> str:
    """Concur limits differ by API family, so the prefix is part of the budget's identity."""
    return f"concur:{company_id}:{path_prefix}"


def _normalize_path(path: str) -> str:
    # Accept a full URL or a path with a query string; only the path decides the group.
    if "://" in path:
        path = urlsplit(path).path
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        path = "/" + path
    return path


def _normalize_prefix(prefix: str) -> str:
    prefix = _normalize_path(prefix.strip())
    return prefix.rstrip("/") or "/"


class RateLimitPolicy:
    """Maps (system, tenant, path) to the key and budget, so callers never build keys by hand."""

    def __init__(
        self,
        zoho: Limit = ZOHO_DEFAULT_LIMIT,
        concur_default: Limit = CONCUR_DEFAULT_LIMIT,
        concur_by_prefix: dict[str, Limit] | None = None,
        *,
        margin: float = 0.0,
    ) -> None:
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be >= 0 seconds, got {margin!r}")
        self.margin = margin
        self.zoho = self._padded(zoho)
        self.concur_default = self._padded(concur_default)
        by_prefix = {
            _normalize_prefix(p): self._padded(lim) for p, lim in (concur_by_prefix or {}).items()
        }
        # Longest first, so the first match is the most specific.
        self._concur = sorted(by_prefix.items(), key=lambda kv: len(kv[0]), reverse=True)

    def _padded(self, limit: Limit) -> Limit:
        """The budget as enforced: each grant holds its slot ``margin`` seconds longer than the
        vendor's period. The vendor counts a call when it arrives, we count it when we grant
        it; the time in between varies (scheduling, connection set-up), and without the margin a
        call granted just after a slot freed can arrive before the vendor's window has moved."""
        if not self.margin:
            return limit
        return Limit(limit.requests, limit.period + self.margin)

    @property
    def concur_by_prefix(self) -> dict[str, Limit]:
        return dict(self._concur)

    def for_zoho(self, organization_id: str) -> tuple[str, Limit]:
        return zoho_key(organization_id), self.zoho

    def for_concur(self, company_id: str, path: str) -> tuple[str, Limit]:
        """Longest prefix wins, matched on whole path segments (``/invoice`` ≠ ``/invoices``)."""
        norm = _normalize_path(path)
        for prefix, limit in self._concur:
            if prefix == "/" or norm == prefix or norm.startswith(prefix + "/"):
                return concur_key(company_id, prefix), limit
        return concur_key(company_id, _CONCUR_DEFAULT_GROUP), self.concur_default


def _describe(key: str) -> tuple[str, str]:
    """System and endpoint group of a key, for messages; tenant ids are left out on purpose."""
    system, _, rest = key.partition(":")
    if system == "zoho":
        return "zoho", "organization"
    if system == "concur":
        _company, _, group = rest.partition(":")
        return "concur", group or _CONCUR_DEFAULT_GROUP
    return system or "unknown", "default"


def acquire_or_raise(limiter: Limiter, key: str, limit: Limit, cost: int = 1) -> None:
    """Take a slot or raise :class:`RateLimitedError` carrying the exact wait.

    Raising (rather than returning a wait) lets the task's single error handler turn it into
    ``self.retry(countdown=err.retry_after)``, so no worker slot is ever spent sleeping.
    """
    decision = limiter.acquire(key, limit, cost)
    if decision.allowed:
        return
    system, group = _describe(key)
    raise RateLimitedError(
        f"{system} rate limit {limit} reached for {group}; retry in {decision.wait:.3f}s",
        retry_after=decision.wait,
        system=system,
        local=True,
    )


# --------------------------------------------------------------------------- parsing

_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_LIMIT_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_limit(text: str) -> Limit:
    """Parse ``"100/60s"``, ``"100/m"``, ``"60/10s"``, ``"5/s"``, ``"1000/1h"``.

    A bare number after the slash means seconds.  Errors quote the input and the accepted
    form, because this runs on environment variables at start-up.
    """
    match = _LIMIT_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(
            f"invalid rate limit {text!r}: expected '<requests>/<period>', e.g. '100/60s', "
            "'100/m', '5/s'"
        )
    count, amount, unit = match.groups()
    unit = unit.lower()
    if unit not in _UNITS or (amount is None and not unit):
        raise ValueError(
            f"invalid rate limit {text!r}: unknown period unit {unit!r} (use s, m, h or d)"
        )
    period = float(amount if amount is not None else 1) * _UNITS[unit]
    if int(count) < 1 or period <= 0:
        raise ValueError(f"invalid rate limit {text!r}: requests and period must be positive")
    return Limit(int(count), period)


def parse_concur_limits(text: str) -> dict[str, Limit]:
    """Parse ``"/api/v3.0/invoice=100/60s,/api/v3.1=50/60s"`` (empty means no overrides)."""
    result: dict[str, Limit] = {}
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        prefix, sep, limit_text = item.partition("=")
        prefix = prefix.strip()
        if not sep or not prefix.startswith("/"):
            raise ValueError(
                f"invalid Concur rate limit entry {item!r}: expected '/path/prefix=100/60s'"
            )
        norm = _normalize_prefix(prefix)
        if norm in result:
            raise ValueError(f"duplicate Concur rate limit prefix {norm!r}")
        try:
            result[norm] = parse_limit(limit_text)
        except ValueError as exc:
            raise ValueError(f"invalid Concur rate limit for {prefix!r}: {exc}") from None
    return result


def max_in_window(timestamps: list[float], period: float) -> int:
    """Largest number of grants in any closed window of ``period`` seconds.

    The check the guarantee promises; shared by the multi-process test and the benchmark.
    """
    ts = sorted(round(t * _US) for t in timestamps)
    period_us = round(period * _US)
    best = 0
    for i, start in enumerate(ts):
        best = max(best, bisect_right(ts, start + period_us) - i)
    return best
