"""How long the fault-injection suite waits, derived from the stack's own settings (issue #21).

No scenario waits a fixed number of seconds. Each wait is one of two kinds (docs/chaos.md,
"Waits"):

- **Progress waits** (``wait_progress``): wait while the thing awaited keeps getting closer
  (records posted, faults fired, work remaining). The wait fails only after ``stall`` seconds
  (stretched by the load, as deadlines are) without any progress. A slow machine posts more slowly and so waits longer, never fails,
  because every new record resets the clock; a stuck record stops the progress and is
  reported one ``stall`` later.
- **Deadlines** (``Waits.deadline``), for one-off events with nothing to count (a connection
  marked ``needs_reauth``, ``/readyz`` back): ``stall`` stretched by the machine's load.

``stall`` is the longest time the connector may legitimately go without finishing anything,
from the configured intervals: twice the re-drive latency (a step killed mid-way waits out its
lease, then the next sweep; the re-driven step may be killed again), the longest back-off
either clock may schedule (transient and waiting caps), one polling interval (the back-stops
and the vendors pass), the longest gap between two attempts of a webhook delivery the sandbox
simulates (a delivery refused during an outage comes back only after it), and, where the
scenario brings Zoho 429s, Zoho's minute window (the connector waits it out; Zoho sends no
``Retry-After``).

``quiet`` is how long the ledger must stay unchanged, with nothing left to do, before the
final assertions read it: one polling interval (the vendors pass is the last producer still
running: its creates go through ``posting``) plus two sweeps (what the pass left is re-driven).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from connector.config import Settings


@dataclass(frozen=True)
class Deliveries:
    """The sandbox's webhook senders: ``base * factor**(n-1)`` before attempt ``n + 1``."""

    base: float
    factor: float
    timeout: float
    attempts: int

    @property
    def longest_gap(self) -> float:
        """The longest wait between two attempts of one delivery (the last retry), plus the
        time the attempt before it may take to time out."""
        if self.attempts < 2:
            return self.timeout
        return self.base * self.factor ** (self.attempts - 2) + self.timeout


@dataclass(frozen=True)
class Waits:
    """A scenario's waits, from its settings (see the module docstring for the formula)."""

    lease: float
    sweep: float
    poll: float
    retry_cap: float
    waiting_cap: float
    delivery_gap: float
    throttle: float = 0.0

    @classmethod
    def of(
        cls, settings: Settings, deliveries: Deliveries, *, vendors_pass: bool,
        throttle: float = 0.0,
    ) -> Waits:  # fmt: skip
        """``vendors_pass``: the scenario runs the vendors reconciliation on a short interval
        (otherwise its first run is an hour away and it plays no part)."""
        polls = [settings.payables_poll_interval, settings.expenses_poll_interval]
        if vendors_pass:
            polls.append(settings.vendors_sync_interval)
        return cls(
            lease=float(settings.lease_seconds),
            sweep=float(settings.sweep_interval),
            poll=float(max(polls)),
            retry_cap=float(settings.retry_cap),
            waiting_cap=float(settings.waiting_cap),
            delivery_gap=deliveries.longest_gap,
            throttle=throttle,
        )

    def with_(self, **changes: Any) -> Waits:
        return replace(self, **changes)

    @property
    def redrive(self) -> float:
        """A step whose worker died is running again within this: its lease, then a sweep."""
        return self.lease + self.sweep

    @property
    def stall(self) -> float:
        """No progress for this long means something is stuck."""
        return (
            2 * self.redrive
            + self.retry_cap
            + self.waiting_cap
            + self.poll
            + self.delivery_gap
            + self.throttle
        )

    @property
    def quiet(self) -> float:
        """The ledger unchanged this long, with nothing left to do: at rest."""
        return self.poll + 2 * self.sweep

    def deadline(self) -> float:
        """For a one-off event: ``stall`` stretched by the load (1-minute load per core)."""
        return self.stall * load_factor()

    def formula(self) -> str:
        return (
            f"stall = 2*(lease {self.lease:g} + sweep {self.sweep:g}) + retry cap "
            f"{self.retry_cap:g} + waiting cap {self.waiting_cap:g} + poll {self.poll:g} + "
            f"delivery gap {self.delivery_gap:g} + throttle {self.throttle:g} = {self.stall:g}s; "
            f"quiet = poll + 2*sweep = {self.quiet:g}s"
        )


def load_factor() -> float:
    """How much busier than one runnable process per core the machine is (at least 1)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 1.0
    return max(1.0, load / float(os.cpu_count() or 1))


class Stalled(AssertionError):
    """A progress wait saw no progress for its whole stall window."""


def wait_progress(
    done: Callable[[], bool],
    progress: Callable[[], float],
    *,
    stall: float,
    what: str,
    interval: float = 0.25,
) -> float:
    """Wait until ``done()``; fail only when ``progress()`` has not reached a new best for
    ``stall`` seconds. ``progress`` grows towards the goal (records posted, minus work left);
    only a new best counts, so work going round in circles (a record retried for ever) does
    not keep the wait alive. Returns the seconds waited."""
    started = time.monotonic()
    best = progress()
    best_at = started
    while True:
        if done():
            return time.monotonic() - started
        now = time.monotonic()
        current = progress()
        if current > best:
            best, best_at = current, now
        elif now - best_at > stall * load_factor():
            raise Stalled(
                f"timed out waiting for {what}: no progress for {now - best_at:.0f}s "
                f"(stall window {stall:.0f}s x load {load_factor():.1f}; best {best:g}; "
                f"waited {now - started:.0f}s)"
            )
        time.sleep(interval)  # polling interval of the observer, not a wait for a race


def wait_quiet(
    fingerprint: Callable[[], Any],
    ready: Callable[[], bool],
    *,
    quiet: float,
    stall: float,
    what: str,
    interval: float = 0.25,
) -> float:
    """Wait until ``ready()`` has held and ``fingerprint()`` has not changed for ``quiet``
    seconds in a row; fail if that takes longer than ``stall`` plus ``quiet`` (something keeps
    changing the ledger although nothing is left to do). Returns the seconds waited."""
    started = time.monotonic()
    since: float | None = None
    seen: Any = None
    while True:
        now = time.monotonic()
        if ready():
            current = fingerprint()
            if since is None or current != seen:
                since, seen = now, current
            elif now - since >= quiet:
                return now - started
        else:
            since = None
        if now - started > stall * load_factor() + quiet:
            raise Stalled(
                f"timed out waiting for {what}: not at rest for {quiet:.0f}s within "
                f"{now - started:.0f}s (stall window {stall:.0f}s x load {load_factor():.1f})"
            )
        time.sleep(interval)  # polling interval of the observer
