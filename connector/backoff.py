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
