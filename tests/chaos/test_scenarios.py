"""Issue #9, fault injection: the real stack against the sandbox, hurt in seven ways.

Each scenario starts its own stack (tests/chaos/scenario.py), puts a backlog of 200 bills and 50
approved reports through it while one kind of fault is injected, and ends with
``Chaos.final_check``: every source record posted exactly once in the sandbox (duplicates report
unchanged, counts equal) and nothing left in a non-terminal state. docs/chaos.md describes each
scenario, what it asserts and how long it takes.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from bench.stack import ROOT, child_pids
from connector.models import AuditEvent, Connection, Credential, SyncRecord, WebhookEvent
from connector.zoho.errors import MINUTE_WINDOW_SECONDS
from tests.chaos.fanout import FanOut
from tests.chaos.scenario import COMPANY, ORG

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

PAYMENT_REQUESTS = "/concur/*/api/v3.0/invoice/paymentrequest"
JOURNALS = "/zoho/*/api/books/v3/journals"
CONCUR_VENDORS = "/concur/*/api/v3.1/invoice/vendors"
ZOHO_CONTACTS = "/zoho/*/api/books/v3/contacts"
ZOHO_BILL = "/zoho/*/api/books/v3/bills/*"


def _audit_count(chaos: Any, **where: Any) -> int:
    query = select(func.count()).select_from(AuditEvent)
    for column, value in where.items():
        query = query.where(getattr(AuditEvent, column) == value)
    with chaos.db.session() as s:
        return int(s.execute(query).scalar() or 0)


# --------------------------------------------------------------------------- 1. kill -9


def test_kill9_workers_ten_times(chaos: Any) -> None:
    """``kill -9`` at ten seeded-random moments: sometimes one pool process (Celery requeues its
    message: task_reject_on_worker_lost), sometimes a whole worker with its pool (its messages
    wait in Redis's unacked set for the visibility timeout; the sweeper re-drives the records
    once their leases run out). A killed worker is started again, as a supervisor would."""
    c = chaos(
        "kill9",
        workers={"wa": 2, "wb": 2},
        CELERY_VISIBILITY_TIMEOUT="20",
    )
    rng = c.rng  # CHAOS_SEED
    c.create_backlog()
    total = len(c.backlog.bills) + len(c.backlog.reports)
    # A kill moment is a point of progress (records posted), so every kill lands mid-run.
    moments = sorted(rng.sample(range(5, int(total * 0.8)), 10))
    # Seven pool processes and three whole workers, in a seeded order.
    kinds = ["pool"] * 7 + ["worker"] * 3
    rng.shuffle(kinds)
    kills: list[str] = []
    generation = 0
    for moment, kind in zip(moments, kinds, strict=True):
        c.wait_posted(moment)
        name = rng.choice(sorted(c.workers))
        worker = c.workers[name]
        children = child_pids(worker)
        # Preferably a pool process in the middle of a step (it holds a record's lease).
        leasing = _leasing_pids(c)
        pool = sorted(set(children) & leasing) or children
        if pool and kind == "pool":
            pid = rng.choice(pool)
            os.kill(pid, signal.SIGKILL)
            where = "mid-step" if pid in leasing else "idle"
            kills.append(f"{name}: pool process {pid} ({where}) at {moment} posted")
        else:
            worker.kill()  # kill -9 of the worker's process group: main process and pool
            del c.workers[name]
            generation += 1
            c.start_worker(f"{name[:2]}{generation}", 2)
            kills.append(f"{name}: whole worker and pool at {moment} posted")
    assert len(kills) == 10
    result = c.final_check()
    redriven = _audit_count(c, step="sweeper", outcome="redriven")
    adopted = _audit_count(c, step="post", outcome="adopted")
    c.report(kills="; ".join(kills), redriven=redriven, adopted=adopted, **result)


def _leasing_pids(c: Any) -> set[int]:
    """Processes holding a record's lease right now (owner ``host:pid:task id``)."""
    with c.db.session() as s:
        owners = s.execute(
            select(SyncRecord.lease_owner).where(SyncRecord.lease_owner.is_not(None))
        ).scalars()
        return {
            int(o.split(":")[1]) for o in owners if o.count(":") >= 2 and o.split(":")[1].isdigit()
        }


# --------------------------------------------------------------------------- 2. Redis restart


def test_redis_restart_mid_run(chaos: Any) -> None:
    """Redis restarts without persistence: every queued message is gone. The workers reconnect
    and consume again (``/readyz`` is 200 and a bill created after the restart is posted); the
    ledger and the sweeper bring back what the lost messages carried, the inbox relay the
    events."""
    c = chaos("redis")
    moment = c.rng.randint(30, 120)  # records posted when Redis restarts (CHAOS_SEED)
    c.create_backlog()
    c.wait_posted(moment)
    assert c.stack.redis is not None
    lost = _queued_messages(c.stack.redis.url)
    restarted = time.monotonic()
    c.stack.redis.restart()
    c.wait(lambda: _ready(c.receiver), what="/readyz 200 after the restart")
    fresh = c.create_bills(1, start=10_000)
    [number] = fresh
    c.wait(lambda: _posted_bill(c, number), what=f"bill {number} (after restart) posted")
    c.timings["fresh_after_restart"] = time.monotonic() - restarted
    result = c.final_check()
    redriven = _audit_count(c, step="sweeper", outcome="redriven")
    c.report(restart_at=moment, redriven=redriven, lost=lost, **result)


def _queued_messages(url: str) -> int:
    """Messages Redis holds right now (queued or delivered but unacknowledged)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return sum(int(client.llen(q)) for q in ("zoho", "concur", "default")) + int(
            client.hlen("unacked")
        )
    finally:
        client.close()


def _ready(receiver: str) -> bool:
    try:
        return requests.get(f"{receiver}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _posted_bill(c: Any, number: str) -> bool:
    with c.db.session() as s:
        state = s.execute(
            select(SyncRecord.state).where(SyncRecord.stable_ref == number)
        ).scalar_one_or_none()
    return state == "posted"


# --------------------------------------------------------------------------- 3. PostgreSQL down


OUTAGE_SECONDS = 10.0


def test_postgres_unavailable_for_ten_seconds(chaos: Any) -> None:
    """The database is unreachable for 10 s while webhooks keep coming: the receivers answer
    503, the senders retry (Zoho's workflow webhook and Concur's ESS, as the sandbox simulates
    them), and every event that was answered 2xx is processed; the workers' lost steps come back
    through the sweeper."""
    c = chaos("postgres")
    # Retries that outlast the outage: ESS makes 5 attempts, 1 s doubling-ish (18.7 s in all).
    c.configure_deliveries(base_delay=1.0, factor=2.2, timeout=5.0)
    moment = c.rng.randint(10, 60)  # records posted when the database goes (CHAOS_SEED)
    pending = c.pending_reports(50)
    c.create_bills(100)
    c.wait_posted(moment)
    assert c.stack.db_proxy is not None
    c.stack.db_proxy.cut()
    cut_at = time.monotonic()
    try:
        c.create_bills(100, start=100)
        c.approve(pending)
        # The outage lasts until the receiver has refused a delivery, and at least 10 s.
        c.wait(lambda: _delivered_503(c), what="a 503 from the receiver")
        # The outage lasts its 10 s whatever the test does meanwhile: the fault, not a race.
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - cut_at)))
    finally:
        c.stack.db_proxy.restore()
    c.timings["outage"] = time.monotonic() - cut_at
    result = c.final_check()
    deliveries = _deliveries_by_id(c)
    refused = {d: a for d, a in deliveries.items() if any(x.get("status") == 503 for x in a)}
    sources = {("zoho" if "/webhooks/zoho/" in a[0]["url"] else "concur") for a in refused.values()}
    assert sources == {"zoho", "concur"}, f"503s seen only by {sources}"
    recovered = [d for d, a in refused.items() if a[-1].get("ok")]
    assert recovered == list(refused), "a delivery refused during the outage was never accepted"
    # Nothing acknowledged was lost: every delivery that got a 2xx is an event, processed.
    accepted = sum(1 for a in deliveries.values() if any(x.get("ok") for x in a))
    with c.db.session() as s:
        events = s.execute(select(func.count()).select_from(WebhookEvent)).scalar()
    assert events == accepted == len(c.backlog.bills) + len(c.backlog.reports)
    c.report(cut_at=moment, refused=len(refused), accepted=accepted, **result)


def _delivered_503(c: Any) -> bool:
    return any(a.get("status") == 503 for a in c.admin.deliveries()["attempts"])


def _deliveries_by_id(c: Any) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for attempt in c.admin.deliveries()["attempts"]:
        out.setdefault(attempt["delivery_id"], []).append(attempt)
    for attempts in out.values():
        attempts.sort(key=lambda a: a["attempt"])
    return out


# --------------------------------------------------------------------------- 4. commit then fail


def test_commit_then_fail_on_every_post(chaos: Any) -> None:
    """Every kind of POST we make is stored by the vendor and then the connection is reset
    before the answer: payment requests, journals, Concur vendors and Zoho vendor contacts. The
    retry searches by the stable reference and adopts; nothing is created twice."""
    c = chaos(
        "commit_fail",
        VENDORS_SYNC_INTERVAL="5",
        rules={"vendors": {"directions": ["zoho_to_concur", "concur_to_zoho"]}},
    )
    # Fault placement (CHAOS_SEED): part of each POST type's faults is armed before the backlog
    # (the first POSTs), the rest once a seeded number of records is posted (mid-run).
    later: dict[str, int] = {}
    for path, count in ((PAYMENT_REQUESTS, 25), (JOURNALS, 10), (CONCUR_VENDORS, 2),
                        (ZOHO_CONTACTS, 2)):  # fmt: skip
        first = c.rng.randint(1, count)
        later[path] = count - first
        c.admin.add_fault("POST", path, "commit_then_fail", count=first)
    mid_run = c.rng.randint(20, 150)
    c.create_backlog(bills=190)
    c.create_bills(
        10, start=190, vendors=[("Hertz Corporation", "USD"), ("Uber Technologies", "USD")]
    )
    c.wait_posted(mid_run)
    for path, count in later.items():
        if count:
            c.admin.add_fault("POST", path, "commit_then_fail", count=count)
    patterns = (PAYMENT_REQUESTS, JOURNALS, CONCUR_VENDORS, ZOHO_CONTACTS)

    def fired() -> dict[str, int]:
        counts = dict.fromkeys(patterns, 0)
        for f in c.admin.faults()["history"]:
            for p in patterns:
                if f.get("kind") == "commit_then_fail" and fnmatch.fnmatch(f["path"], p):
                    counts[p] += 1
        return counts

    # The Zoho contacts are created by the vendors pass (beat, every 5 s), whenever it runs.
    c.wait_progress(
        lambda: all(fired().values()),
        lambda: sum(fired().values()),
        what="a lost answer on every POST type",
    )
    result = c.final_check()
    adopted = _audit_count(c, step="post", outcome="adopted")
    c.report(mid_run=mid_run, later=later, fired=fired(), adopted=adopted, **result)


# --------------------------------------------------------------------------- 5. 429 and 5xx


def test_429_storms_and_5xx_bursts_from_both_vendors(chaos: Any) -> None:
    """Both vendors throttle and fail in bursts: injected 429/500/502/503 on Zoho reads and
    journal POSTs and on Concur reads and payment-request POSTs, plus Concur's real per-endpoint
    limit switched on (429 with ``retry-after: 0``). Retries back off; nothing is lost or
    doubled, nothing goes dead."""
    c = chaos("throttle")
    c.expect_throttling(MINUTE_WINDOW_SECONDS)  # a Zoho 429 waits a whole minute window
    from sandbox.concur.admin import ConcurAdmin

    concur = ConcurAdmin(c.sandbox.url)
    concur.set_limit("paymentrequest", 15, period=1.0, company_id=COMPANY)
    concur.set_limit("entries", 10, period=1.0, company_id=COMPANY)
    for method, path, kind, count in (
        ("GET", ZOHO_BILL, "429", 15),
        ("GET", ZOHO_BILL, "500", 10),
        ("GET", ZOHO_BILL, "503", 5),
        ("POST", JOURNALS, "429", 5),
        ("POST", JOURNALS, "502", 5),
        ("POST", PAYMENT_REQUESTS, "429", 20),
        ("POST", PAYMENT_REQUESTS, "500", 10),
        ("POST", PAYMENT_REQUESTS, "503", 5),
        ("GET", "/concur/*/api/v3.0/expense/reports/*", "429", 10),
        ("GET", "/concur/*/api/v3.0/expense/entries", "500", 5),
    ):
        c.admin.add_fault(method, path, kind, count=count)
    c.create_backlog()
    result = c.final_check()
    fired = [f["kind"] for f in c.admin.faults()["history"]]
    served_429 = sum(c.admin.stats()["rate_limited"].values())  # injected + Concur's limit
    assert {"429", "500", "502", "503"} <= set(fired)
    assert c.count(states=("dead",)) == 0
    c.report(injected=len(fired), served_429=served_429, **result)


# --------------------------------------------------------------------------- 6. token revoked


def test_token_revoked_mid_run_parks_then_resumes(chaos: Any) -> None:
    """Zoho's refresh token is revoked mid-run (its access tokens die with it): the connection
    goes ``needs_reauth`` with one alert, the records that need Zoho park in ``needs_reauth``
    (none dead), and after the operator re-authorizes with ``connector connect zoho`` they
    resume by themselves and post."""
    c = chaos("revoke")
    moment = c.rng.randint(20, 80)  # records posted when the token is revoked (CHAOS_SEED)
    c.create_backlog()
    c.wait_posted(moment)
    [token] = [t for t in c.admin.zoho_tokens() if not t.get("revoked")]
    c.admin.zoho_revoke(id=token["id"])
    revoked = time.monotonic()
    c.wait(lambda: _connection_status(c) == "needs_reauth", what="needs_reauth")
    c.wait(lambda: c.count(states=("needs_reauth",)) >= 5, what="records parked")
    parked = c.count(states=("needs_reauth",))
    assert c.count(states=("dead", "failed")) == 0
    alerts = _audit_count(c, step="connection", outcome="needs_reauth")
    assert alerts == 1, f"{alerts} needs_reauth alerts for one dead credential"
    # The operator's path: a new Self Client code, `connector connect zoho`.
    grant = c.admin.zoho_self_client_code(scope=_zoho_scope())
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "connect", "zoho", str(c.cid), "--code",
         grant["code"], "--organization-id", ORG, "--accounts-server", grant["accounts_server"]],
        cwd=ROOT, env=c.stack.env(), capture_output=True, text=True, timeout=c.waits.deadline(),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    c.timings["parked_for"] = time.monotonic() - revoked
    assert _connection_status(c) == "active", _connection_trail(c)
    result = c.final_check()
    c.report(revoked_at=moment, parked=parked, cli=out.stdout.strip().splitlines()[-1], **result)


def _zoho_scope() -> str:
    from connector.zoho.auth import SCOPE

    return SCOPE


def _connection_trail(c: Any) -> str:
    with c.db.session() as s:
        rows = s.execute(
            select(AuditEvent.at, AuditEvent.record_id, AuditEvent.step,
                   AuditEvent.outcome, AuditEvent.message)
            .where(AuditEvent.step.in_(("connection", "resume")) | (AuditEvent.to_state == "needs_reauth"))
            .order_by(AuditEvent.id)
        ).all()  # fmt: skip
        creds = s.execute(select(Credential.system, Credential.status, Credential.refresh_issued_at,
                                 Credential.updated_at)).all()  # fmt: skip
        conn = s.get(Connection, c.cid)
        status = (conn.status, conn.status_reason)
    lines = [" | ".join(str(x)[:150] for x in row) for row in rows[-40:]]
    return "\n".join([*lines, f"credentials: {creds}", f"connection: {status}"])


def _connection_status(c: Any) -> str:
    with c.db.session() as s:
        return str(s.get(Connection, c.cid).status)


# --------------------------------------------------------------------------- 7. five deliveries


def test_every_webhook_delivered_five_times_concurrently(chaos: Any) -> None:
    """Between the sandbox and the receiver, every Zoho webhook and every ESS event is sent
    five times at once. The inbox keeps one event per delivery (one 202, four 200s) and each
    source record is posted once."""
    c = chaos("fanout")
    with FanOut(c.receiver, copies=5) as fan:
        c.admin.zoho_set_webhook(
            ORG, f"{fan.url}/webhooks/zoho/{c.cid}", c.secret, entities=["bill", "invoice"]
        )
        c.subscribe(f"{fan.url}/webhooks/concur")
        c.create_backlog()
        result = c.final_check()
        c.wait(fan.idle, what="every fan-out delivery answered")
        groups = fan.groups()
    assert len(groups) == len(c.backlog.bills) + len(c.backlog.reports)
    assert all(len(g) == 5 for g in groups), "a delivery was not repeated five times"
    firsts = [sorted(g).count(202) for g in groups]
    assert firsts == [1] * len(groups), "a repeated delivery was accepted as new"
    with c.db.session() as s:
        events = s.execute(select(func.count()).select_from(WebhookEvent)).scalar()
    assert events == len(groups)
    c.report(deliveries=5 * len(groups), **result)
