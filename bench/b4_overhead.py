"""B4 pipeline overhead: one Celery worker end to end vs the same step functions in a loop.

Sandbox without limits or latency. Measured: ``n`` bills through one worker process
(``--concurrency 1``: one pool process, so it is one process against one process), from the
first fetch to the last record posted. Baseline in the same run, same sandbox and database:
another ``n`` bills driven by ``connector.pipeline.run_step`` for each step in a plain loop in
the benchmark process. Target: worker rate / loop rate >= 0.5.
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness as h

UNLIMITED = {"ZOHO_RATE_LIMIT": "1000000/60s", "CONCUR_RATE_LIMIT": "1000000/60s"}


def run(quick: bool = False) -> dict[str, Any]:
    n = 150 if quick else 1000
    with h.bench_stack("b4", **UNLIMITED) as bench:
        cid = h.connect(bench)
        loop_ids = h.generate_bills(bench, cid, n)
        worker_ids = h.generate_bills(bench, cid, n)
        load_before = h.load_average()
        # Warm both paths (imports, token refresh, connection pools) on a few records first.
        warm = h.generate_bills(bench, cid, 10)
        h.run_plain_loop(bench, warm[:5])
        import os

        me = h.cpu_seconds(os.getpid(), with_children=False)
        meter = h.CpuMeter(bench, ["sandbox"])
        baseline = h.run_plain_loop(bench, loop_ids)
        loop_cpu = meter.stop()
        loop_cpu["loop_process_cpu_ms_per_record"] = round(
            (h.cpu_seconds(os.getpid(), with_children=False) - me) * 1000 / n, 1
        )
        baseline["cpu"] = loop_cpu
        load_mid = h.load_average()
        bench.start_worker("b4-worker", concurrency=1)
        bench.enqueue(warm[5:])
        h.wait_done(bench, warm[5:], timeout=120)
        meter = h.CpuMeter(bench, ["sandbox", "b4-worker"])
        bench.enqueue(worker_ids)
        started = time.monotonic()
        final = h.wait_done(bench, worker_ids, timeout=60 + n * 2, poll=0.2)
        wall = time.monotonic() - started
        worker_cpu = meter.stop()
        worker_cpu["worker_cpu_ms_per_record"] = round(
            worker_cpu["cpu_seconds"]["b4-worker"] * 1000 / n, 1
        )
        measured = h.throughput(bench, worker_ids)
        measured["wall_seconds"] = round(wall, 2)
        measured["states"] = final
        measured["cpu"] = worker_cpu
        load_after = h.load_average()
    ratio = measured["per_second"] / baseline["per_second"]
    return {
        "id": "B4",
        "what": "pipeline overhead: 1 worker vs plain run_step loop (records/s)",
        "inputs": {"bills": n, "worker_concurrency": 1, "sandbox_limits": "off"},
        "baseline": baseline,
        "measured": measured,
        "ratio": round(ratio, 3),
        "target": "ratio >= 0.5",
        "met": ratio >= 0.5 and final.get("posted", 0) == n,
        "load_average": {"before": load_before, "mid": load_mid, "after": load_after},
        "summary": {
            "baseline": f"{baseline['per_second']} rec/s",
            "measured": f"{measured['per_second']} rec/s",
        },
    }
