"""The ``Throttle`` hooks of ``ApiClient``: the shared limiter, and for Zoho also the
per-organization concurrency cap and the daily quota (``connector.limits.ratelimit``,
``connector.limits.concurrency``, ``connector.limits.quota``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from connector.limits import quota as quota_mod
from connector.limits.concurrency import (
    DEFAULT_LEASE,
    DEFAULT_WAIT,
    Semaphore,
    acquire_slot_or_raise,
)
from connector.limits.ratelimit import Limit, Limiter, acquire_or_raise

log = logging.getLogger(__name__)

#: Maps (method, path) of a call to the limiter key and budget it draws from.
KeyFor = Callable[[str, str], tuple[str, Limit]]
#: Called once the attempt is over, with the response (``None`` when nothing came back).
Finish = Callable[[Any], None]


class LimiterThrottle:
    """Takes one unit from the tenant's shared budget before every attempt, or raises.

    ``RateLimitedError`` carries the exact wait, so the task retries with a countdown instead of
    sleeping (brief §5).
    """

    def __init__(self, limiter: Limiter, key_for: KeyFor) -> None:
        self.limiter = limiter
        self.key_for = key_for

    def before_request(self, method: str, path: str) -> Finish | None:
        key, limit = self.key_for(method, path)
        acquire_or_raise(self.limiter, key, limit)
        return None


class ZohoThrottle(LimiterThrottle):
    """One Zoho organization: daily reserve (bulk calls only), then a slot among the
    organization's calls in flight, then the per-minute budget; the slot is released and the
    quota headers stored when the attempt ends.

    Order matters: the reserve check costs nothing to refuse; the slot is taken before the
    per-minute unit because a refused slot can be given back for free while a spent minute unit
    cannot, so a caller waiting for a slot never burns the minute's budget.
    """

    def __init__(
        self,
        limiter: Limiter,
        key_for: KeyFor,
        *,
        organization_id: str,
        semaphore: Semaphore | None = None,
        slots_key: str = "",
        max_in_flight: int = 5,
        quota: quota_mod.QuotaStore | None = None,
        reserve: float = 0.10,
        lease: float = DEFAULT_LEASE,
        slot_wait: float = DEFAULT_WAIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(limiter, key_for)
        self.organization_id = organization_id
        self.semaphore = semaphore
        self.slots_key = slots_key
        self.max_in_flight = max_in_flight
        self.quota = quota
        self.reserve = reserve
        self.lease = lease
        self.slot_wait = slot_wait
        self.clock = clock

    def before_request(self, method: str, path: str) -> Finish | None:
        org = self.organization_id
        if self.quota is not None:
            what = quota_mod.current_bulk()
            if what is not None:
                quota_mod.check_reserve(self.quota.get(org), self.reserve, self.clock(), what)
        token: str | None = None
        if self.semaphore is not None:
            token = acquire_slot_or_raise(
                self.semaphore, self.slots_key, self.max_in_flight,
                lease=self.lease, wait=self.slot_wait,
            )  # fmt: skip
        try:
            super().before_request(method, path)
            if self.quota is not None:
                self.quota.spend(org)
        except BaseException:
            self._release(token)
            raise

        def finish(response: Any) -> None:
            self._release(token)
            if self.quota is None or response is None:
                return
            try:
                self.quota.observe(org, response.headers)
            except Exception:
                # The call is over (a POST may have landed); a store hiccup must not turn its
                # answer into an error. The next answer brings the count up to date.
                log.warning("could not store the Zoho daily quota headers", exc_info=True)

        return finish

    def _release(self, token: str | None) -> None:
        if token is None or self.semaphore is None:
            return
        try:
            self.semaphore.release(self.slots_key, token)
        except Exception:
            # The lease frees the slot anyway; a store hiccup must not fail a finished call.
            log.warning(
                "could not release a Zoho in-flight slot; its lease frees it", exc_info=True
            )
