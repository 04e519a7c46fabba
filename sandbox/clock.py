"""Sandbox clock: real time plus an offset the admin API can move forward.

Token and grant-code expiry read this clock so tests can expire a token by advancing it instead of
sleeping. Rate windows deliberately do NOT use it: benchmarks must see real throughput limits.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Epoch-seconds clock that can jump forward (never backward) for expiry tests."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward; returns the new total offset so callers can report it."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += float(seconds)
            return self._offset

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
