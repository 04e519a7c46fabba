"""One worker process for the multi-process concurrency-cap test (run as a script, not collected).

Usage: ``python concurrency_worker.py '<json spec>'``; prints ``ready``, reads ``{"go": 1}`` from
stdin, then prints ``{"ok": n, "concurrency_errors": n, "other_errors": {...}, "refusals": n}``.

Each process runs ``threads`` threads, like a Celery worker with that concurrency, and each thread
makes ``calls`` real Zoho Books calls through ``ZohoBooksClient`` with the product's
``ZohoThrottle`` (shared Redis or SQLite semaphore and limiter).  A local refusal (cap or rate
limiter) is retried after its ``retry_after``: the test client's stand-in for the task's
countdown retry.  A vendor refusal is counted, never retried, so the test sees every one.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connector.api.throttle import ZohoThrottle
from connector.errors import ApiError, RateLimitedError
from connector.limits.concurrency import make_semaphore, zoho_slots_key
from connector.limits.ratelimit import Limit, make_limiter, zoho_key
from connector.zoho.client import ZohoBooksClient


class _Token:
    def __init__(self, token: str) -> None:
        self.token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Zoho-oauthtoken {self.token}"}

    def on_unauthorized(self) -> bool:
        return False


def main(spec: dict) -> dict:
    org = spec["organization_id"]
    limiter = make_limiter(spec.get("redis_url"), spec.get("sqlite_path"))
    semaphore = make_semaphore(spec.get("redis_url"), spec.get("sqlite_path"))
    limit = Limit(int(spec["requests"]), float(spec["period"]))
    cap = int(spec["max_in_flight"])
    semaphore.in_flight(zoho_slots_key(org))  # connect before the start line
    lock = threading.Lock()
    outcome: Counter[str] = Counter()

    def run() -> None:
        throttle = ZohoThrottle(
            limiter,
            lambda _m, _p: (zoho_key(org), limit),
            organization_id=org,
            semaphore=semaphore if cap else None,
            slots_key=zoho_slots_key(org),
            max_in_flight=max(cap, 1),
        )
        client = ZohoBooksClient(spec["api_domain"], org, auth=_Token(spec["token"]),
                                 throttle=throttle)  # fmt: skip
        done = 0
        for _ in range(100_000):  # bounded
            if done >= int(spec["calls"]):
                break
            try:
                client.request("GET", "/settings/currencies")
                key = "ok"
                done += 1
            except RateLimitedError as exc:
                if exc.local:
                    key = "refusals"
                    time.sleep(min(exc.retry_after, 0.05))
                elif "in flight" in str(exc):
                    key, done = "concurrency_errors", done + 1
                else:
                    key, done = f"429:{exc}", done + 1
            except ApiError as exc:
                key, done = f"error:{type(exc).__name__}", done + 1
            with lock:
                outcome[key] += 1

    threads = [threading.Thread(target=run) for _ in range(int(spec["threads"]))]
    print("ready", flush=True)
    json.loads(sys.stdin.readline())
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return dict(outcome)


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
