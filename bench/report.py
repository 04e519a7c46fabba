"""Renders ``docs/benchmarks.md`` from ``bench/results/*.json`` (called by ``bench.run``).

The table and the figures come from the result files; the analysis is prose kept here, next to
the numbers it quotes, so a new run refreshes both.
"""

from __future__ import annotations

import importlib
from typing import Any

from bench.run import BENCHMARKS

ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]


def _met(result: dict[str, Any]) -> str:
    if "error" in result:
        return "error"
    return {True: "met", False: "**missed**", None: "n/a (report)"}[result.get("met")]


def _load(result: dict[str, Any]) -> str:
    load = result.get("load_average_at_start")
    return f"{load[0]:.1f}" if load else "?"


def _ratio(result: dict[str, Any]) -> str:
    r = result.get("ratio")
    return "-" if r is None else f"{r:g}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _get(result: dict[str, Any], *path: str, default: Any = None) -> Any:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


# --------------------------------------------------------------------------- per benchmark


def b1(r: dict[str, Any]) -> str:
    m, b = r["measured"], r["baseline"]
    return f"""\
**Measured** (shared limiter, `ZOHO_RATE_LIMIT=60/10s`): {m["fetched"]} of {m["records"]}
bills fetched in {m["drain_seconds"]} s; most requests in any 10 s window (sandbox)
**{m["max_in_window_sandbox"]}**, (our audit clock) {m["max_in_window_audit"]}; **{m["served_429"]}**
429s; utilization **{m["utilization"]}**; fetches per 10 s window {m["fetches_per_10s_from_first"]};
{m["retries"]["total"]} limiter refusals turned into countdowns (up to
{m["retries"]["max_per_record"]} for one record; longest countdown
{m["retries"]["longest_countdown_s"]} s). Ledger states when the last bill had been fetched and
the workers were stopped: {m["states_at_end"]}.

The refusals are the cost of exact waits: every task refused while a window is full is told
the moment the oldest grant expires, so they all come back together and all but one are
refused again. Each refusal is a task run, a claim and an audit row (about 4 per bill here),
not a vendor call. Spreading the countdowns by queue position (wait + k x period / limit)
would cut them without losing utilization; it was not needed to meet the target.

**Baseline** (limiter off, Celery `rate_limit` {b["env"].get("CELERY_ZOHO_RATE_LIMIT")} per worker
x 4 = the same 6/s): max in window {b["max_in_window_sandbox"]}, **{b["served_429"]}** 429s,
utilization **{b["utilization"]}**, drain {b["drain_seconds"]} s, windows
{b["fetches_per_10s_from_first"]}. Celery's per-worker token buckets average the right rate but
know nothing of each other or of the vendor's window: bursts from four workers line up and the
sandbox answers 429, and the connector must then wait Zoho's full minute (Zoho sends no
`Retry-After`), which is where the baseline's utilization goes.

**What this benchmark changed in the product.** Its first (180-bill) runs showed two faults:

1. *A long backlog would go `dead` for waiting its turn.* Every limiter refusal is a task
   retry, and each retry claimed the record again, which counted as an attempt; 10 attempts
   make a record `dead`. The 180-bill runs already put one bill through 6 refusals, and this
   600-bill run put one through {m["retries"]["max_per_record"]}: before the change those bills
   would have been declared dead with nothing wrong. A refusal by our own limiter now carries
   `RateLimitedError.local` and
   gives the attempt back (`connector/pipeline.py`, test
   `test_waiting_for_our_own_rate_limit_does_not_use_up_attempts`). Vendor 429s still count.
2. *One 429 per run, and a minute lost to it.* The limiter counts a call when it grants it, the
   vendor when it arrives; with four workers on a loaded two-core machine the delay between the
   two varied enough that a call granted just after a slot freed reached the sandbox while the
   vendor's window still held the older call: 61 in the sandbox's window, one 429, and a
   60-second wait that cut utilization to about 0.4. Grants now hold their slot
   `RATE_LIMIT_MARGIN` (0.5 s) longer than the vendor's period (`RateLimitPolicy(margin=)`;
   docs/rate-limits.md). The cost is 0.5/10.5 of a 60/10 s budget (5 %) and 0.8 % of Zoho's real
   100/60 s.

Utilization = fetches / (60 x the number of 10 s windows the drain spans, rounded up); a drain
that keeps every window full scores 1.0."""


def b2(r: dict[str, Any]) -> str:
    bills, reports = r["measured"]["bills"], r["measured"]["reports"]
    return f"""\
Bills ({r["inputs"]["bills"]}, all `posted`: {bills["posted"]}): Zoho {bills["zoho_calls"]},
Concur {bills["concur_calls"]}, i.e. **{bills["zoho_per_bill"]}** Zoho and
**{bills["concur_per_bill"]}** Concur calls per bill: the minimum. The vendor link carries the
Concur vendor's snapshot, so `map` makes no lookup, and no token refresh fell inside the batch
(access tokens last an hour; beat refreshes them ahead of expiry).

Reports ({r["inputs"]["reports"]}, posted: {reports["posted"]}): Zoho {reports["zoho_calls"]},
Concur {reports["concur_calls"]}: **{reports["zoho_writes_per_report"]}** Zoho writes per report
(one `POST /journals`). The reads a report needs are on Concur (header, entries, allocations: 3
per report) and, for foreign-currency reports, one exchange-rate read per currency and day
(cached per process), which is why Zoho *calls* per report
({reports["zoho_calls_per_report"]}) exceed writes. The chart of accounts, tags and currencies
were cached by the warm-up batch (15-minute cache per worker process)."""


def b3(r: dict[str, Any]) -> str:
    m, b = r["measured"], r["baseline"]
    return f"""\
Receiver {m["throughput"]} req/s (p50 {m["p50_ms"]} ms, p99 {m["p99_ms"]} ms, {m["errors"]}
errors) against the bare app's {b["throughput"]} req/s (p50 {b["p50_ms"]} ms, p99
{b["p99_ms"]} ms): ratio **{r["ratio"]}**.

*Where the time goes.* Per request the receiver does what the bare app does plus: one `SELECT`
of the connection's secret, the HMAC check, one `INSERT ... ON CONFLICT DO NOTHING RETURNING`,
the `COMMIT` (PostgreSQL round trips, plus SQLAlchemy's pool pre-ping), and a Celery
`send_task` to Redis. With 20 closed-loop senders, latency is concurrency / throughput (Little's
law: 20 / {m["throughput"]} req/s = {1000 * 20 / m["throughput"]:.0f} ms mean), so p99 follows
throughput; the load generator, both gunicorn workers, PostgreSQL and Redis share two cores.

*Changes made in this issue* (profiled in-process first): the inbox insert was compiled from
scratch on every request (SQLAlchemy does not cache the dialect `insert().on_conflict_do_nothing()`
construct, `inherit_cache = False`); it is now one cached textual statement
(`connector/inbox.py`). The webhook secret was decrypted with a freshly built `MultiFernet` on
every request; it is now decrypted once per stored ciphertext (`webhooks/zoho.py`; a rotated
secret has a new ciphertext, so it takes effect at once). Together they cut the receiver's
Python work per request by about a quarter (2.41 M to 1.80 M function calls per 500 requests
in the in-process profile); before them this benchmark measured a ratio of 0.30-0.32 on this
machine (198-226 req/s against 657-697), now {r["ratio"]}.

*Why the targets are missed and what would close them.* The bare app answers from memory;
the receiver must make the event durable before it answers (4 round trips to PostgreSQL:
pre-ping, `SELECT`, `INSERT`, `COMMIT`; 1 to Redis), and on two cores it shares the CPU with the
load generator, PostgreSQL and Redis. p99 <= 50 ms at 20 concurrent closed-loop senders needs
about 400 req/s or more here with a tight tail; even the bare app's own p99 ({b["p99_ms"]} ms)
misses it on this machine, so that target is not reachable as stated on 2 cores. What would
close the ratio: dropping the per-checkout pre-ping in the web process (one round trip per
request; a stale connection after an outage then costs one 503, which senders retry),
publishing through a kept kombu producer instead of Celery's `send_task` (kombu builds a new
Redis client object for every publish), and, on real hardware, more gunicorn threads than
cores, since most of a request is waiting on I/O."""


def b4(r: dict[str, Any]) -> str:
    m, b = r["measured"], r["baseline"]
    wcpu = _get(m, "cpu", "worker_cpu_ms_per_record")
    lcpu = _get(b, "cpu", "loop_process_cpu_ms_per_record")
    cpu_line = ""
    if wcpu and lcpu:
        cpu_line = (
            f" CPU per record: worker {wcpu} ms (main process + pool) against the loop's "
            f"{lcpu} ms, i.e. about {(wcpu - lcpu) / 5:.0f} ms per message for the 5 messages a "
            "bill takes."
        )
    return f"""\
One worker process drained {m["records"]} bills at **{m["per_second"]} records/s**; the same
step functions in a plain loop did {b["per_second"]} records/s: ratio **{r["ratio"]}**.{cpu_line}

The difference is the price of running each step as its own message: 5 messages per bill
through Redis (publish, deliver, ack), Celery's task bookkeeping and logging, a `route()` read
of the record to pick the queue of the next step, and the worker's main process relaying each
message to its pool process (which the loop does not have, and which on two cores competes with
the pool process for CPU). The step functions themselves (claim, vendor call, transition,
audit: about 25 short transactions per bill) dominate both sides, which is why the ratio stays
above 0.5."""


def b5(r: dict[str, Any]) -> str:
    m, b = r["measured"], r["baseline"]
    return f"""\
Small organizations' time to `posted`: idle p95 **{b["small_latency_s"].get("p95")} s** (p50
{b["small_latency_s"].get("p50")} s); with the {r["inputs"]["big_backlog"]}-bill backlog queued
first, p95 **{m["small_latency_s"].get("p95")} s** (p50 {m["small_latency_s"].get("p50")} s):
ratio **{r["ratio"]}**. The big organization then stood at {m["big_backlog_states_then"]}.

*Why.* There is one FIFO queue per vendor (`zoho`, `concur`, `default`), shared by every tenant.
The small organizations' `fetch` messages were enqueued behind the big one's
{r["inputs"]["big_backlog"]}, so each small bill waited for the whole backlog's fetches, and its
later steps again queued behind the big bills' map/post messages. Nothing in the pipeline is
unfair per call (the shared limiter is per tenant), but the broker is first come, first served.

*What would close it* (not done here: it is not a small change):
- per-tenant queues with a fair consumer (`zoho.<org>` queues and a worker that round-robins
  them; with Redis, kombu's round-robin over a worker's queues already does this once each
  tenant has its own queue, but queues must then be declared dynamically);
- or a fair-share dispatcher: records stay in the ledger and a dispatcher task moves at most k
  per tenant into the broker at a time (`SELECT ... ORDER BY tenant round robin`), so a big
  backlog can never be more than k deep in front of anyone;
- or, cheapest, priorities: backfills (the usual source of a 2,000-record backlog) sent with
  a lower Redis priority (`queue_order_strategy="priority"`) than webhook-driven records."""


def b6(r: dict[str, Any]) -> str:
    m, b = r["measured"], r["baseline"]
    return f"""\
Worker (main process + {len(m["pool_kb"])} pool processes) resident memory after
{b["posted"]:,} records: {b["total_kb"] / 1024:.1f} MiB; after {m["posted"]:,}:
{m["total_kb"] / 1024:.1f} MiB: ratio **{r["ratio"]}** (per pool process: {m["pool_ratios"]}).
The run took {m["wall_seconds"]} s.

Per-process caches are bounded by design: the vendor lookup cache (per connection, 5 min), the
Zoho lookups for journals (per organization, 15 min), the limiter and the database engine (one
per process). Records are never kept in memory between tasks (messages carry ids). The growth
measured (about 2-3 % per pool process over nine thousand records) is the kind that levels
off (allocator fragmentation, SQLAlchemy's statement cache filling up) rather than a per-record
leak, which would have grown the pool processes about tenfold between the samples."""


def _cores(v: dict[str, Any]) -> float:
    cpu = v.get("cpu", {})
    used = sum(x for k, x in cpu.get("cpu_seconds", {}).items() if k != "sandbox")
    return used / cpu["wall_seconds"] if cpu.get("wall_seconds") else 0.0


def b7(r: dict[str, Any]) -> str:
    curve = r["measured"]["curve"]
    rows = "\n".join(
        f"| {k} | {v['per_second']} | {r['measured']['speedup'][k]} | "
        f"{_cores(v):.2f} | "
        f"{_get(v, 'cpu', 'worker_cpu_ms_per_record', default='?')} | "
        f"{_get(v, 'cpu', 'sandbox_cpu_ms_per_record', default='?')} | "
        f"{_get(v, 'cpu', 'machine_busy_share', default='?')} | {v['load_average'][0]} |"
        for k, v in curve.items()
    )
    one, four = curve.get("1", {}), curve.get("4", {})
    cpus = r.get("machine", {}).get("cpus") or 2
    one_cpu = _get(one, "cpu", "worker_cpu_ms_per_record", default=0) or 0
    four_cpu = _get(four, "cpu", "worker_cpu_ms_per_record", default=0) or 0
    ceiling = cpus * 1000 / four_cpu if four_cpu else 0
    sb_cpu = _get(one, "cpu", "sandbox_cpu_ms_per_record", default="?")
    return f"""\
| worker processes | records/s | speed-up | CPU cores the workers got | worker CPU ms/record | sandbox CPU ms/record | machine CPU busy | load (1 min) |
|---|---|---|---|---|---|---|---|
{rows}

*Where it flattens, and why.* The workers are CPU-bound: a record costs {one_cpu} ms of worker
CPU with one process and {four_cpu} ms with four (main process + pool: about 25 short
SQLAlchemy transactions, 5 Celery messages, 2 HTTP calls through the vendor clients), against
{sb_cpu} ms in the sandbox. Throughput is therefore the CPU the workers get divided by that
cost, and the "cores the workers got" column is the whole story: during this run the machine
was shared with other test suites (load average about 5 on 2 cores; the machine was 77-98 %
busy throughout), so each added process mainly won a larger share of a saturated CPU from the
other processes on it rather than finding an idle core. That is why 4 processes still beat 2
here. On this machine the curve must flatten at about {cpus} cores / {four_cpu} ms = {ceiling:.0f}
records/s whatever the number of processes, less what PostgreSQL, Redis and the sandbox take
(the same cores). With the machine to itself we expect that ceiling at 2-3 processes, since one
process keeps only part of a core busy and waits on PostgreSQL, Redis and the sandbox for the
rest; a smaller development run the same day (80 bills per point) did flatten after 2: 9.4,
18.6 and 16.8 records/s for 1, 2 and 4 processes. More processes than that add context switches and contention (CPU per record rises from
{one_cpu} to {four_cpu} ms) but no capacity.

*What would change on a cluster.* Workers on their own machines scale with cores until the
shared services become the limit: PostgreSQL first (about 25 short transactions per bill, each
a commit: a connection pooler such as PgBouncer and fewer, larger transactions per step matter
before raw CPU does), then Redis (5 messages per bill; one instance moves tens of thousands a
second, so far off). In production the vendors' per-tenant limits cap any one organization at
100 Zoho calls a minute whatever the worker count: scale-out serves many tenants, not one
tenant faster. Cutting the ~{one_cpu:.0f} ms of CPU per record (fewer transactions per step,
reusing vendor clients across steps) raises every point of the curve."""


ANALYSIS = {"B1": b1, "B2": b2, "B3": b3, "B4": b4, "B5": b5, "B6": b6, "B7": b7}


def _method(bid: str) -> str:
    module = importlib.import_module(BENCHMARKS[bid][0])
    doc = (module.__doc__ or "").strip()
    lines = doc.splitlines()
    return "\n".join(lines[1:]).strip() if len(lines) > 1 else doc


def render(results: dict[str, dict[str, Any]]) -> str:
    present = [b for b in ORDER if b in results]
    total = sum(results[b].get("runtime_seconds", 0) for b in present)
    any_r = results[present[0]] if present else {}
    machine = any_r.get("machine", {})
    out = [
        "# Benchmarks",
        "",
        "Issue #9. `make bench` (`python -m bench.run`) runs every benchmark, writes",
        "`bench/results/<name>.json` (inputs, machine, load average, baseline, measured, ratio,",
        "target, met) and regenerates this page. Each figure is measured against a baseline in the",
        "same run and reported as a ratio, so it holds on a noisy machine; the 1-minute load average",
        "at the start of each benchmark is in the table (other test suites shared the machine).",
        "`python -m bench.run --only B1,B3 --quick` runs a subset at small sizes (results go to",
        "`var/bench-quick/`, never to this page).",
        "",
        f"Last full run finished {max((results[b].get('measured_at', '') for b in present), default='?')} (UTC), "
        f"{machine.get('cpus', '?')} CPUs, "
        f"Python {machine.get('python', '?')}, {machine.get('platform', '?')}. "
        f"Total runtime **{total / 60:.1f} min**.",
        "",
        "Harness: `bench/harness.py` on `bench/stack.py` (private `redis-server`, a PostgreSQL",
        "schema of its own reached directly, the sandbox in its own process via",
        "`bench/sandbox_serve.py`, real `celery worker` processes). Records are created as a",
        "backfill creates them (`ensure_record`, then the first step is sent to the broker), and",
        "timed by the ledger: `sync_records.created_at` and the `audit_events` rows.",
        "",
        "| id | what | baseline | measured | ratio | target | met | load | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = {
        "B1": "4 workers; sandbox Zoho limit 60/10 s",
        "B2": "ratio = worst of the three per-record figures vs 1.0",
        "B3": "p99 target not reachable on 2 cores (bare app misses it too)",
        "B4": "1 worker process vs 1 loop process",
        "B5": "one FIFO queue per vendor: head-of-line blocking",
        "B6": "same pool processes throughout",
        "B7": "ratio = speed-up at 4 processes; CPU shared with other suites",
    }
    for bid in present:
        r = results[bid]
        s = r.get("summary", {})
        out.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    bid,
                    r.get("what", ""),
                    s.get("baseline", "-"),
                    s.get("measured", r.get("error", "-")),
                    _ratio(r),
                    r.get("target", ""),
                    _met(r),
                    _load(r),
                    notes.get(bid, ""),
                )
            )
            + " |"
        )
    closing = {
        "B3": "The receiver must make each event durable before answering (4 PostgreSQL "
        "round trips, 1 Redis publish) on 2 cores shared with the load generator; the p99 target "
        "is missed by the bare app too. Would close it: no pre-ping in the web process, a kept "
        "kombu producer for the enqueue, more gunicorn threads on real cores.",
        "B5": "One FIFO queue per vendor, shared by all tenants, so small tenants wait "
        "behind a big backlog. Would close it: per-tenant queues with round-robin consumption, "
        "or a fair-share dispatcher feeding at most k records per tenant into the broker.",
    }
    out += ["", "## Closing note", ""]
    for bid in present:
        r = results[bid]
        verdict = _met(r).replace("*", "")
        line = (
            f"- **{bid} {verdict}**: {r.get('summary', {}).get('measured', '')} against "
            f"{r.get('summary', {}).get('baseline', '')} (ratio {_ratio(r)}); target: "
            f"{r.get('target', '')}."
        )
        if bid in closing and r.get("met") is False:
            line += " " + closing[bid]
        if bid == "B7":
            line += (
                " The workers are CPU-bound (see B7: worker CPU per record and the cores they"
                " got); the curve flattens where the workers hold all the cores, about 2-3"
                " processes on an idle 2-core machine; on a cluster PostgreSQL commits come next."
            )
        out.append(line)
    for bid in present:
        r = results[bid]
        out += ["", f"## {bid}: {r.get('what', '')}", "", "**Method.** " + _method(bid), ""]
        if "error" in r:
            out += [f"The last run failed: `{r['error']}`."]
            continue
        out += [
            f"Inputs: `{r.get('inputs')}`; runtime {r.get('runtime_seconds')} s; "
            f"load average at start {r.get('load_average_at_start')}.",
            "",
            ANALYSIS[bid](r),
        ]
    out.append("")
    return "\n".join(out)
