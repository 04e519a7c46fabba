"""``celery -A tasks dead list|retry|purge`` as subprocesses against PostgreSQL and Redis, with a
real worker carrying out the retry."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector import backoff, ledger
from connector.db import Database, utcnow
from connector.models import AuditEvent, Connection, Step, SyncRecord
from flows import FLOWS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent.parent


def celery(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", "dead", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def dead_record(db: Database) -> int:
    """A record the selftest flow drives to ``dead`` through the real pipeline code."""
    with db.session() as s:
        conn = s.execute(
            select(Connection).where(Connection.name == "dead-cli")
        ).scalar_one_or_none()
        if conn is None:
            conn = Connection(name="dead-cli")
            s.add(conn)
            s.flush()
        rec, _ = ledger.get_or_create(
            s,
            connection_id=conn.id,
            flow="selftest",
            source_system="selftest",
            source_type="probe",
            source_id=uuid.uuid4().hex,
            source_version="1",
            target_system="selftest",
            source_payload={"transient_times": backoff.MAX_TRANSIENT_ATTEMPTS + 5},
        )
        rid = rec.id
    step: Step | None = Step.FETCH
    for _ in range(40):
        assert step is not None
        result = FLOWS.run_step(db, rid, step, owner="test", lease_seconds=60)
        if result.action not in ("next", "retry"):
            break
        step = result.next_step
    assert result.state == "dead"
    return rid


def wait_for(db: Database, rid: int, state: str, timeout: float = 60.0) -> SyncRecord:
    deadline = time.monotonic() + timeout
    while True:
        with db.session() as s:
            rec = s.get(SyncRecord, rid)
        if rec.state == state and rec.lease_owner is None:
            return rec
        if time.monotonic() > deadline:
            raise AssertionError(f"record {rid} stuck in {rec.state}")
        time.sleep(0.1)  # polling the ledger for another process's progress


def test_dead_list_retry_and_purge(
    pg_db: Database, stack_env: dict[str, str], start_worker: Any
) -> None:
    rid = dead_record(pg_db)
    old = dead_record(pg_db)
    with pg_db.session() as s:
        s.get(SyncRecord, old).updated_at = utcnow() - dt.timedelta(days=40)

    out = celery(stack_env, "list")
    assert out.returncode == 0, out.stderr
    assert f"{rid}" in out.stdout and "retries exhausted" in out.stdout
    out = celery(stack_env, "list", "--since", "1d", "--flow", "selftest", "--json")
    assert out.returncode == 0, out.stderr
    assert [r["id"] for r in json.loads(out.stdout)] == [rid]
    assert json.loads(celery(stack_env, "list", "--flow", "payables", "--json").stdout) == []

    # Lift the fault, then retry through the broker and a real worker.
    with pg_db.session() as s:
        rec = s.get(SyncRecord, rid)
        rec.source_payload = {**rec.source_payload, "transient_times": 0}
    worker = start_worker()
    out = celery(stack_env, "retry", str(rid))
    assert out.returncode == 0, out.stderr
    assert "queued" in out.stdout and "restarting at post" in out.stdout
    try:
        rec = wait_for(pg_db, rid, "posted")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{worker.log()[-4000:]}") from None
    assert rec.target_id == f"selftest-{rid}"
    with pg_db.session() as s:
        trail = [
            (a.step, a.outcome, a.message or "")
            for a in s.execute(
                select(AuditEvent).where(AuditEvent.record_id == rid).order_by(AuditEvent.id)
            ).scalars()
        ]
    assert [t[:2] for t in trail].count(("post", "posted")) == 1
    assert any(t[0] == "replay" and "replay requested by celery dead retry" in t[2] for t in trail)

    # A posted record is not dead: retrying it again does nothing.
    out = celery(stack_env, "retry", str(rid))
    assert out.returncode == 1 and "never re-posts" in out.stdout

    out = celery(stack_env, "purge", "--older-than", "30", "--dry-run")
    assert out.returncode == 0 and f"would purge 1 dead record(s): {old}" in out.stdout
    out = celery(stack_env, "purge", "--older-than", "30")
    assert out.returncode == 0 and f"purged 1 dead record(s): {old}" in out.stdout
    with pg_db.session() as s:
        assert s.get(SyncRecord, old) is None
        assert s.execute(select(AuditEvent).where(AuditEvent.step == "purge")).scalar_one()

    out = celery(stack_env, "retry")
    assert out.returncode == 2 and "--all" in out.stderr
