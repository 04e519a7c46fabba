"""What the pipeline benchmarks (B1, B2, B4-B7) share: a stack, connections, backlogs, timings.

A benchmark stack is ``bench.stack.running_stack`` (private ``redis-server``, its own PostgreSQL
schema) with two changes for measuring rather than hurting:

- processes reach PostgreSQL directly, not through the harness's cuttable TCP proxy (a Python
  thread in this process that would otherwise sit on every query's path);
- the sandbox runs in its own process (``bench.sandbox_serve``), optionally with extra Zoho
  organizations, with the daily quotas lifted (10,000 bills would spend a PREMIUM day).

Records are created the way a backfill creates them: list the documents once, ``ensure_record``
each version (``trigger="bench"``) and send its first step to the broker. The clock of a record's
life is the ledger's own: ``sync_records.created_at`` to the ``audit_events`` row that moved it to
``posted``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
import sqlalchemy as sa

from bench.stack import PG_SERVER, Stack, free_port, running_stack, wait_until
from flows import FLOWS
from tasks.launch import QUEUES

ZOHO_ORG = "10234695"  # the seeded PREMIUM organization (12 vendors)
CONCUR_COMPANY = "9d6f3a52-0c1e-4d7b-9a35-5b1f0c2e7a11"
CONCUR_REQUEST_TOKEN = "sbx-us2-company-request-token"

PAYABLES_RULES: dict[str, Any] = {
    "owner": {"LedgerCode": "DEFAULT"},
    "country_code": "US",
    "expense_types": {"Travel Expense": "TRAVL", "Airfare": "AIRFR", "Office Supplies": "OFFIC"},
    "default_expense_type": "MISC",
}
EXPENSES_RULES: dict[str, Any] = {
    "accounts": {
        "AIRFR": "Airfare",
        "HOTEL": "Lodging",
        "MEALS": "Meals and Entertainment",
        "CARRT": "Ground Transportation",
        "TAXIX": "Ground Transportation",
        "OFFSP": "Office Supplies",
        "TELEC": "Telephone Expense",
    },
    "credit_accounts": {"CASH": "Employee Reimbursements", "CBCP": "Corporate Card"},
    "cost_centre": {"field": "Custom1", "tag": "Cost Center", "match": "value"},
}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# --------------------------------------------------------------------------- the stack


@dataclass
class Bench:
    """A running benchmark stack: services, sandbox, settings and a broker client."""

    stack: Stack
    sandbox_url: str
    settings: Any
    db: Any
    env_extra: dict[str, str] = field(default_factory=dict)
    _celery: Any = None

    @property
    def admin(self) -> Any:
        from sandbox.admin import AdminClient

        return AdminClient(self.sandbox_url)

    def worker_env(self, **extra: str) -> dict[str, str]:
        return {**self.env_extra, **extra}

    def start_worker(
        self, name: str, *, concurrency: int = 1, queues: str = QUEUES, **env: str
    ) -> Any:
        return self.stack.start_worker(
            name, concurrency=concurrency, queues=queues, **self.worker_env(**env)
        )

    @property
    def celery(self) -> Any:
        if self._celery is None:
            from celery import Celery

            assert self.stack.redis is not None
            self._celery = Celery(broker=self.stack.redis.url)
        return self._celery

    def enqueue(self, record_ids: Iterable[int], step: str = "fetch") -> int:
        """Send ``step`` of each record to its queue (what intake / the poller do)."""
        import flows
        from connector.models import SyncRecord

        ids = list(record_ids)
        sent = 0
        with self.db.session() as s:
            rows = s.execute(
                sa.select(SyncRecord.id, SyncRecord.flow, SyncRecord.connection_id,
                          SyncRecord.source_id, SyncRecord.source_version)
                .where(SyncRecord.id.in_(ids))
            ).all()  # fmt: skip
        by_id = {r.id: r for r in rows}
        with self.celery.producer_or_acquire() as producer:
            for rid in ids:
                r = by_id[rid]
                queue = flows.FLOWS.handler(r.flow).queue_for(step)
                task_id = f"{r.flow}:{r.connection_id}:{r.source_id}:{r.source_version}:{step}"
                self.celery.send_task(
                    f"pipeline.{queue}.{step}",
                    args=[rid, step],
                    task_id=task_id,
                    queue=queue,
                    producer=producer,
                )
                sent += 1
        return sent

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.sandbox_url}/_admin/stats", timeout=30).json()


@contextlib.contextmanager
def bench_stack(name: str, *, extra_orgs: int = 0, **env: str) -> Iterator[Bench]:
    """Services + sandbox; workers are started by the benchmark (``Bench.start_worker``)."""
    from connector.config import Settings
    from connector.db import Database

    with running_stack(f"bench_{name}") as stack:
        # Bypass the cuttable proxy: connect straight to the server, same schema.
        server = sa.engine.make_url(PG_SERVER)
        stack.database_url = (
            server.render_as_string(hide_password=False)
            + ("&" if "?" in str(server) else "?")
            + f"options=-csearch_path%3D{stack._schema}"
        )
        port = free_port()
        argv = [sys.executable, "-m", "bench.sandbox_serve", "--port", str(port)]
        if extra_orgs:
            argv += ["--extra-orgs", str(extra_orgs)]
        stack.start("sandbox", argv)
        sandbox_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{sandbox_url}/_admin/stats"), timeout=60, what="sandbox")
        env_extra = {
            "CONNECTOR_SANDBOX_URL": sandbox_url,
            "ZOHO_CLIENT_ID": "sandbox-zoho-client",
            "ZOHO_CLIENT_SECRET": "sandbox-zoho-secret",
            "ZOHO_ACCOUNTS_URL": f"{sandbox_url}/zoho/us/accounts",
            "CONCUR_CLIENT_ID": "sandbox-concur-client",
            "CONCUR_CLIENT_SECRET": "sandbox-concur-secret",
            "CONCUR_AUTH_URL": f"{sandbox_url}/concur/us2",
            # Beat is not started; keep the sweeper's idea of "stale" well beyond a benchmark.
            "CONNECTOR_LEASE_SECONDS": "600",
            **env,
        }
        stack.extra_env.update(env_extra)
        settings = Settings.from_env(stack.env())
        db = Database(stack.database_url)
        bench = Bench(stack, sandbox_url, settings, db, env_extra={})
        admin = bench.admin
        # No daily quota in the way; more refresh tokens per user than the 20 connections of B5.
        admin.zoho_limits(daily=10**9, per_minute=10**6, period=60, reset_windows=True)
        admin.zoho_settings(max_refresh_tokens_per_user=1000, max_access_tokens_per_refresh=1000)
        try:
            yield bench
        finally:
            if bench._celery is not None:
                bench._celery.close()
            db.dispose()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


# --------------------------------------------------------------------------- connections


def connect(
    bench: Bench,
    *,
    org_id: str = ZOHO_ORG,
    name: str | None = None,
    payables: bool = True,
    expenses: bool = False,
    own_concur_company: bool = False,
) -> int:
    """A connection authorized against the sandbox (Zoho self client, the US Concur company),
    with rules, and every Zoho vendor of the organization linked to a Concur vendor.

    A Concur company belongs to one connection (events are routed by company), so further
    connections pass ``own_concur_company=True`` and get a company created for them."""
    from connector import authorize, connections, rules
    from connector.zoho.auth import SCOPE
    from mappings.rules import register_flow_sections

    db, settings, admin = bench.db, bench.settings, bench.admin
    cid = connections.create(db, name or f"bench-{org_id}")
    grant = admin.zoho_self_client_code(scope=SCOPE)
    authorize.connect_zoho_self_client(
        db,
        settings,
        cid,
        code=grant["code"],
        organization_id=org_id,
        accounts_server=grant["accounts_server"],
    )
    company, token = CONCUR_COMPANY, CONCUR_REQUEST_TOKEN
    if own_concur_company:
        from sandbox.concur.admin import ConcurAdmin

        made = ConcurAdmin(bench.sandbox_url).create_company("us2", name=f"Bench {org_id}")
        company, token = made["company_id"], made["request_token"]
    authorize.connect_concur(db, settings, cid, company_id=company, request_token=token)
    register_flow_sections()
    document: dict[str, Any] = {"vendors": {"directions": ["concur_to_zoho"]}}
    if payables:
        document["payables"] = dict(PAYABLES_RULES)
    if expenses:
        document["expenses"] = dict(EXPENSES_RULES)
    rules.import_rules(db, cid, document, None)
    if payables:
        link_vendors(bench, cid, org_id, company)
    return cid


def link_vendors(bench: Bench, cid: int, org_id: str, company: str = CONCUR_COMPANY) -> int:
    """Create one Concur vendor per Zoho vendor of the org and record the link (with the
    snapshot the vendors flow keeps, so the map step needs no vendor lookup)."""
    from connector import connections
    from connector.models import VendorLink
    from sandbox.concur.admin import ConcurAdmin

    client = connections.zoho_client(bench.db, bench.settings, cid)
    try:
        vendors = [c for c in client.contacts.iter_all() if c.get("contact_type") == "vendor"]
    finally:
        client.close()
    concur = ConcurAdmin(bench.sandbox_url)
    rows = []
    for contact in vendors:
        code = f"B{org_id[-4:]}{contact['contact_id'][-5:]}"
        currency = contact.get("currency_code") or "USD"
        rows.append(
            {
                "VendorCode": code,
                "AddressCode": "MAIN",
                "VendorName": contact["contact_name"][:60],
                "Address1": "1 Bench Street",
                "City": "Benchville",
                "PostalCode": "10001",
                "CountryCode": "US",
                "CurrencyCode": currency,
            }
        )
    concur.create_vendors(*rows, company_id=company)
    with bench.db.session() as s:
        for contact, row in zip(vendors, rows, strict=True):
            s.add(
                VendorLink(
                    connection_id=cid,
                    zoho_contact_id=str(contact["contact_id"]),
                    concur_vendor_code=row["VendorCode"],
                    concur_address_code="MAIN",
                    matched_by="bench",
                    concur_snapshot={
                        "VendorName": row["VendorName"],
                        "CountryCode": "US",
                        "CurrencyCode": row["CurrencyCode"],
                    },
                )
            )
    return len(rows)


# --------------------------------------------------------------------------- backlogs


def generate_bills(bench: Bench, cid: int, n: int, *, org_id: str = ZOHO_ORG) -> list[int]:
    """``n`` new bills in Zoho, one ledger record each (not yet enqueued); returns record ids."""
    from connector import connections
    from flows import payables_intake

    before = {
        b["bill_id"] for b in _list_bills(bench, cid)
    }  # the org's existing bills are not ours
    bench.admin.generate("zoho.bills", n, organization_id=org_id)
    client = connections.zoho_client(bench.db, bench.settings, cid)
    try:
        bills = [b for b in client.bills.iter_all() if b["bill_id"] not in before]
    finally:
        client.close()
    assert len(bills) == n, f"expected {n} new bills, listed {len(bills)}"
    ids: list[int] = []
    with bench.db.session() as s:
        for bill in bills:
            made = payables_intake.ensure_record(s, cid, "bill", bill, trigger="bench")
            assert made is not None
            ids.append(made[0].id)
    return ids


def _list_bills(bench: Bench, cid: int) -> list[dict[str, Any]]:
    from connector import connections

    client = connections.zoho_client(bench.db, bench.settings, cid)
    try:
        return list(client.bills.iter_all())
    finally:
        client.close()


def generate_reports(bench: Bench, cid: int, n: int) -> list[int]:
    """``n`` approved Concur reports, one ledger record each (through the expenses poll pass,
    which also picks up the seed's approved reports the first time)."""
    from connector.models import SyncCursor

    bench.admin.generate("reports", n, company_id=CONCUR_COMPANY)
    # Generated reports are dated 1-20 days back, behind the cursor of an earlier pass: forget
    # the cursor so the pass looks back its full window (existing records are not re-created).
    with bench.db.session() as s:
        s.execute(sa.delete(SyncCursor).where(SyncCursor.connection_id == cid))
    result = FLOWS.sync(bench.db, bench.settings, cid, "expenses")
    return [rid for rid, _ in result.records]


# --------------------------------------------------------------------------- progress


def states(bench: Bench, ids: list[int] | None = None) -> dict[str, int]:
    from connector.models import SyncRecord

    q = sa.select(SyncRecord.state, sa.func.count()).group_by(SyncRecord.state)
    if ids is not None:
        q = q.where(SyncRecord.id.in_(ids))
    with bench.db.session() as s:
        return {k: int(v) for k, v in s.execute(q).all()}


def wait_done(
    bench: Bench, ids: list[int], *, timeout: float, what: str = "records", poll: float = 0.5
) -> dict[str, int]:
    """Wait until every record is in a final state (posted, or parked: failed/dead/waiting)."""
    deadline = time.monotonic() + timeout
    while True:
        got = states(bench, ids)
        active = sum(v for k, v in got.items() if k not in ("posted", "failed", "dead"))
        if active == 0:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not finished after {timeout:.0f}s: {got}")
        time.sleep(poll)


def posted_times(bench: Bench, ids: list[int]) -> dict[int, tuple[float, float]]:
    """record id -> (created_at, posted_at) as epoch seconds, from the ledger and audit log."""
    from connector.models import AuditEvent, SyncRecord

    with bench.db.session() as s:
        rows = s.execute(
            sa.select(SyncRecord.id, SyncRecord.created_at, sa.func.min(AuditEvent.at))
            .join(AuditEvent, AuditEvent.record_id == SyncRecord.id)
            .where(SyncRecord.id.in_(ids), AuditEvent.to_state == "posted")
            .group_by(SyncRecord.id, SyncRecord.created_at)
        ).all()
    return {r[0]: (r[1].timestamp(), r[2].timestamp()) for r in rows}


def throughput(bench: Bench, ids: list[int]) -> dict[str, float]:
    """Records per second between the first record's first step and the last one posted."""
    from connector.models import AuditEvent

    times = posted_times(bench, ids)
    with bench.db.session() as s:
        first = s.execute(
            sa.select(sa.func.min(AuditEvent.at)).where(
                AuditEvent.record_id.in_(ids), AuditEvent.step == "fetch"
            )
        ).scalar_one()
    last = max(p for _, p in times.values())
    span = last - first.timestamp()
    return {
        "records": len(times),
        "seconds": round(span, 2),
        "per_second": round(len(times) / span, 2) if span > 0 else 0.0,
    }


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50": round(pct(values, 0.50), 3),
        "p95": round(pct(values, 0.95), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def tenant_calls(stats: dict[str, Any], tenant: str) -> dict[str, int]:
    return dict(stats.get("per_tenant_endpoint", {}).get(tenant, {}))


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# --------------------------------------------------------------------------- processes


def rss_kb(pid: int) -> int:
    """Resident set size of one process, from /proc (kB)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (a Celery worker's pool processes)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def stop_workers(bench: Bench, names: Iterable[str]) -> None:
    for name in names:
        proc = bench.stack.procs.get(name)
        if proc is not None:
            proc.stop(timeout=20)


def purge(bench: Bench) -> None:
    """Drop every queued message (between phases of one benchmark)."""
    import redis

    assert bench.stack.redis is not None
    client = redis.Redis.from_url(bench.stack.redis.url)
    for key in client.scan_iter("*"):
        k = key.decode()
        if not k.startswith("ratelimit"):
            client.delete(key)
    client.close()


def run_plain_loop(bench: Bench, ids: list[int]) -> dict[str, float]:
    """B4's baseline: every step of every record through ``connector.pipeline.run_step`` in a
    loop in this process (no broker, no worker), against the same sandbox and database."""
    from connector.models import Step

    started = time.perf_counter()
    done = 0
    for rid in ids:
        step: Step | None = Step.FETCH
        while step is not None:
            result = FLOWS.run_step(
                bench.db,
                rid,
                step,
                owner=f"loop:{rid}:{step.value}",
                lease_seconds=300,
                task_id=f"loop:{rid}:{step.value}",
                settings=bench.settings,
            )
            if result.action == "retry":
                time.sleep(result.countdown)
                continue
            step = result.next_step if result.action == "next" else None
        done += 1
    elapsed = time.perf_counter() - started
    return {"records": done, "seconds": round(elapsed, 2), "per_second": round(done / elapsed, 2)}


# --------------------------------------------------------------------------- CPU accounting

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, with_children: bool = True) -> float:
    """User + system CPU of a process (and of its live children: a worker's pool)."""
    total = 0.0
    pids = [pid] + (children(pid) if with_children else [])
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return float(sum(parts) - idle), float(sum(parts))


class CpuMeter:
    """CPU used during a phase: the machine's busy share, and seconds per named process."""

    def __init__(self, bench: Bench, names: list[str]) -> None:
        self.pids = {
            n: bench.stack.procs[n].popen.pid  # type: ignore[union-attr]
            for n in names
            if n in bench.stack.procs and bench.stack.procs[n].popen is not None
        }
        self.start_proc = {n: cpu_seconds(p) for n, p in self.pids.items()}
        self.start_machine = machine_cpu()
        self.t0 = time.monotonic()

    def stop(self) -> dict[str, Any]:
        busy0, total0 = self.start_machine
        busy1, total1 = machine_cpu()
        wall = time.monotonic() - self.t0
        used = {n: round(cpu_seconds(p) - self.start_proc[n], 2) for n, p in self.pids.items()}
        return {
            "wall_seconds": round(wall, 2),
            "machine_busy_share": round((busy1 - busy0) / max(1.0, total1 - total0), 3),
            "cpu_seconds": used,
        }
