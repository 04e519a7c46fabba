"""B1 rate-limit fidelity: 4 worker processes draining one Zoho organization's backlog.

The sandbox's Zoho limit for the organization is scaled to 60 requests per 10 s (sliding
window; it answers 429 beyond that and records ``max_in_window``). The Zoho-calling step is the
payables fetch (one ``GET /bills/{id}`` per bill). Each phase enqueues a fresh ``n``-bill backlog
at once and runs until every bill has been fetched (or a deadline passes).

- measured: the shared limiter on (``ZOHO_RATE_LIMIT=60/10s``), Celery's per-queue limit unset;
- baseline: the shared limiter effectively off (``ZOHO_RATE_LIMIT`` huge) and each worker's
  Celery ``rate_limit`` on the zoho queue set to its share of the budget
  (``CELERY_ZOHO_RATE_LIMIT=1.5/s`` per worker x 4 workers = 6/s = 60 per 10 s), which is what an
  operator relying on Celery alone would configure.

Utilization = fetches / (limit x number of 10 s windows the drain spanned, rounded up).
"""

from __future__ import annotations

import math
import time
from typing import Any

import sqlalchemy as sa

from bench import harness as h

LIMIT, PERIOD = 60, 10.0
WORKERS = 4


def fetch_times(bench: h.Bench, ids: list[int]) -> list[float]:
    """When each successful Zoho GET of these records answered (audit rows of the fetch step)."""
    from connector.models import AuditEvent

    with bench.db.session() as s:
        rows = s.execute(
            sa.select(AuditEvent.at).where(
                AuditEvent.record_id.in_(ids),
                AuditEvent.step == "fetch",
                AuditEvent.http_method == "GET",
                AuditEvent.http_status == 200,
            )
        ).all()
    return sorted(r[0].timestamp() for r in rows)


def rate_limited_retries(bench: h.Bench, ids: list[int]) -> dict[str, Any]:
    """How often the fetch step was sent back with a countdown, and the longest countdown."""
    from connector.models import AuditEvent

    with bench.db.session() as s:
        rows = s.execute(
            sa.select(AuditEvent.record_id, AuditEvent.error_class, AuditEvent.details).where(
                AuditEvent.record_id.in_(ids),
                AuditEvent.step == "fetch",
                AuditEvent.outcome == "retry",
            )
        ).all()
    per_record: dict[int, int] = {}
    classes: dict[str, int] = {}
    longest = 0.0
    for rid, cls, details in rows:
        per_record[rid] = per_record.get(rid, 0) + 1
        classes[cls or "?"] = classes.get(cls or "?", 0) + 1
        longest = max(longest, float((details or {}).get("countdown") or 0))
    return {
        "total": len(rows),
        "by_error": classes,
        "max_per_record": max(per_record.values(), default=0),
        "longest_countdown_s": round(longest, 2),
    }


def fetched(bench: h.Bench, ids: list[int]) -> int:
    got = h.states(bench, ids)
    return sum(v for k, v in got.items() if k not in ("received",))


def phase(
    bench: h.Bench, cid: int, n: int, name: str, deadline: float, **env: str
) -> dict[str, Any]:
    admin = bench.admin
    ids = h.generate_bills(bench, cid, n)  # listing happens before the limit is set
    admin.zoho_limits(per_minute=LIMIT, period=PERIOD, organization_id=h.ZOHO_ORG)
    admin.zoho_limits(reset_windows=True)
    before = bench.stats()
    names = [f"{name}-{i}" for i in range(WORKERS)]
    for wname in names:
        bench.start_worker(wname, concurrency=1, **env)
    load_before = h.load_average()
    started = time.monotonic()
    bench.enqueue(ids)
    timed_out = False
    while fetched(bench, ids) < n:
        if time.monotonic() - started > deadline:
            timed_out = True
            break
        time.sleep(0.5)
    wall = time.monotonic() - started
    after = bench.stats()
    h.stop_workers(bench, names)
    h.purge(bench)
    admin.zoho_limits(per_minute=10**6, period=60, organization_id=h.ZOHO_ORG)
    tenant = f"zoho:{h.ZOHO_ORG}"
    calls = h.delta(h.tenant_calls(after, tenant), h.tenant_calls(before, tenant))
    served_429 = after.get("rate_limited", {}).get(tenant, 0) - before.get("rate_limited", {}).get(
        tenant, 0
    )
    times = fetch_times(bench, ids)
    span = (times[-1] - times[0]) if times else 0.0
    windows = max(1, math.ceil(span / PERIOD - 1e-9)) if times else 1
    utilization = len(times) / (LIMIT * windows)
    # Max in any 10 s window (closed) from our own audit clock, next to the sandbox's figure.
    j, ours = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - PERIOD:
            j += 1
        ours = max(ours, i - j + 1)
    final = h.states(bench, ids)
    per_window = [0] * (int(span // PERIOD) + 1 if times else 0)
    for t in times:
        per_window[int((t - times[0]) // PERIOD)] += 1
    retries = rate_limited_retries(bench, ids)
    return {
        "fetches_per_10s_from_first": per_window,
        "retries": retries,
        "records": n,
        "fetched": len(times),
        "timed_out": timed_out,
        "wall_seconds": round(wall, 1),
        "drain_seconds": round(span, 1),
        "zoho_calls": calls,
        "served_429": served_429,
        "max_in_window_sandbox": after.get("max_in_window", {})
        .get("zoho.org_per_minute", {})
        .get(h.ZOHO_ORG),
        "max_in_window_audit": ours,
        "utilization": round(utilization, 3),
        "states_at_end": final,
        "load_average": load_before,
        "env": env,
    }


def run(quick: bool = False) -> dict[str, Any]:
    n = 180 if quick else 600
    deadline = 90 if quick else 240
    with h.bench_stack("b1") as bench:
        cid = h.connect(bench)
        measured = phase(
            bench, cid, n, "limited", deadline, ZOHO_RATE_LIMIT=f"{LIMIT}/{int(PERIOD)}s"
        )
        baseline = phase(
            bench,
            cid,
            n,
            "celery",
            deadline,
            ZOHO_RATE_LIMIT="1000000/10s",
            CELERY_ZOHO_RATE_LIMIT=f"{LIMIT / PERIOD / WORKERS}/s",
        )
    met = (
        (measured["max_in_window_sandbox"] or 0) <= LIMIT
        and measured["served_429"] == 0
        and measured["utilization"] >= 0.9
        and not measured["timed_out"]
    )
    return {
        "id": "B1",
        "what": "rate-limit fidelity: 4 workers, one Zoho org at 60/10 s",
        "inputs": {"bills": n, "workers": WORKERS, "limit": f"{LIMIT}/{PERIOD:g}s"},
        "baseline": baseline,
        "measured": measured,
        "ratio": measured["utilization"],
        "target": "max in any 10 s window <= 60, zero 429s, utilization >= 0.9",
        "met": met,
        "load_average": {
            "measured": measured["load_average"],
            "baseline": baseline["load_average"],
        },
        "summary": {
            "baseline": f"max/10s {baseline['max_in_window_sandbox']}, 429s {baseline['served_429']}, "
            f"util {baseline['utilization']}",
            "measured": f"max/10s {measured['max_in_window_sandbox']}, 429s {measured['served_429']}, "
            f"util {measured['utilization']}",
        },
    }
