"""Issue #7 "done when", end to end: sandbox ESS -> gunicorn receiver -> Celery worker -> Zoho.

Real processes: the webhook receiver (gunicorn, verifying ``Concur-Signature`` with the sandbox's
downloaded public key), a Celery worker on Redis and PostgreSQL, and Celery beat running the
sweeper (and, in the polling run, the expenses back-stop). The sandbox runs in this process.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from connector import authorize, connections
from connector.concur.expense import ExpenseReports
from connector.config import Settings
from connector.db import Database
from connector.models import SyncRecord, WebhookEvent
from tasks.launch import beat_argv
from tests.flows.expenses_support import (
    RULES,
    check_journal,
    expected_journal,
    import_rules,
    journal_validator,
    spec_errors,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
N = 30
JOURNALS = "/zoho/*/api/books/v3/journals"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """An OS process whose output is kept for the failure message."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("w")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self.handle, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.handle.close()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def claim_redis_db(shared_url: str) -> tuple[str, Any]:
    """A Redis database nobody else is using, claimed for this test, then flushed.

    Other suites may run at the same time on the same Redis (each on a database of their own
    choosing); a worker here must never consume their messages, nor they ours.
    """
    import redis

    base = shared_url.rsplit("/", 1)[0]
    token = uuid.uuid4().hex
    for number in range(12, 0, -1):
        url = f"{base}/{number}"
        client = redis.Redis.from_url(url)
        if client.set("connector-test-claim", token, nx=True, ex=900) and client.dbsize() == 1:
            client.flushdb()
            client.set("connector-test-claim", token, ex=900)

            def release(client: Any = client) -> None:
                if client.get("connector-test-claim") == token.encode():
                    client.flushdb()
                client.close()

            return url, release
        client.close()
    pytest.skip("no free Redis database to isolate the end-to-end test in")


@pytest.fixture
def request_release() -> Iterator[list[Any]]:
    """Runs its releases after every other fixture of the test (workers stopped first)."""
    releases: list[Any] = []
    yield releases
    for release in releases:
        release()


@pytest.fixture
def stack(
    request_release: list[Any],
    sandbox: Any,
    admin: Any,
    pg_db: Database,
    stack_env: dict[str, str],
    start_worker: Any,
    tmp_path: Path,
) -> Iterator[dict[str, Any]]:
    """A connection authorized on both sides, rules imported, and the process environment."""
    from connector.zoho.auth import SCOPE
    from sandbox.concur import config as concur_config
    from sandbox.zoho import seed as zoho_seed

    own_redis, release = claim_redis_db(stack_env["REDIS_URL"])
    request_release.append(release)
    pem = tmp_path / "concur-ess.pem"
    pem.write_bytes(requests.get(f"{sandbox.url}/_admin/concur/public-key.pem", timeout=10).content)
    env = {
        **stack_env,
        "REDIS_URL": own_redis,
        "CONNECTOR_SANDBOX_URL": sandbox.url,
        "ZOHO_CLIENT_ID": "sandbox-zoho-client",
        "ZOHO_CLIENT_SECRET": "sandbox-zoho-secret",
        "ZOHO_ACCOUNTS_URL": f"{sandbox.url}/zoho/us/accounts",
        "CONCUR_CLIENT_ID": "sandbox-concur-client",
        "CONCUR_CLIENT_SECRET": "sandbox-concur-secret",
        "CONCUR_AUTH_URL": f"{sandbox.url}/concur/us2",
        "CONCUR_WEBHOOK_PUBLIC_KEYS": str(pem),
        "CONNECTOR_SWEEP_INTERVAL": "1",
        "CONNECTOR_LEASE_SECONDS": "20",
        "EXPENSES_POLL_INTERVAL": "3600",
    }
    settings = Settings.from_env(env)
    cid = connections.create(pg_db, "e2e-expenses")
    grant = admin.zoho_self_client_code(scope=SCOPE)
    authorize.connect_zoho_self_client(
        pg_db, settings, cid, code=grant["code"], organization_id=zoho_seed.MAIN_ORG_ID,
        accounts_server=grant["accounts_server"],
    )  # fmt: skip
    authorize.connect_concur(
        pg_db, settings, cid, company_id=concur_config.SEED_US_COMPANY_ID,
        request_token=concur_config.SEED_US_REQUEST_TOKEN,
    )  # fmt: skip
    import_rules(pg_db, cid, RULES)
    procs: list[Proc] = []

    def spawn(name: str, argv: list[str], extra: dict[str, str] | None = None) -> Proc:
        proc = Proc(argv, {**env, **(extra or {})}, tmp_path / f"{name}.log")
        procs.append(proc)
        return proc

    yield {
        "env": env,
        "settings": settings,
        "db": pg_db,
        "cid": cid,
        "spawn": spawn,
        "sandbox": sandbox,
        "admin": admin,
        "start_worker": start_worker,
        "company": concur_config.SEED_US_COMPANY_ID,
    }
    for proc in procs:
        proc.stop()


def start_receiver(stack: dict[str, Any]) -> str:
    port = free_port()
    proc = stack["spawn"](
        "web",
        [sys.executable, "-m", "gunicorn", "webhooks.wsgi:app", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "4"],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or proc.proc.poll() is not None:
            raise AssertionError("receiver did not start:\n" + proc.tail())
        time.sleep(0.2)


def start_beat(stack: dict[str, Any], **extra: str) -> None:
    stack["spawn"](
        "beat",
        beat_argv(schedule=str(Path(stack["env"]["CONNECTOR_VAR_DIR"]) / "beat-schedule")),
        extra,
    )  # fmt: skip


def subscribe(stack: dict[str, Any], receiver: str) -> None:
    """ESS subscription with an App JWT, as `connector concur subscribe` does."""
    from connector.concur import auth as concur_auth
    from connector.concur.client import ConcurClient

    token, geo = concur_auth.app_token(stack["settings"])
    client = ConcurClient(geo, None)
    client.session.headers["Authorization"] = f"Bearer {token}"
    client.subscriptions.put_webhook("e2e-expenses", f"{receiver}/webhooks/concur")


def new_pending_reports(stack: dict[str, Any], n: int) -> list[str]:
    """``n`` generated reports waiting for approval (several currencies, splits, cash + card)."""
    company = stack["sandbox"].state.concur.store.company(stack["company"])
    before = set(company.reports)
    stack["admin"].generate(
        "reports", n, company_id=stack["company"], approval="A_PEND", payment="P_NOTP",
        entries=3, seed=len(before),
    )  # fmt: skip
    return sorted(set(company.reports) - before)


def approve_all(stack: dict[str, Any], report_ids: list[str]) -> None:
    from sandbox.concur.admin import ConcurAdmin

    concur = ConcurAdmin(stack["sandbox"].url)
    for report_id in report_ids:
        concur.approve(report_id)


def wait_posted(
    stack: dict[str, Any], report_ids: list[str], timeout: float = 50.0
) -> dict[str, SyncRecord]:
    deadline = time.monotonic() + timeout
    wanted = set(report_ids)
    while True:
        with stack["db"].session() as s:
            rows = list(
                s.execute(select(SyncRecord).where(SyncRecord.source_id.in_(wanted))).scalars()
            )
            for row in rows:
                s.expunge(row)
        posted = {r.source_id: r for r in rows if r.state == "posted" and r.lease_owner is None}
        if set(posted) == wanted:
            return posted
        if time.monotonic() > deadline:
            states: dict[str, int] = {}
            for r in rows:
                states[r.state] = states.get(r.state, 0) + 1
            problems = {r.last_error_message for r in rows if r.last_error_message}
            raise AssertionError(
                f"{len(posted)}/{len(wanted)} posted; states {states}; {len(rows)} records; "
                f"errors {sorted(problems)[:5]}\n" + worker_tail(stack)
            )
        time.sleep(0.25)


def worker_tail(stack: dict[str, Any], lines: int = 60) -> str:
    out = []
    for n, worker in enumerate(stack.get("workers", [])):
        Path(f"/tmp/expenses-e2e-worker-{n}.log").write_text(worker.log())
        out.extend(worker.log().splitlines()[-lines:])
    return "\n".join(out)


def start_workers(stack: dict[str, Any]) -> None:
    stack.setdefault("workers", []).append(stack["start_worker"](concurrency=4, env=stack["env"]))


def check_all(stack: dict[str, Any], posted: dict[str, SyncRecord]) -> None:
    """30 balanced journals whose lines, tags and totals match the reports; no duplicates.

    Journals are read from the sandbox's store (this process) rather than the Books API, so the
    check does not spend the organization's 100 requests a minute the worker is using.
    """
    from sandbox.zoho import seed as zoho_seed

    db, settings, cid = stack["db"], stack["settings"], stack["cid"]
    org = stack["sandbox"].state.zoho.orgs[zoho_seed.MAIN_ORG_ID]
    concur = connections.concur_client(db, settings, cid).expense_reports
    precision = {c["currency_code"]: int(c["price_precision"]) for c in org.currencies.values()}
    validator = journal_validator()
    currencies, splits = set(), set()
    for report_id, rec in posted.items():
        assert spec_errors(validator, rec.mapped_payload["journal"]) == []
        header = concur.get(report_id)
        entries, allocations = concur.entries(report_id), concur.allocations(report_id)
        with stack["sandbox"].state.lock:
            ids = [i for i in org.journals_by_ref.get(report_id, []) if i in org.journals]
            journal = json.loads(json.dumps(org.journals[rec.target_id].data))
        assert ids == [rec.target_id]
        check_journal(journal, expected_journal(header, entries, allocations),
                      precision[header["CurrencyCode"]])  # fmt: skip
        currencies.add(header["CurrencyCode"])
        splits.update(len([a for a in allocations if a["EntryID"] == e["ID"]]) for e in entries)
    assert currencies == {"USD", "EUR", "JPY"} and {1, 2, 3} <= splits
    assert stack["admin"].duplicates()["zoho"]["journals_by_reference_number"] == []
    with db.session() as s:
        per_report = s.execute(
            select(SyncRecord.source_id, func.count()).where(SyncRecord.flow == "expenses")
            .group_by(SyncRecord.source_id)
        ).all()  # fmt: skip
    assert all(count == 1 for _, count in per_report)


def calls_per_report(stats: dict[str, Any], company: str, org: str, n: int) -> dict[str, float]:
    tenants = stats["per_tenant"]
    zoho = tenants.get(f"zoho:{org}", 0)
    concur = tenants.get(f"concur:{company}", 0)
    writes = sum(
        count for key, count in stats["per_tenant_endpoint"].get(f"zoho:{org}", {}).items()
        if key.startswith("POST ")
    )  # fmt: skip
    return {"zoho": zoho / n, "zoho_writes": writes / n, "concur": concur / n}


def stats_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "per_tenant": {
            k: v - before["per_tenant"].get(k, 0) for k, v in after["per_tenant"].items()
        },
        "per_tenant_endpoint": {
            tenant: {
                k: v - before["per_tenant_endpoint"].get(tenant, {}).get(k, 0)
                for k, v in endpoints.items()
            }
            for tenant, endpoints in after["per_tenant_endpoint"].items()
        },
    }


def test_signed_events_post_thirty_balanced_journals(stack: dict[str, Any]) -> None:
    from sandbox.zoho import seed as zoho_seed

    admin, company, org = stack["admin"], stack["company"], zoho_seed.MAIN_ORG_ID
    receiver = start_receiver(stack)
    subscribe(stack, receiver)
    start_workers(stack)
    start_beat(stack)
    reports = new_pending_reports(stack, N)
    before = admin.stats()
    approve_all(stack, reports)
    posted = wait_posted(stack, reports)
    cold = calls_per_report(stats_between(before, admin.stats()), company, org, N)
    check_all(stack, posted)
    # Every event was verified, stored once and turned into exactly one record.
    with stack["db"].session() as s:
        events = s.execute(
            select(WebhookEvent.status, func.count()).where(WebhookEvent.source == "concur")
            .group_by(WebhookEvent.status)
        ).all()  # fmt: skip
    assert dict(events) == {"processed": N}
    # Steady state: the caches (chart of accounts, tags, currencies, today's rates) are warm.
    more = new_pending_reports(stack, 10)
    before = admin.stats()
    approve_all(stack, more)
    wait_posted(stack, more)
    warm = calls_per_report(stats_between(before, admin.stats()), company, org, len(more))
    print(f"\nAPI calls per report: first {N} (cold caches) {cold}; next 10 (warm) {warm}")
    assert cold["zoho_writes"] == warm["zoho_writes"] == 1.0
    # A warm worker process reads nothing from Zoho but the POST; one that meets a currency for
    # the first time reads its rate once (4 worker processes, 3 currencies).
    assert warm["zoho"] <= 1.2 and warm["concur"] == 4.0


def test_duplicate_events_commit_then_fail_and_429_5xx_still_post_each_report_once(
    stack: dict[str, Any],
) -> None:
    from sandbox.concur import signing

    receiver = start_receiver(stack)
    subscribe(stack, receiver)
    start_workers(stack)
    start_beat(stack)
    reports = new_pending_reports(stack, N)
    admin = stack["admin"]
    admin.add_fault("POST", JOURNALS, "commit_then_fail", count=4)
    admin.add_fault("POST", JOURNALS, 429, count=3)
    admin.add_fault("POST", JOURNALS, 500, count=2)
    admin.add_fault("GET", "/zoho/*/api/books/v3/journals", 503, count=1)
    admin.add_fault("GET", "/concur/*/api/v3.0/expense/entries", 429, count=3)
    admin.add_fault("GET", "/concur/*/api/v3.0/expense/reports/*", 500, count=2)
    approve_all(stack, reports)
    # ESS is at-least-once: every event again with its id, and again as a new event (new id).
    deliverer = stack["sandbox"].state.deliverer
    for published in list(stack["sandbox"].state.concur.store.events):
        event = published["event"]
        body = json.dumps(event, separators=(",", ":")).encode()
        twin = json.dumps({**event, "id": str(uuid.uuid4())}, separators=(",", ":")).encode()
        for payload in (body, twin):
            headers = {
                "Content-Type": "application/json",
                "Concur-Signature": signing.sign_event(payload),
            }
            deliverer.submit(f"{receiver}/webhooks/concur", payload, headers, attempts=5, meta={})
    posted = wait_posted(stack, reports, timeout=55)
    check_all(stack, posted)
    fired = [f for f in admin.faults()["history"] if f.get("kind") == "commit_then_fail"]
    assert fired, "the commit_then_fail fault never fired"
    with stack["db"].session() as s:
        adopted = s.execute(
            select(func.count()).select_from(SyncRecord).where(SyncRecord.post_attempts > 1)
        ).scalar()
        stored = s.execute(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.source == "concur")
        ).scalar()
    assert adopted >= 1
    assert stored == 2 * N  # the same id is stored once; a new id is a new (harmless) event


def test_polling_alone_posts_every_approved_report(stack: dict[str, Any]) -> None:
    start_workers(stack)
    start_beat(stack, EXPENSES_POLL_INTERVAL="1")
    reports = new_pending_reports(stack, N)
    approve_all(stack, reports)  # no subscription: these events go nowhere
    seeded = [r["ID"] for r in ExpenseReports(
        connections.concur_client(stack["db"], stack["settings"], stack["cid"])
    ).iter_approved() if r["ID"] not in reports]  # fmt: skip
    posted = wait_posted(stack, reports + seeded)
    check_all(stack, {k: v for k, v in posted.items() if k in reports})
    with stack["db"].session() as s:
        assert s.execute(select(func.count()).select_from(WebhookEvent)).scalar() == 0
