"""A closed-loop HTTP load generator: N senders, each posting as fast as answers come back.

Runs in its own process (``python -m bench.load``) so its GIL does not compete with the
server's; prints a JSON summary (count, errors, throughput, p50/p99 latency in ms).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import threading
import time
import uuid

import requests


def body_for(i: int, prefix: str) -> bytes:
    bill = {
        "bill_id": f"{prefix}{i}",
        "bill_number": f"BILL-{prefix}{i}",
        "last_modified_time": "2026-11-28T10:00:00+0000",
        "vendor_id": "4600000000000001",
        "total": 123.45,
    }
    return json.dumps({"bill": bill}).encode()


def run(url: str, secret: str, senders: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    prefix = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))

    def sender() -> None:
        nonlocal errors
        session = requests.Session()
        local: list[float] = []
        local_errors = 0
        while time.perf_counter() < stop_at:
            with lock:
                i = next(counter)
            body = body_for(i, prefix)
            signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            start = time.perf_counter()
            try:
                response = session.post(
                    url,
                    data=body,
                    timeout=10,
                    headers={
                        "Content-Type": "application/json",
                        "X-Zoho-Webhook-Signature": signature,
                    },
                )
                ok = response.status_code == 202
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - start
            if ok:
                local.append(elapsed)
            else:
                local_errors += 1
        with lock:
            latencies.extend(local)
            errors += local_errors

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "count": len(latencies),
        "errors": errors,
        "seconds": round(wall, 3),
        "throughput": round(len(latencies) / wall, 1),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--secret", default="")
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(json.dumps(run(args.url, args.secret, args.senders, args.seconds)))


if __name__ == "__main__":
    main()
