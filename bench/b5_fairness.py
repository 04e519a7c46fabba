"""B5 fairness: do 19 small organizations wait behind one big organization's backlog?

20 connections, each on its own Zoho organization (the seeded one plus extra organizations the
benchmark sandbox adds) and its own Concur company (a company belongs to one connection),
sandbox limits off, two worker processes
(``--concurrency 1`` each, all queues).

- baseline ("big idle"): 10 bills for each of the 19 small organizations, enqueued at once;
- measured ("big busy"): the big organization's ``backlog`` bills are enqueued first, then the
  same 19 x 10 small bills (fresh ones) right after.

Time to ``posted`` per record: ledger ``created_at`` -> the audit row that moved it to
``posted`` (records are created just before they are enqueued). Target: the small
organizations' p95 when busy <= 2x their p95 when idle. The measured phase stops once every
small record is posted; the rest of the big backlog is then dropped.
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness as h
from bench.b4_overhead import UNLIMITED
from bench.sandbox_serve import extra_org_ids

SMALL_ORGS = 19
PER_SMALL = 10


def small_latencies(bench: h.Bench, ids: list[int]) -> list[float]:
    return [p - c for c, p in h.posted_times(bench, ids).values()]


def _make_small(bench: h.Bench, cids: list[int], orgs: list[str]) -> list[int]:
    ids: list[int] = []
    for cid, org in zip(cids, orgs, strict=True):
        ids += h.generate_bills(bench, cid, PER_SMALL, org_id=org)
    return ids


def _touch(bench: h.Bench, ids: list[int]) -> None:
    """Restart each record's clock now (they were created while bills were being listed)."""
    import sqlalchemy as sa

    from connector.db import utcnow
    from connector.models import SyncRecord

    with bench.db.session() as s:
        s.execute(sa.update(SyncRecord).where(SyncRecord.id.in_(ids)).values(created_at=utcnow()))


def run(quick: bool = False) -> dict[str, Any]:
    backlog = 400 if quick else 2000
    orgs = extra_org_ids(SMALL_ORGS)
    with h.bench_stack("b5", extra_orgs=SMALL_ORGS, **UNLIMITED) as bench:
        big = h.connect(bench, name="big")
        small = [
            h.connect(bench, org_id=o, name=f"small-{o}", own_concur_company=True) for o in orgs
        ]
        for i in range(2):
            bench.start_worker(f"b5-w{i}", concurrency=1)
        # warm-up: one bill per connection (tokens, pools)
        warm = h.generate_bills(bench, big, 2)
        for cid, org in zip(small, orgs, strict=True):
            warm += h.generate_bills(bench, cid, 1, org_id=org)
        bench.enqueue(warm)
        h.wait_done(bench, warm, timeout=300)

        # baseline: the big organization idle
        idle_ids = _make_small(bench, small, orgs)
        load_idle = h.load_average()
        _touch(bench, idle_ids)
        bench.enqueue(idle_ids)
        h.wait_done(bench, idle_ids, timeout=600)
        idle = small_latencies(bench, idle_ids)

        # measured: the big backlog first, then the small ones
        big_ids = h.generate_bills(bench, big, backlog)
        busy_ids = _make_small(bench, small, orgs)
        load_busy = h.load_average()
        _touch(bench, big_ids + busy_ids)
        started = time.monotonic()
        bench.enqueue(big_ids)
        bench.enqueue(busy_ids)
        h.wait_done(bench, busy_ids, timeout=60 + backlog * 1.5)
        wall = time.monotonic() - started
        busy = small_latencies(bench, busy_ids)
        big_states = h.states(bench, big_ids)
    p95_idle, p95_busy = h.pct(idle, 0.95), h.pct(busy, 0.95)
    ratio = p95_busy / p95_idle if p95_idle else float("inf")
    return {
        "id": "B5",
        "what": "fairness: small orgs' p95 time to posted, big org busy vs idle",
        "inputs": {
            "organizations": SMALL_ORGS + 1,
            "big_backlog": backlog,
            "small_records_each": PER_SMALL,
            "workers": "2 x concurrency 1",
            "sandbox_limits": "off",
        },
        "baseline": {"small_latency_s": h.summary(idle)},
        "measured": {
            "small_latency_s": h.summary(busy),
            "wall_until_small_done_s": round(wall, 1),
            "big_backlog_states_then": big_states,
        },
        "ratio": round(ratio, 2),
        "target": "small orgs' p95 busy <= 2x idle",
        "met": ratio <= 2.0,
        "load_average": {"idle": load_idle, "busy": load_busy},
        "summary": {
            "baseline": f"p95 {p95_idle:.1f} s",
            "measured": f"p95 {p95_busy:.1f} s",
        },
    }
