"""The ``Throttle`` hook of ``ApiClient`` backed by the shared limiter (``connector.ratelimit``)."""

from __future__ import annotations

from collections.abc import Callable

from connector.ratelimit import Limit, Limiter, acquire_or_raise

#: Maps (method, path) of a call to the limiter key and budget it draws from.
KeyFor = Callable[[str, str], tuple[str, Limit]]


class LimiterThrottle:
    """Takes one unit from the tenant's shared budget before every attempt, or raises.

    ``RateLimitedError`` carries the exact wait, so the task retries with a countdown instead of
    sleeping (brief §5).
    """

    def __init__(self, limiter: Limiter, key_for: KeyFor) -> None:
        self.limiter = limiter
        self.key_for = key_for

    def before_request(self, method: str, path: str) -> None:
        key, limit = self.key_for(method, path)
        acquire_or_raise(self.limiter, key, limit)
