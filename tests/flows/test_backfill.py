"""``connector backfill``: ETA arithmetic, the resumable cursor, the dry run, and a real
backfill of 500 bills killed with SIGKILL half-way, restarted, then posted by a real worker
without a duplicate (issue #8, item 3).

The integration tests run on the embedded default (SQLite ledger and broker in a temporary var
dir) against the session's sandbox; the CLI runs as real subprocesses, as an operator runs it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cli import demo
from connector.config import Settings
from connector.db import Database
from connector.limits.ratelimit import Limit
from connector.migrate import upgrade
from connector.models import AuditEvent, SyncCursor, SyncRecord
from flows import FLOWS, backfill
from flows.backfill_budget import Budget, Progress, Quota, eta_seconds, human_duration
from flows.backfill_cursor import Cursor, cursor_key, load_cursor
from tasks.launch import worker_argv

ROOT = Path(__file__).resolve().parents[2]
TEST_SECRET_KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


# =========================================================================== units


def budget(zoho: str = "100/60", concur: str = "600/60", **quota: Any) -> Budget:
    z, c = (Limit(int(x.split("/")[0]), float(x.split("/")[1])) for x in (zoho, concur))
    return Budget(z, c, Quota(**quota))


def test_eta_is_bound_by_the_slower_system() -> None:
    # 300 Zoho calls at 100/60 s = 180 s; 300 Concur calls at 600/60 s = 30 s.
    assert eta_seconds(300, 300, budget()) == (180.0, "zoho")
    # Concur at 10/60 s makes Concur the bottleneck: 300 * 6 = 1800 s.
    assert eta_seconds(300, 300, budget(concur="10/60")) == (1800.0, "concur")


def test_eta_waits_for_the_daily_quota() -> None:
    # 2,500 Zoho calls, 500 left today (renews in 3,600 s), 1,000 a day:
    # 2,000 over -> 2 more days: renewal + 1 day + 1,000 calls at 0.6 s.
    b = budget(limit=1000, remaining=500, reset=3600.0, seen_at=0.0)
    seconds, bound = eta_seconds(2500, 0, b, now=0.0)
    assert bound == "zoho quota"
    assert seconds == pytest.approx(3600 + 86400 + 1000 * 0.6)
    # The renewal counts down with the clock.
    assert eta_seconds(2500, 0, b, now=600.0)[0] == pytest.approx(3000 + 86400 + 600)
    # Within the quota, the quota does not bind.
    assert eta_seconds(400, 0, b)[1] == "zoho"


def test_quota_reads_zoho_headers_as_countdown_or_epoch() -> None:
    q = Quota()
    q.observe({"X-Rate-Limit-Limit": "10000", "X-Rate-Limit-Remaining": "9412",
               "X-Rate-Limit-Reset": "7200"}, now=5.0)  # fmt: skip
    assert (q.limit, q.remaining, q.reset_in(5.0), q.reset_in(65.0)) == (10000, 9412, 7200, 7140)
    q.observe({"X-Rate-Limit-Remaining": "10", "X-Rate-Limit-Reset": str(time.time() + 100)}, 9.0)
    assert q.remaining == 10 and 95 < (q.reset_in(9.0) or 0) <= 100
    q.observe({"Content-Type": "application/json"}, 10.0)  # no headers: nothing changes
    assert q.remaining == 10


def test_progress_line_with_a_frozen_clock() -> None:
    now = [100.0]
    out = io.StringIO()
    b = budget(limit=10000, remaining=9000, reset=3600.0, seen_at=100.0)
    p = Progress("payables", dt.date(2025, 1, 1), b, stream=out, clock=lambda: now[0], tty=False)
    now[0] = 110.0  # 10 s later: two pages of 200 read, 380 new records
    p.advance("bill", 2, found=400, new=380, listed_here=400, more=True)
    line = out.getvalue().strip()
    assert p.rate() == 40.0
    # 380 records * 1 Zoho call + 1 more list page = 381 calls at 0.6 s
    assert p.eta() == (pytest.approx(381 * 0.6), "zoho")
    assert p.fraction() == pytest.approx(400 / 600)
    assert "[#############-------]" in line and "400 found, 380 new, 40.0/s" in line
    assert "ETA 3m49s to post (zoho-bound, Zoho quota 9,000 left (renews in 59m50s))" in line
    now[0] = 120.0
    p.advance("bill", 3, found=450, new=430, listed_here=50, more=False)
    assert p.fraction() == 1.0 and p.rate() == 22.5
    assert "[####################]" in out.getvalue().splitlines()[-1]


def test_durations_and_cursor_keys() -> None:
    assert [human_duration(s) for s in (0, 59, 61, 3661, 90000, None)] == [
        "0s", "59s", "1m01s", "1h01m", "1d01h", "?",
    ]  # fmt: skip
    keys = {cursor_key(f, dt.date(2025, 1, 31)) for f in backfill.FLOWS}
    assert len(keys) == 3 and all(len(k) <= 16 for k in keys)  # sync_cursors.flow is 16 wide
    assert cursor_key("payables", dt.date(2025, 1, 31)) == "bf:p:2025-01-31"
    assert cursor_key("payables", dt.date(2024, 1, 31)) not in keys
    c = Cursor(part=1, position=7, found=1200, new=1100, runs=2)
    assert Cursor.loads(c.dumps()) == c and len(c.dumps()) < 255
    assert Cursor.loads(None) == Cursor()


# =========================================================================== sandbox stack


@pytest.fixture
def stack(sandbox: Any, admin: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A connection set up against the sandbox (cli.demo.set_up), vendors reconciled, on
    the embedded default rooted in ``tmp_path/var``; the env the CLI subprocesses get."""
    var = tmp_path / "var"
    var.mkdir()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("CONNECTOR_", "DATABASE_", "REDIS_", "ZOHO_", "CONCUR_"))}  # fmt: skip
    env = demo.sandbox_env(
        sandbox.url,
        {**base, "CONNECTOR_VAR_DIR": str(var), "CONNECTOR_SECRET_KEY": TEST_SECRET_KEY,
         "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    settings = Settings.from_env(env)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    report = demo.set_up(db, settings, sandbox.url, "http://127.0.0.1:9", fresh_sandbox=True)
    FLOWS.sync(db, settings, report.connection_id, "vendors")  # links the bills' vendors
    yield {"env": env, "settings": settings, "db": db, "cid": report.connection_id}
    db.dispose()


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def generate_bills(admin: Any, n: int) -> None:
    admin.generate("zoho.bills", n, organization_id=demo.ZOHO_ORG, webhooks=False)


def payables_records(db: Database, cid: int) -> tuple[int, int]:
    """(records, distinct documents) of the payables flow."""
    with db.session() as s:
        where = (SyncRecord.connection_id == cid, SyncRecord.flow == "payables")
        total = s.execute(select(func.count()).select_from(SyncRecord).where(*where)).scalar_one()
        docs = s.execute(
            select(func.count(func.distinct(SyncRecord.source_id))).where(*where)
        ).scalar_one()
    return total, docs


def test_cursor_resumes_after_an_interruption(stack: dict[str, Any], admin: Any) -> None:
    db, settings, cid = stack["db"], stack["settings"], stack["cid"]
    generate_bills(admin, 60)
    pages: list[list[int]] = []

    def stop_after_three(batch: list[tuple[int, Any]]) -> None:
        pages.append([rid for rid, _ in batch])
        if len(pages) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill.run(db, settings, cid, "payables", today(), page_size=10, on_page=stop_after_three)
    cursor = load_cursor(db, cid, "payables", today())
    # The third page was committed (records and cursor together) before its enqueue failed.
    assert (cursor.position, cursor.found, cursor.new, cursor.done) == (4, 30, 30, False)
    assert payables_records(db, cid) == (30, 30)

    resumed: list[list[int]] = []
    outcome = backfill.run(db, settings, cid, "payables", today(), page_size=10,
                           on_page=lambda b: resumed.append([rid for rid, _ in b]))  # fmt: skip
    # It re-read page 3 (its records never reached a worker, so they are enqueued again), then
    # went on; nothing counted twice, nothing created twice.
    assert resumed[0] == pages[2]
    assert (outcome.cursor.found, outcome.cursor.new, outcome.cursor.done) == (60, 60, True)
    assert outcome.cursor.runs == 2
    assert payables_records(db, cid) == (60, 60)
    again = backfill.run(db, settings, cid, "payables", today())
    assert again.already_done
    # --restart lists everything again and still creates nothing.
    restarted = backfill.run(db, settings, cid, "payables", today(), restart=True)
    assert (restarted.cursor.found, restarted.cursor.new) == (60, 0)
    assert payables_records(db, cid) == (60, 60)


def connector(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_dry_run_writes_json_lines_with_validation_results(
    stack: dict[str, Any], admin: Any, sandbox: Any, tmp_path: Path
) -> None:
    db, cid = stack["db"], stack["cid"]
    vendors = {v["contact_name"]: v["contact_id"] for v in _zoho_vendors(sandbox)}
    ok = admin.zoho_create(demo.ZOHO_ORG, "bill", vendor_id=vendors["Delta Air Lines"],
                           bill_number="DRY-OK", webhooks=False)  # fmt: skip
    unlinked = admin.zoho_create(demo.ZOHO_ORG, "vendor", contact_name="Nobody Linked GmbH",
                                 currency_code="EUR")  # fmt: skip
    waits = admin.zoho_create(demo.ZOHO_ORG, "bill", vendor_id=unlinked["contact_id"],
                              bill_number="DRY-WAIT", webhooks=False)  # fmt: skip
    bad = admin.zoho_create(
        demo.ZOHO_ORG, "bill", vendor_id=vendors["Delta Air Lines"], bill_number="DRY-BAD",
        line_items=[{"account_id": _account(sandbox), "rate": -40.0, "quantity": 1,
                     "description": "credit"}], webhooks=False,
    )  # fmt: skip
    with db.session() as s:
        audit_before = s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    out = tmp_path / "dry.jsonl"
    done = connector(stack["env"], "backfill", str(cid), "--flow", "payables", "--since",
                     today().isoformat(), "--dry-run", "--json-lines", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_number = {item["source_id"]: item for item in lines}
    assert len(lines) == 3 and "Nothing was written or posted" in done.stdout + done.stderr
    good = by_number[f"bill:{ok['bill_id']}"]
    assert good["result"] == "would_post" and good["problems"] == [] and good["ledger"] is None
    assert good["target_payload"]["InvoiceNumber"] == "DRY-OK"
    assert good["target_payload"]["VendorRemitToIdentifier"]["VendorCode"] == "DELTA"
    wait = by_number[f"bill:{waits['bill_id']}"]
    assert wait["result"] == "would_wait" and "Nobody Linked GmbH" in wait["problems"][0]
    invalid = by_number[f"bill:{bad['bill_id']}"]
    assert invalid["result"] == "invalid" and invalid["problems"], invalid
    # Read-only: no records, no cursor, no audit rows.
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(SyncRecord).where(
            SyncRecord.flow == "payables")).scalar_one() == 0  # fmt: skip
        assert s.execute(select(func.count()).select_from(SyncCursor).where(
            SyncCursor.flow.like("bf:%"))).scalar_one() == 0  # fmt: skip
        assert s.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == audit_before
    human = connector(stack["env"], "backfill", str(cid), "--flow", "payables", "--since",
                      today().isoformat(), "--dry-run")  # fmt: skip
    assert "would_post  bill:" in human.stdout and "1 invalid, 1 would_post, 1 would_wait" in (
        human.stdout + human.stderr
    )


def _zoho_vendors(sandbox: Any) -> list[dict[str, Any]]:
    state = sandbox.state  # the sandbox runs in this process
    with state.lock:
        contacts = state.zoho.orgs[demo.ZOHO_ORG].contacts.values()
        return [dict(r.data) for r in contacts if r.data["contact_type"] == "vendor"]


def _account(sandbox: Any, name: str = "Office Supplies") -> str:
    state = sandbox.state
    with state.lock:
        accounts = state.zoho.orgs[demo.ZOHO_ORG].accounts.values()
        return next(str(a["account_id"]) for a in accounts if a["account_name"] == name)


# =========================================================================== kill and restart


class Lines:
    """An OS process whose stderr lines are collected as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)


@pytest.mark.slow
def test_backfill_of_500_bills_survives_sigkill_and_posts_each_once(
    stack: dict[str, Any], admin: Any, tmp_path: Path
) -> None:
    db, cid, env = stack["db"], stack["cid"], stack["env"]
    admin.zoho_limits(per_minute=100000, period=60, reset_windows=True)
    generate_bills(admin, 500)
    since = today().isoformat()
    argv = [sys.executable, "-m", "cli.main", "backfill", str(cid), "--flow", "payables",
            "--since", since, "--page-size", "20"]  # fmt: skip

    # 1. Slowed to 4 calls a second by the shared limiter, killed with SIGKILL half-way.
    first = Lines(argv, {**env, "ZOHO_RATE_LIMIT": "4/1s"})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        cursor = load_cursor(db, cid, "payables", today())
        if cursor.found >= 200:
            break
        assert first.proc.poll() is None, "".join(first.lines)
        time.sleep(0.05)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    first.thread.join(5)
    progress = [line for line in first.lines if "found" in line and "ETA" in line]
    assert len(progress) >= 5, "".join(first.lines)
    assert "/s, ETA" in progress[-1] and "zoho-bound" in progress[-1]
    cursor = load_cursor(db, cid, "payables", today())
    records, documents = payables_records(db, cid)
    assert 200 <= cursor.found < 500 and not cursor.done, cursor
    assert records == documents == cursor.new  # the records and the cursor commit together

    # 2. The same command again: continues, completes, creates nothing twice.
    second = subprocess.run(argv, cwd=ROOT, env={**env, "ZOHO_RATE_LIMIT": "1000/60s"},
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "done: 500 payables document(s)" in second.stderr and "in 2 run(s)" in second.stderr
    assert payables_records(db, cid) == (500, 500)
    third = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0 and "already complete: 500" in third.stderr

    # 3. A real worker posts them all, once each.
    fast = {**env, "ZOHO_RATE_LIMIT": "100000/60s", "CONCUR_RATE_LIMIT": "100000/60s"}
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        worker_argv(concurrency=4),
        cwd=ROOT, env=fast, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            with db.session() as s:
                states = dict(s.execute(
                    select(SyncRecord.state, func.count()).where(SyncRecord.flow == "payables")
                    .group_by(SyncRecord.state)).all())  # fmt: skip
            if states.get("posted") == 500:
                break
            assert time.monotonic() < deadline, (
                f"{states}\n" + (tmp_path / "worker.log").read_text()[-3000:]
            )
            time.sleep(1)
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    duplicates = admin.duplicates()
    assert duplicates["concur"]["payment_requests"] == []
    created = admin.created()["concur"]
    requests_made = created.get("payment_request") or created.get("payment_requests") or []
    assert len(requests_made) == 500
