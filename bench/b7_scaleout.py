"""B7 scale-out: records per second with 1, 2 and 4 worker processes.

Redis + PostgreSQL, sandbox limits off, one connection. For each count, fresh bills are
enqueued at once and drained by that many worker processes (``--concurrency 1`` each, all
queues); throughput = records / (first fetch -> last posted). The 1-process figure is the
baseline; the ratio reported is the 4-process speed-up.
"""

from __future__ import annotations

from typing import Any

from bench import harness as h
from bench.b4_overhead import UNLIMITED

COUNTS = (1, 2, 4)


def run(quick: bool = False) -> dict[str, Any]:
    n = 80 if quick else 300
    curve: dict[str, Any] = {}
    with h.bench_stack("b7", **UNLIMITED) as bench:
        cid = h.connect(bench)
        warm = h.generate_bills(bench, cid, 8)
        bench.start_worker("b7-warm", concurrency=1)
        bench.enqueue(warm)
        h.wait_done(bench, warm, timeout=120)
        h.stop_workers(bench, ["b7-warm"])
        for count in COUNTS:
            ids = h.generate_bills(bench, cid, n)
            names = [f"b7-{count}-{i}" for i in range(count)]
            for name in names:
                bench.start_worker(name, concurrency=1)
            load = h.load_average()
            meter = h.CpuMeter(bench, ["sandbox", *names])
            bench.enqueue(ids)
            final = h.wait_done(bench, ids, timeout=60 + n * 2, poll=0.2)
            cpu = meter.stop()
            workers_cpu = sum(v for k, v in cpu["cpu_seconds"].items() if k != "sandbox")
            cpu["worker_cpu_ms_per_record"] = round(workers_cpu * 1000 / n, 1)
            cpu["sandbox_cpu_ms_per_record"] = round(
                cpu["cpu_seconds"].get("sandbox", 0) * 1000 / n, 1
            )
            got = h.throughput(bench, ids)
            h.stop_workers(bench, names)
            curve[str(count)] = {**got, "states": final, "load_average": load, "cpu": cpu}
    base = curve["1"]["per_second"]
    speedups = {k: round(v["per_second"] / base, 2) for k, v in curve.items()}
    return {
        "id": "B7",
        "what": "scale-out: records/s with 1, 2, 4 worker processes",
        "inputs": {"bills_per_point": n, "sandbox_limits": "off", "cpus": 2},
        "baseline": curve["1"],
        "measured": {"curve": curve, "speedup": speedups},
        "ratio": speedups["4"],
        "target": "report the curve and where it flattens",
        "met": None,
        "load_average": {k: v["load_average"] for k, v in curve.items()},
        "summary": {
            "baseline": f"{base} rec/s (1 process)",
            "measured": ", ".join(f"{k}: {v['per_second']}" for k, v in curve.items()) + " rec/s",
        },
    }
