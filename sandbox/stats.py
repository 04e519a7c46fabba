"""Request accounting and the sliding-window limiter both vendors share.

The counters answer the questions a benchmark or a duplicate-hunting test asks after a run: how
many calls per endpoint and tenant, how many 429s, how close a client came to a rate limit and how
often it refreshed tokens.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Any


class RateWindow:
    """Sliding-window limiter keyed by tenant (or credential).

    A sliding log rather than a fixed bucket because Zoho's "100 per minute" is enforced per
    rolling minute in practice and a fixed bucket would let 200 calls through across a boundary.
    Uses the real monotonic clock so benchmarks measure real pacing.

    ``clock`` is injectable so that token throttles can follow the sandbox clock.
    """

    def __init__(
        self, limit: int, period: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = int(limit)
        self.period = float(period)
        self._clock = clock
        self._key_limits: dict[str, int] = {}
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._max: dict[str, int] = {}
        self._lock = threading.Lock()

    def _trim(self, q: deque[float], now: float) -> None:
        cutoff = now - self.period
        while q and q[0] <= cutoff:
            q.popleft()

    def hit(self, key: str) -> bool:
        """Record an attempt; True if it is within the limit (rejected attempts are not logged)."""
        now = self._clock()
        with self._lock:
            q = self._hits[key]
            self._trim(q, now)
            if len(q) >= self._key_limits.get(key, self.limit):
                return False
            q.append(now)
            if len(q) > self._max.get(key, 0):
                self._max[key] = len(q)
            return True

    def count(self, key: str) -> int:
        """Requests currently inside the window for ``key``."""
        now = self._clock()
        with self._lock:
            q = self._hits.get(key)
            if not q:
                return 0
            self._trim(q, now)
            return len(q)

    def max_in_window(self, key: str) -> int:
        """Largest number of accepted requests ever seen inside one window for ``key``."""
        with self._lock:
            return self._max.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._max)

    def limit_for(self, key: str) -> int:
        return self._key_limits.get(key, self.limit)

    def set_limit(self, limit: int, period: float | None = None, key: str | None = None) -> None:
        """Change the limit for everyone, or only for ``key`` (a per-tenant override)."""
        with self._lock:
            if key is not None:
                self._key_limits[key] = int(limit)
            else:
                self.limit = int(limit)
            if period is not None:
                self.period = float(period)

    def clear_limits(self) -> None:
        with self._lock:
            self._key_limits.clear()

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
            self._max.clear()


class RequestStats:
    """Counters read back through ``GET /_admin/stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.per_endpoint: Counter[str] = Counter()
        self.per_tenant: Counter[str] = Counter()
        self.per_tenant_endpoint: Counter[tuple[str, str]] = Counter()
        self.status_counts: Counter[int] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.refreshes: Counter[str] = Counter()
        self.windows: dict[str, RateWindow] = {}

    def record(self, endpoint: str, tenant: str | None, status: int) -> None:
        with self._lock:
            self.per_endpoint[endpoint] += 1
            self.status_counts[status] += 1
            if tenant:
                self.per_tenant[tenant] += 1
                self.per_tenant_endpoint[(tenant, endpoint)] += 1

    def record_429(self, tenant: str) -> None:
        with self._lock:
            self.rate_limited[tenant] += 1

    def record_refresh(self, credential_id: str) -> None:
        with self._lock:
            self.refreshes[credential_id] += 1

    def register_window(self, name: str, window: RateWindow) -> RateWindow:
        """Expose a limiter's ``max_in_window`` figures under ``name`` in the stats report."""
        with self._lock:
            self.windows[name] = window
        return window

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_tenant: dict[str, dict[str, int]] = defaultdict(dict)
            for (tenant, endpoint), n in self.per_tenant_endpoint.items():
                by_tenant[tenant][endpoint] = n
            windows = dict(self.windows)
            out: dict[str, Any] = {
                "total": sum(self.per_endpoint.values()),
                "per_endpoint": dict(self.per_endpoint),
                "per_tenant": dict(self.per_tenant),
                "per_tenant_endpoint": dict(by_tenant),
                "status_counts": {str(k): v for k, v in self.status_counts.items()},
                "rate_limited": dict(self.rate_limited),
                "rate_limited_total": sum(self.rate_limited.values()),
                "refreshes": dict(self.refreshes),
            }
        out["max_in_window"] = {name: w.snapshot() for name, w in windows.items()}
        out["rate_limits"] = {
            name: {"limit": w.limit, "period": w.period} for name, w in windows.items()
        }
        return out

    def reset(self) -> None:
        """Clear counters; registered windows stay registered but forget their history."""
        with self._lock:
            self.per_endpoint.clear()
            self.per_tenant.clear()
            self.per_tenant_endpoint.clear()
            self.status_counts.clear()
            self.rate_limited.clear()
            self.refreshes.clear()
            windows = list(self.windows.values())
        for w in windows:
            w.reset()
