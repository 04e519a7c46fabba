"""One hammering process for the multi-process rate-limit test (run as a script, not collected).

Usage: ``python ratelimit_worker.py '<json spec>'``; prints ``ready``, reads ``{"start_at": t}``
from stdin, then prints ``{"grants": [...], "denied": n, "denials": [...]}`` (limiter clock of each grant
and each refusal).  It waits for the common start time
so all processes contend from the first moment, stops by
itself at the deadline, and records the limiter's own clock at each grant (Redis ``TIME`` for
Redis) so the test merges timestamps from one clock.  Sleeping for ``decision.wait`` is this
test client's behaviour; pipeline tasks retry with a countdown instead.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connector.limits.ratelimit import Limit, make_limiter


def main(spec: dict) -> dict:
    limiter = make_limiter(spec.get("redis_url"), spec.get("sqlite_path"))
    limit = Limit(int(spec["requests"]), float(spec["period"]))
    key = spec["key"]
    limiter.peek(key, limit)  # connect (and create the SQLite schema) before the start line
    # Barrier: the test sends the common start time once every process is ready, so a slow
    # interpreter start on a loaded machine does not eat into the measured run.
    print("ready", flush=True)
    start = float(json.loads(sys.stdin.readline())["start_at"])
    deadline = start + float(spec["duration"])
    grants: list[float] = []
    denied = 0
    denials: list[float] = []
    while time.time() < start:
        time.sleep(min(0.01, max(0.0, start - time.time())))
    for _ in range(1_000_000):  # bounded even if the clock misbehaves
        if time.time() >= deadline:
            break
        decision = limiter.acquire(key, limit)
        if decision.allowed:
            grants.append(decision.now)  # every grant, even past the deadline: the test counts
        else:
            denied += 1
            denials.append(decision.now)
            time.sleep(min(decision.wait, max(0.0, deadline - time.time())))
    return {"grants": grants, "denied": denied, "denials": denials}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
