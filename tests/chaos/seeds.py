"""``CHAOS_SEED``: every random choice of the fault-injection suite comes from it (issue #21).

Kill moments, where faults are placed, the moment a service is cut or restarted, and the order
in which the backlog is created and approved (so the order webhooks are delivered in) are drawn
from ``rng(scenario)``, a ``random.Random`` seeded with ``CHAOS_SEED`` and the scenario's name.
Unset, the seed is drawn at random once per run. It is printed in the pytest header, in every
scenario's summary line and in the message of a failing scenario, so
``CHAOS_SEED=<n> make chaos`` replays the same choices (the processes' own timing still varies:
a seed fixes what the suite does, not how fast the machine does it).
"""

from __future__ import annotations

import os
import random


def _seed() -> int:
    raw = os.environ.get("CHAOS_SEED", "").strip()
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise SystemExit(f"CHAOS_SEED must be an integer, not {raw!r}") from None
    return random.SystemRandom().randrange(1, 2**31)


#: This run's seed (from ``CHAOS_SEED``, or drawn once per run).
SEED: int = _seed()


def rng(scenario: str) -> random.Random:
    """The scenario's own random stream: independent of which other scenarios run."""
    return random.Random(f"{SEED}:{scenario}")


def replay_hint() -> str:
    return f"CHAOS_SEED={SEED} (replay: CHAOS_SEED={SEED} make chaos)"
