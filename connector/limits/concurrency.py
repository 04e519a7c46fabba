"""Per-tenant cap on calls *in flight*, shared by every process of the connector.

The rate limiter (``connector/limits/ratelimit.py``) counts calls per window; it says nothing about how
many are open at once.  Zoho Books also limits concurrent calls per organization (5 on the free
plan, 10 on paid plans, shared with every other app on the organization), so with several
workers a burst of slow calls can be refused even well under the per-minute budget.

A slot is a *lease*: ``acquire`` returns a token valid until ``now + lease``; ``release(token)``
frees it when the call ends.  A worker killed mid-call never releases, so expired leases are
dropped on every acquisition: a dead holder blocks a slot for at most ``lease`` seconds.  The
lease must outlast the longest call (the HTTP client's connect + read timeout), or a slow but
live call would lose its slot and a sixth call could start beside it.

Backends share the semantics (same shape as the rate limiter's):

- :class:`RedisSemaphore`  -- production; a sorted set holder -> expiry (µs, Redis ``TIME``),
  one Lua script trims expired holders, counts and adds atomically.
- :class:`SqliteSemaphore` -- embedded mode; one table, ``BEGIN IMMEDIATE`` serialises.
- :class:`MemorySemaphore` -- tests and single-process use; injectable clock.

A refusal is never a long sleep in a worker slot: :func:`acquire_slot_or_raise` polls for a short,
bounded time (a slot usually frees within one call's duration) and then raises
``RateLimitedError(local=True)``, which the task turns into a retry with a countdown, exactly like
a refusal of the rate limiter.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from connector.errors import RateLimitedError
from connector.limits.sqlite_file import SharedSqliteFile

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_LEASE",
    "MemorySemaphore",
    "RedisSemaphore",
    "Semaphore",
    "SlotDecision",
    "SqliteSemaphore",
    "acquire_slot_or_raise",
    "make_semaphore",
    "zoho_slots_key",
]

_US = 1_000_000
#: Longer than the HTTP client's connect + read timeout (5 s + 30 s), with room to spare.
DEFAULT_LEASE = 60.0
#: How long a caller polls for a free slot before giving the worker back (seconds).
DEFAULT_WAIT = 2.0
#: The countdown a refused call is retried after: slots free within one call's duration.
REFUSED_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class SlotDecision:
    """``token`` is set when a slot was taken; ``in_flight`` counts holders after the decision."""

    allowed: bool
    token: str | None
    in_flight: int
    #: Seconds until the earliest lease expires (an upper bound on the wait); 0 when allowed.
    expires_in: float = 0.0


class Semaphore(Protocol):
    def acquire(self, key: str, capacity: int, lease: float = DEFAULT_LEASE) -> SlotDecision:
        """Take a slot now or refuse; never waits."""
        ...

    def release(self, key: str, token: str) -> None:
        """Free the slot (a no-op if its lease already expired)."""
        ...

    def in_flight(self, key: str) -> int:
        """Live holders now (for ops pages and tests); takes nothing."""
        ...


def _check(capacity: int, lease: float) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be a positive int, got {capacity!r}")
    if not lease > 0:
        raise ValueError(f"lease must be > 0 seconds, got {lease!r}")


# --------------------------------------------------------------------------- memory


class MemorySemaphore:
    """In-process backend; correct for one process only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._holders: dict[str, dict[str, int]] = {}

    def _live(self, key: str, now_us: int) -> dict[str, int]:
        holders = self._holders.setdefault(key, {})
        for token in [t for t, exp in holders.items() if exp <= now_us]:
            del holders[token]
        return holders

    def acquire(self, key: str, capacity: int, lease: float = DEFAULT_LEASE) -> SlotDecision:
        _check(capacity, lease)
        with self._lock:
            now_us = round(self._clock() * _US)
            holders = self._live(key, now_us)
            if len(holders) >= capacity:
                first = min(holders.values())
                return SlotDecision(False, None, len(holders), (first - now_us) / _US)
            token = uuid.uuid4().hex
            holders[token] = now_us + round(lease * _US)
            return SlotDecision(True, token, len(holders))

    def release(self, key: str, token: str) -> None:
        with self._lock:
            holders = self._holders.get(key)
            if holders is not None:
                holders.pop(token, None)
                if not holders:
                    del self._holders[key]

    def in_flight(self, key: str) -> int:
        with self._lock:
            return len(self._live(key, round(self._clock() * _US)))


# --------------------------------------------------------------------------- redis

# KEYS[1] = sorted set, member = holder token, score = lease expiry (µs)
# ARGV = capacity (0 = count only), lease_us, token, now_us override ('' = Redis TIME)
_ACQUIRE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local now
if ARGV[4] ~= nil and ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now))
local held = redis.call('ZCARD', key)
if capacity == 0 then
  return {0, held, 0}
end
if held >= capacity then
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, held, tonumber(first[2]) - now}
end
redis.call('ZADD', key, string.format('%d', now + lease), ARGV[3])
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', key, math.ceil((tonumber(last[2]) - now) / 1000) + 1)
return {1, held + 1, 0}
"""


class RedisSemaphore:
    """Production backend: one atomic script per acquisition, on Redis's clock.

    The key expires with its last lease, so idle tenants leave nothing behind; a single key per
    tenant keeps it Cluster-safe.  ``release`` is a plain ``ZREM`` of the caller's own token.
    """

    def __init__(self, redis_client: redis.Redis, prefix: str = "inflight") -> None:
        self._redis = redis_client
        self._prefix = prefix
        self._script = redis_client.register_script(_ACQUIRE)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    def _eval(self, key: str, capacity: int, lease: float, token: str, now_us: int | None) -> Any:
        args: list[str | int] = [
            capacity,
            round(lease * _US),
            token,
            "" if now_us is None else str(int(now_us)),
        ]
        return [int(x) for x in self._script(keys=[self._key(key)], args=args)]

    def _acquire_at(
        self, key: str, capacity: int, lease: float, now_us: int | None
    ) -> SlotDecision:
        """``now_us`` replaces Redis ``TIME`` and exists only for tests (controlled time)."""
        _check(capacity, lease)
        token = uuid.uuid4().hex
        allowed, held, first_us = self._eval(key, capacity, lease, token, now_us)
        if allowed:
            return SlotDecision(True, token, held)
        return SlotDecision(False, None, held, max(0, first_us) / _US)

    def acquire(self, key: str, capacity: int, lease: float = DEFAULT_LEASE) -> SlotDecision:
        return self._acquire_at(key, capacity, lease, None)

    def release(self, key: str, token: str) -> None:
        self._redis.zrem(self._key(key), token)

    def _in_flight_at(self, key: str, now_us: int | None) -> int:
        return self._eval(key, 0, 1.0, "-", now_us)[1]

    def in_flight(self, key: str) -> int:
        return self._in_flight_at(key, None)


# --------------------------------------------------------------------------- sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inflight_slots (
    key        TEXT    NOT NULL,
    token      TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS inflight_slots_key ON inflight_slots (key, expires_at);
"""


class SqliteSemaphore(SharedSqliteFile):
    """Embedded-mode backend: the holders in a SQLite file shared by processes on one machine.

    Lives in the rate limiter's file (a separate table): ``BEGIN IMMEDIATE`` takes the write
    lock before counting, so trim-count-insert is atomic across processes.
    """

    SCHEMA = _SCHEMA

    def acquire(self, key: str, capacity: int, lease: float = DEFAULT_LEASE) -> SlotDecision:
        _check(capacity, lease)
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                now_us = round(self._clock() * _US)
                conn.execute("DELETE FROM inflight_slots WHERE expires_at <= ?", (now_us,))
                held, first = conn.execute(
                    "SELECT COUNT(*), MIN(expires_at) FROM inflight_slots WHERE key = ?", (key,)
                ).fetchone()
                token: str | None = None
                if held < capacity:
                    token = uuid.uuid4().hex
                    conn.execute(
                        "INSERT INTO inflight_slots (key, token, expires_at) VALUES (?, ?, ?)",
                        (key, token, now_us + round(lease * _US)),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if token is not None:
            return SlotDecision(True, token, held + 1)
        return SlotDecision(False, None, held, max(0, first - now_us) / _US)

    def release(self, key: str, token: str) -> None:
        with self._lock:
            self._connection().execute(
                "DELETE FROM inflight_slots WHERE key = ? AND token = ?", (key, token)
            )

    def in_flight(self, key: str) -> int:
        with self._lock:
            now_us = round(self._clock() * _US)
            (held,) = (
                self._connection()
                .execute(
                    "SELECT COUNT(*) FROM inflight_slots WHERE key = ? AND expires_at > ?",
                    (key, now_us),
                )
                .fetchone()
            )
            return int(held)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


# --------------------------------------------------------------------------- factory & use


def make_semaphore(redis_url: str | None, sqlite_path: str | None) -> Semaphore:
    """Redis if configured, else SQLite, else memory (one process only), like the limiter."""
    if redis_url:
        import redis as redis_lib

        return RedisSemaphore(redis_lib.Redis.from_url(redis_url))
    if sqlite_path:
        return SqliteSemaphore(sqlite_path)
    return MemorySemaphore()


def zoho_slots_key(organization_id: str) -> str:
    """Zoho counts concurrent calls per organization, whichever app or worker makes them."""
    return f"zoho:org:{organization_id}"


def acquire_slot_or_raise(
    semaphore: Semaphore,
    key: str,
    capacity: int,
    *,
    lease: float = DEFAULT_LEASE,
    wait: float = DEFAULT_WAIT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Take a slot, polling for at most ``wait`` seconds, or raise ``RateLimitedError``.

    The brief poll (10 ms doubling to 100 ms) is worth it: a slot frees when any of the
    ``capacity`` calls in flight ends, typically within a fraction of a second, whereas a broker
    retry costs a round trip through the queue.  Past ``wait`` the worker is given back: the
    error is ``local`` (nothing was sent), so the task retries with a countdown and the wait
    does not count as a failed attempt.
    """
    deadline = clock() + max(0.0, wait)
    pause = 0.01
    while True:
        decision = semaphore.acquire(key, capacity, lease)
        if decision.allowed and decision.token is not None:
            return decision.token
        left = deadline - clock()
        if left <= 0:
            system = key.partition(":")[0] or "unknown"
            raise RateLimitedError(
                f"{system} concurrency cap reached: {decision.in_flight} of {capacity} calls "
                f"in flight for the organization; retry in {REFUSED_RETRY_AFTER:g}s",
                retry_after=REFUSED_RETRY_AFTER,
                system=system,
                local=True,
            )
        sleep(min(pause, left))
        pause = min(pause * 2, 0.1)
