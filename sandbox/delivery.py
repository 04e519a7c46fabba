"""Outgoing webhook delivery with retries, on one background thread.

Zoho retries failed workflow webhooks "at increasing intervals" (count and spacing UNCONFIRMED);
the sandbox does the same with short, configurable intervals so tests stay fast.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

DEFAULT_RETRY_ON = frozenset({401, 403, 429, 500, 501, 502, 503, 504})


@dataclass
class _Job:
    id: int
    url: str
    body: bytes
    headers: dict[str, str]
    attempts: int
    retry_on: frozenset[int]
    attempt: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


class Deliverer:
    """Queue of webhook POSTs; ``flush`` lets tests wait for quiescence without sleeping."""

    def __init__(self, base_delay: float = 0.2, factor: float = 2.0, timeout: float = 5.0) -> None:
        self.base_delay = base_delay
        self.factor = factor
        self.timeout = timeout
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Job]] = []
        self._busy = 0
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self.log: deque[dict[str, Any]] = deque(maxlen=5000)
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._generation = 0

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="sandbox-webhook-deliverer", daemon=True
            )
            self._thread.start()

    def submit(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        attempts: int = 5,
        retry_on: set[int] | frozenset[int] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        job = _Job(
            id=next(self._ids),
            url=url,
            body=body,
            headers=dict(headers),
            attempts=max(1, int(attempts)),
            retry_on=frozenset(retry_on) if retry_on is not None else DEFAULT_RETRY_ON,
            meta=dict(meta or {}),
        )
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic(), next(self._seq), job))
            self._ensure_thread()
            self._cond.notify_all()
        return job.id

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._heap:
                        due = self._heap[0][0]
                        wait = due - time.monotonic()
                        if wait <= 0:
                            _, _, job = heapq.heappop(self._heap)
                            self._busy += 1
                            generation = self._generation
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
            try:
                self._attempt(job, generation)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _attempt(self, job: _Job, generation: int) -> None:
        job.attempt += 1
        entry: dict[str, Any] = {
            "delivery_id": job.id,
            "attempt": job.attempt,
            "url": job.url,
            "at": time.time(),
            **job.meta,
        }
        status: int | None = None
        try:
            resp = self._session.post(
                job.url, data=job.body, headers=job.headers, timeout=self.timeout
            )
            status = resp.status_code
            entry["status"] = status
            ok = 200 <= status < 300
            retry = (not ok) and status in job.retry_on
        except requests.RequestException as exc:
            entry["status"] = None
            entry["error"] = f"{type(exc).__name__}: {exc}"
            ok, retry = False, True
        entry["ok"] = ok
        will_retry = retry and job.attempt < job.attempts
        entry["will_retry"] = will_retry
        with self._cond:
            if generation != self._generation:
                return  # a reset happened while this attempt was in flight
            self.log.append(entry)
            if will_retry:
                delay = self.base_delay * (self.factor ** (job.attempt - 1))
                heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), job))
        if not ok:
            log.info(
                "webhook delivery %s attempt %s to %s failed: %s",
                job.id,
                job.attempt,
                job.url,
                entry.get("error") or status,
            )

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued or in flight; False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._busy

    def entries(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self.log)

    def configure(
        self,
        base_delay: float | None = None,
        factor: float | None = None,
        timeout: float | None = None,
    ) -> None:
        with self._cond:
            if base_delay is not None:
                self.base_delay = float(base_delay)
            if factor is not None:
                self.factor = float(factor)
            if timeout is not None:
                self.timeout = float(timeout)

    def reset(self) -> None:
        """Drop queued deliveries and the log; attempts in flight are discarded when they end."""
        with self._cond:
            self._heap.clear()
            self.log.clear()
            self._generation += 1
            self._cond.notify_all()
