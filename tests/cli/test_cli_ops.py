"""``connector replay`` and ``connector records`` as a user runs them (real subprocesses), on the
embedded default: SQLite ledger and the SQLite-backed broker, no servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector import backoff, ledger
from connector.db import Database
from connector.migrate import upgrade
from connector.models import AuditEvent, Connection, Step, SyncRecord
from flows import FLOWS

ROOT = Path(__file__).resolve().parents[2]


def connector(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONNECTOR_", "DATABASE_", "REDIS_"))
    }
    # The installed console script, as an operator runs it.
    return subprocess.run(
        [str(Path(sys.executable).parent / "connector"), *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def ledger_db(settings_env: dict[str, str]) -> Any:
    url = f"sqlite:///{Path(settings_env['CONNECTOR_VAR_DIR']).resolve() / 'connector.sqlite'}"
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()


def make(db: Database, **payload: Any) -> int:
    with db.session() as s:
        conn = s.execute(select(Connection).where(Connection.name == "acme")).scalar_one_or_none()
        if conn is None:
            conn = Connection(name="acme")
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
            source_ref=f"BL-{uuid.uuid4().hex[:4]}",
            source_payload=payload,
        )
        rid = rec.id
    step: Step | None = Step.FETCH
    for _ in range(40):
        assert step is not None
        result = FLOWS.run_step(db, rid, step, owner="w", lease_seconds=60)
        if result.action not in ("next", "retry"):
            break
        step = result.next_step
    return rid


def test_records_list_and_show(ledger_db: Database, settings_env: dict[str, str]) -> None:
    dead = make(ledger_db, transient_times=backoff.MAX_TRANSIENT_ATTEMPTS + 5)
    posted = make(ledger_db, echo="hello")

    out = connector("records", "list", "--state", "dead", "--json", env=settings_env)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["id"] for r in rows] == [dead] and rows[0]["connection"] == "acme"

    out = connector("records", "list", "--connection", "acme", env=settings_env)
    assert out.returncode == 0 and f"{dead}" in out.stdout and "posted" in out.stdout

    out = connector("records", "show", str(dead), env=settings_env)
    assert out.returncode == 0, out.stderr
    assert "retries exhausted" in out.stdout and "fix " in out.stdout
    assert "audit trail:" in out.stdout and "source payload:" in out.stdout

    out = connector("records", "show", str(posted), "--json", env=settings_env)
    info = json.loads(out.stdout)
    assert info["target_id"] == f"selftest-{posted}" and info["mapped_payload"]["echo"] == "hello"

    out = connector("records", "show", "99999", env=settings_env)
    assert out.returncode == 1 and "no record 99999" in out.stderr and "Traceback" not in out.stderr


def test_replay_resumes_at_the_failed_step_and_never_reposts(
    ledger_db: Database, settings_env: dict[str, str]
) -> None:
    dead = make(ledger_db, transient_times=backoff.MAX_TRANSIENT_ATTEMPTS + 5)
    failed = make(ledger_db, fatal=True)
    posted = make(ledger_db)

    out = connector("replay", str(dead), str(posted), env=settings_env)
    assert out.returncode == 0, out.stderr
    assert f"{dead}  queued" in out.stdout and "restarting at post" in out.stdout
    assert "never re-posts" in out.stdout
    with ledger_db.session() as s:
        rec = s.get(SyncRecord, dead)
        assert rec.state == "validated" and rec.step == "post" and rec.attempts == 0
        trail = [
            a.message or ""
            for a in s.execute(select(AuditEvent).where(AuditEvent.record_id == dead)).scalars()
        ]
        assert any(m.startswith("replay requested by cli:") for m in trail)
        assert s.get(SyncRecord, posted).state == "posted"

    out = connector("replay", "--state", "failed", "--flow", "selftest", "--json", env=settings_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"] == {"queued": 1}
    with ledger_db.session() as s:
        assert s.get(SyncRecord, failed).state == "validated"

    out = connector("replay", str(posted), "--verify", env=settings_env)
    assert out.returncode == 0 and "missing" in out.stdout and "not re-posted" in out.stdout

    out = connector("replay", "--state", "posted", env=settings_env)
    assert out.returncode == 2 and "--verify" in out.stderr
    out = connector("replay", env=settings_env)
    assert out.returncode == 2
    out = connector("replay", "--state", "dead", "--connection", "nope", env=settings_env)
    assert out.returncode == 1 and "no connection 'nope'" in out.stderr
