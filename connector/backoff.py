"""Back-off schedules: short broker countdowns for transient errors, long database waits for
missing dependencies.

Two clocks on purpose. A transient error (429, 5xx, timeout) retries through the broker with a
countdown capped well below the Redis visibility timeout, because a longer countdown is
redelivered and run twice (celery-reliability §2). A missing dependency (vendor, account,
mapping) waits in the database (``next_attempt_at``) for minutes to hours and the sweeper
re-drives it, so no broker message has to survive that long.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off: ``base * 2**(attempt-1)`` capped at ``cap``, with optional jitter."""

    base: float
    cap: float
    jitter: bool = True

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        raw = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        if not self.jitter:
            return raw
        # "Equal jitter": never less than half the step, so a storm of 429s spreads out but a
        # single retry is not made pointlessly short.
        rng = rng or random
        return raw / 2 + rng.uniform(0, raw / 2)


#: Transient API errors: 2 s doubling to 5 minutes, via broker countdowns.
TRANSIENT = Backoff(base=2.0, cap=300.0)
#: Waiting records (missing vendor/account/mapping): 1 minute doubling to 1 hour.
WAITING = Backoff(base=60.0, cap=3600.0, jitter=False)
#: Give up on a waiting record after this long: it goes ``dead`` and is listed for replay.
WAITING_GIVE_UP = dt.timedelta(days=3)
#: Give up on transient errors after this many tries of one step.
MAX_TRANSIENT_ATTEMPTS = 10


@dataclass(frozen=True)
class Schedules:
    """The two clocks as configured (``CONNECTOR_RETRY_*``, ``CONNECTOR_WAITING_*``)."""

    transient: Backoff
    waiting: Backoff
    waiting_give_up: dt.timedelta


DEFAULT_SCHEDULES = Schedules(TRANSIENT, WAITING, WAITING_GIVE_UP)


def schedules(settings: Any) -> Schedules:
    """The back-off schedules of ``settings`` (a ``connector.config.Settings``); the module
    defaults when ``settings`` is ``None`` or predates these settings."""
    if settings is None or not hasattr(settings, "retry_base"):
        return DEFAULT_SCHEDULES
    return Schedules(
        transient=Backoff(base=settings.retry_base, cap=settings.retry_cap),
        waiting=Backoff(base=settings.waiting_base, cap=settings.waiting_cap, jitter=False),
        waiting_give_up=dt.timedelta(seconds=settings.waiting_give_up),
    )
