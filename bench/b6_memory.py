"""B6 memory: a worker's RSS after 10,000 records vs after 1,000.

One worker (``--concurrency 4``, ``--max-tasks-per-child`` unset, so the same pool processes
live through the run), sandbox limits off, one connection. ``n`` bills are enqueued at once;
the worker's resident memory (parent + pool processes, read from /proc) is sampled when 1,000
records are posted and again when all ``n`` are. Target: RSS(n) <= 1.2 x RSS(1,000).

Four pool processes (not two) so that 10,000 records fit the benchmark's time budget on two
cores; Celery spreads the work evenly, so between the two samples each pool process also goes
through ten times as many records, the same factor the target is about.
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness as h
from bench.b4_overhead import UNLIMITED

CONCURRENCY = 4


def sample(pid: int) -> dict[str, Any]:
    kids = h.children(pid)
    per = {str(k): h.rss_kb(k) for k in kids}
    parent = h.rss_kb(pid)
    return {"parent_kb": parent, "pool_kb": per, "total_kb": parent + sum(per.values())}


def run(quick: bool = False) -> dict[str, Any]:
    n = 2000 if quick else 10000
    first = 1000 if not quick else 200
    with h.bench_stack("b6", **UNLIMITED) as bench:
        cid = h.connect(bench)
        ids = h.generate_bills(bench, cid, n)
        proc = bench.start_worker("b6-worker", concurrency=CONCURRENCY)
        assert proc.popen is not None
        pid = proc.popen.pid
        load_before = h.load_average()
        started = time.monotonic()
        bench.enqueue(ids)
        at_first: dict[str, Any] | None = None
        while True:
            posted = h.states(bench, ids).get("posted", 0)
            if at_first is None and posted >= first:
                at_first = {"posted": posted, **sample(pid)}
            if posted >= n:
                break
            if time.monotonic() - started > 60 + n * 0.5:
                raise TimeoutError(f"B6: {posted} of {n} posted")
            time.sleep(1.0)
        at_end = {"posted": posted, **sample(pid)}
        wall = time.monotonic() - started
        load_after = h.load_average()
    assert at_first is not None
    ratio = at_end["total_kb"] / at_first["total_kb"]
    pool_ratios = {
        k: round(v / at_first["pool_kb"][k], 3)
        for k, v in at_end["pool_kb"].items()
        if at_first["pool_kb"].get(k)
    }
    return {
        "id": "B6",
        "what": f"memory: worker RSS after {n:,} vs {first:,} records",
        "inputs": {"records": n, "first_sample_at": first, "worker_concurrency": CONCURRENCY},
        "baseline": at_first,
        "measured": {**at_end, "pool_ratios": pool_ratios, "wall_seconds": round(wall, 1)},
        "ratio": round(ratio, 3),
        "target": "RSS(10,000) <= 1.2 x RSS(1,000)",
        "met": ratio <= 1.2 and all(r <= 1.2 for r in pool_ratios.values()),
        "load_average": {"before": load_before, "after": load_after},
        "summary": {
            "baseline": f"{at_first['total_kb'] / 1024:.0f} MiB",
            "measured": f"{at_end['total_kb'] / 1024:.0f} MiB",
        },
    }
