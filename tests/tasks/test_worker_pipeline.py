"""Real Celery workers (OS processes) on Redis and PostgreSQL run the pipeline end to end."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from connector import ledger
from connector.db import Database, utcnow
from connector.models import AuditEvent, Connection, SyncRecord
from tasks.launch import beat_argv

pytestmark = pytest.mark.slow


def wait_for_state(
    db: Database, record_id: int, states: set[str], timeout: float = 60.0
) -> SyncRecord:
    """Poll the ledger until the record reaches one of ``states`` (the worker is another process)."""
    deadline = time.monotonic() + timeout
    while True:
        with db.session() as s:
            rec = s.get(SyncRecord, record_id)
            if rec is not None and rec.state in states and rec.lease_owner is None:
                return rec
        if time.monotonic() > deadline:
            raise AssertionError(f"record {record_id} stuck in {rec.state if rec else None}")
        time.sleep(0.1)


def new_record(db: Database, **payload: Any) -> int:
    with db.session() as s:
        conn = s.execute(
            select(Connection).where(Connection.name == "worker-test")
        ).scalar_one_or_none()
        if conn is None:
            conn = Connection(name="worker-test")
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
            source_payload=payload,
        )
        return rec.id


def enqueue_in(env: dict[str, str], record_id: int, step: str = "fetch") -> None:
    """Enqueue from a fresh process configured like production (the test process is not)."""
    import subprocess
    import sys

    code = f"from tasks.pipeline import enqueue; enqueue({record_id}, {step!r})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_worker_runs_a_record_through_every_step(
    pg_db: Database, stack_env: dict[str, str], start_worker: Any
) -> None:
    start_worker()
    rid = new_record(pg_db, echo="x")
    enqueue_in(stack_env, rid)
    rec = wait_for_state(pg_db, rid, {"posted"})
    assert rec.target_id == f"selftest-{rid}"
    with pg_db.session() as s:
        tasks = {
            a.task_id
            for a in s.execute(select(AuditEvent).where(AuditEvent.record_id == rid)).scalars()
            if a.task_id
        }
    # Deterministic task ids: flow:connection:source_id:version:step
    assert all(t.startswith(f"selftest:{rec.connection_id}:{rec.source_id}:1:") for t in tasks)
    assert wait_for_audit(pg_db, rid, "completed")


def wait_for_audit(db: Database, record_id: int, outcome: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as s:
            if s.execute(
                select(AuditEvent.id).where(
                    AuditEvent.record_id == record_id, AuditEvent.outcome == outcome
                )
            ).first():
                return True
        time.sleep(0.1)
    return False


def test_transient_errors_retry_through_the_broker_and_duplicates_post_once(
    pg_db: Database, stack_env: dict[str, str], start_worker: Any
) -> None:
    worker = start_worker(concurrency=2)
    rid = new_record(pg_db, transient_times=2, landed=False)
    enqueue_in(stack_env, rid)
    enqueue_in(stack_env, rid)  # a duplicate message for the same step
    rec = wait_for_state(pg_db, rid, {"posted"})
    with pg_db.session() as s:
        outcomes = [
            a.outcome
            for a in s.execute(select(AuditEvent).where(AuditEvent.record_id == rid)).scalars()
        ]
    assert outcomes.count("retry") == 2
    assert outcomes.count("posted") == 1
    assert rec.post_attempts == 3
    assert "Retry in" in worker.log()


def test_beat_sweeper_redrives_a_record_whose_message_was_lost(
    pg_db: Database, stack_env: dict[str, str], start_worker: Any
) -> None:
    import subprocess

    env = {**stack_env, "CONNECTOR_SWEEP_INTERVAL": "1"}
    start_worker(env=env, queues="zoho,concur,default,maintenance")
    rid = new_record(pg_db)
    # No enqueue at all (the message was lost), and the record last moved long ago.
    with pg_db.session() as s:
        s.get(SyncRecord, rid).updated_at = utcnow() - dt.timedelta(hours=1)
    beat = subprocess.Popen(
        beat_argv(schedule=env["CONNECTOR_VAR_DIR"] + "/beat-schedule"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        rec = wait_for_state(pg_db, rid, {"posted"}, timeout=90)
    finally:
        beat.terminate()
        beat.wait(20)
    with pg_db.session() as s:
        outcomes = [
            a.outcome
            for a in s.execute(select(AuditEvent).where(AuditEvent.record_id == rid)).scalars()
        ]
    assert "redriven" in outcomes and rec.state == "posted"
