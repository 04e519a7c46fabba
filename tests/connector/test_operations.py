"""Operator services (connector/operations*.py) on both dialects, driven through the real pipeline."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from connector import backoff, ledger, operations
from connector.db import utcnow
from connector.models import AuditEvent, Connection, RecordState, Step, SyncRecord
from connector.operations import problems as operations_problems
from connector.operations import records as operations_records
from connector.operations import replay as operations_replay
from flows import FLOWS

S = RecordState


def new_record(db: Any, connection_id: int, flow: str = "selftest", **payload: Any) -> int:
    with db.session() as s:
        rec, _ = ledger.get_or_create(
            s,
            connection_id=connection_id,
            flow=flow,
            source_system="selftest",
            source_type="probe",
            source_id=uuid.uuid4().hex,
            source_version="1",
            target_system="selftest",
            stable_ref=f"REF-{uuid.uuid4().hex[:6]}",
            source_payload=payload,
        )
        return rec.id


def drive(db: Any, record_id: int, step: Step = Step.FETCH, max_steps: int = 40) -> str | None:
    """Run steps the way the tasks would until the record stops; returns its final state."""
    state = None
    current: Step | None = step
    for _ in range(max_steps):
        assert current is not None
        result = FLOWS.run_step(db, record_id, current, owner="w", lease_seconds=60)
        state = result.state
        if result.action in ("next", "retry"):
            current = result.next_step
        else:
            break
    return state


def dead_record(db: Any, connection_id: int, **payload: Any) -> int:
    rid = new_record(
        db, connection_id, transient_times=backoff.MAX_TRANSIENT_ATTEMPTS + 5, **payload
    )
    assert drive(db, rid) == "dead"
    return rid


def get(db: Any, rid: int) -> SyncRecord:
    with db.session() as s:
        return s.get(SyncRecord, rid)


def outcomes(db: Any, rid: int) -> list[tuple[str, str]]:
    with db.session() as s:
        return [
            (a.step, a.outcome)
            for a in s.execute(
                select(AuditEvent).where(AuditEvent.record_id == rid).order_by(AuditEvent.id)
            ).scalars()
        ]


def set_payload(db: Any, rid: int, **changes: Any) -> None:
    with db.session() as s:
        rec = s.get(SyncRecord, rid)
        rec.source_payload = {**(rec.source_payload or {}), **changes}


# --------------------------------------------------------------------------- replay


def test_replay_restarts_a_dead_record_at_its_failed_step_and_posts_once(
    db: Any, connection_id: int
) -> None:
    rid = dead_record(db, connection_id)
    queued: list[tuple[int, str]] = []
    report = operations_replay.replay(
        db, [rid], requested_by="cli:alice", enqueue=lambda r, s: queued.append((r, s))
    )
    assert [o.action for o in report.outcomes] == ["queued"]
    assert queued == [(rid, "post")]
    rec = get(db, rid)
    assert rec.state == S.VALIDATED and rec.step == Step.POST
    assert rec.attempts == 0 and rec.last_error_code is None
    with db.session() as s:
        messages = [
            a.message
            for a in s.execute(select(AuditEvent).where(AuditEvent.record_id == rid)).scalars()
        ]
    assert any("replay requested by cli:alice" in (m or "") for m in messages)

    # The fault is lifted; the post step (as the worker would run it) now succeeds, once.
    set_payload(db, rid, transient_times=0)
    assert drive(db, rid, Step.POST) == "posted"
    rec = get(db, rid)
    assert rec.target_id == f"selftest-{rid}"
    assert outcomes(db, rid).count(("post", "posted")) == 1
    assert ("replay", "requested") in outcomes(db, rid)


def test_replay_never_reposts_and_verify_asks_the_target(db: Any, connection_id: int) -> None:
    rid = new_record(db, connection_id)
    assert drive(db, rid) == "posted"
    calls: list[Any] = []
    report = operations_replay.replay(
        db, [rid], requested_by="t", enqueue=lambda *a: calls.append(a)
    )
    assert report.outcomes[0].action == "skipped" and "never re-posts" in report.outcomes[0].detail

    report = operations_replay.replay(
        db,
        [rid],
        requested_by="t",
        enqueue=lambda *a: calls.append(a),
        verify=True,
        registry=FLOWS,
    )
    assert report.outcomes[0].action == "missing"  # the selftest target only "has" landed ones
    set_payload(db, rid, landed=True)
    report = operations_replay.replay(
        db,
        [rid],
        requested_by="t",
        enqueue=lambda *a: calls.append(a),
        verify=True,
        registry=FLOWS,
    )
    assert report.outcomes[0].action == "found"
    assert calls == []
    rec = get(db, rid)
    assert rec.state == S.POSTED and rec.post_attempts == 1
    assert [o for o in outcomes(db, rid) if o[0] == "verify"] == [
        ("verify", "missing"),
        ("verify", "found"),
    ]


def test_replay_by_state_filter_and_skips(db: Any, connection_id: int) -> None:
    failed = new_record(db, connection_id, fatal=True)
    assert drive(db, failed) == "failed"
    waiting = new_record(db, connection_id, park_times=5)
    assert drive(db, waiting) == "waiting"
    active = new_record(db, connection_id)  # received, never run
    queued: list[tuple[int, str]] = []

    report = operations_replay.replay(
        db,
        state="failed",
        connection=connection_id,
        flow="selftest",
        requested_by="t",
        enqueue=lambda r, s: queued.append((r, s)),
    )
    assert queued == [(failed, "post")]
    assert report.queued == [failed]

    queued.clear()
    report = operations_replay.replay(
        db, [waiting, active, 999999], requested_by="t", enqueue=lambda r, s: queued.append((r, s))
    )
    by_id = {o.record_id: o for o in report.outcomes}
    assert by_id[waiting].action == "queued" and queued == [(waiting, "validate")]
    assert by_id[active].action == "skipped" and "in progress" in by_id[active].detail
    assert by_id[999999].action == "skipped"

    with pytest.raises(operations.OperationError):
        operations_replay.replay(
            db, state="dead", connection="nope", requested_by="t", enqueue=print
        )


def test_replay_waits_for_reauthorization(db: Any, connection_id: int) -> None:
    rid = new_record(db, connection_id, reauth=True)
    assert drive(db, rid) == "needs_reauth"
    report = operations_replay.replay(db, [rid], requested_by="t", enqueue=lambda *a: None)
    assert (
        report.outcomes[0].action == "skipped" and "re-authorization" in report.outcomes[0].detail
    )
    with db.session() as s:
        s.get(Connection, connection_id).status = "active"
    report = operations_replay.replay(db, [rid], requested_by="t", enqueue=lambda *a: None)
    assert report.outcomes[0].action == "queued"


def test_broker_down_leaves_the_record_for_the_sweeper(db: Any, connection_id: int) -> None:
    rid = dead_record(db, connection_id)

    def down(record_id: int, step: str) -> None:
        raise ConnectionError("broker unreachable")

    report = operations_replay.replay(db, [rid], requested_by="t", enqueue=down)
    assert "sweeper" in report.outcomes[0].detail
    assert get(db, rid).state == S.VALIDATED  # active, no lease: the sweeper re-drives it


# --------------------------------------------------------------------------- purge


def test_purge_deletes_only_old_dead_records_and_keeps_a_summary(
    db: Any, connection_id: int
) -> None:
    old_dead = dead_record(db, connection_id)
    new_dead = dead_record(db, connection_id)
    old_posted = new_record(db, connection_id)
    assert drive(db, old_posted) == "posted"
    with db.session() as s:
        for rid in (old_dead, old_posted):
            s.get(SyncRecord, rid).updated_at = utcnow() - dt.timedelta(days=40)

    assert operations_replay.purge_dead(db, older_than=dt.timedelta(days=30), dry_run=True) == [
        old_dead
    ]
    assert get(db, old_dead) is not None
    assert operations_replay.purge_dead(db, older_than=dt.timedelta(days=30)) == [old_dead]
    assert get(db, old_dead) is None
    assert get(db, new_dead) is not None and get(db, old_posted) is not None
    with db.session() as s:
        assert not s.execute(select(AuditEvent).where(AuditEvent.record_id == old_dead)).first()
        summary = s.execute(select(AuditEvent).where(AuditEvent.step == "purge")).scalar_one()
    assert summary.connection_id == connection_id and summary.record_id is None
    assert summary.details["record_id"] == old_dead
    assert "retries exhausted" in summary.message


# --------------------------------------------------------------------------- list / show / groups


def test_list_and_show(db: Any, connection_id: int) -> None:
    rid = dead_record(db, connection_id)
    posted = new_record(db, connection_id, echo="hi")
    drive(db, posted)
    with db.session() as s:
        name = s.get(Connection, connection_id).name
    rows = operations_records.list_records(db, connection=name, state="dead")
    assert [r["id"] for r in rows] == [rid]
    assert rows[0]["connection"] == name and rows[0]["step"] == "post"
    assert {r["id"] for r in operations_records.list_records(db, flow="selftest")} == {rid, posted}
    assert operations_records.list_records(db, flow="payables") == []

    info = operations_records.show_record(db, posted)
    assert info["state"] == "posted" and info["target_id"] == f"selftest-{posted}"
    assert info["mapped_payload"]["echo"] == "hi" and info["source_payload"]["fetched"] is True
    assert [a["outcome"] for a in info["audit"]][-1] == "completed"
    assert info["hint"] is None and info["replayable"] is False

    info = operations_records.show_record(db, rid)
    assert info["error_class"] == "RetryableError" and "replay" in info["hint"].lower()
    with pytest.raises(operations.OperationError):
        operations_records.show_record(db, 123456789)


def test_problem_groups_group_alike_errors_with_a_hint(db: Any, connection_id: int) -> None:
    ids = []
    for vendor in ("Acme", "Globex", "Initech"):
        rid = new_record(db, connection_id)
        with db.session() as s:
            rec = s.get(SyncRecord, rid)
            ledger.park(
                s,
                rec,
                owner=None,
                reason=f"vendor '{vendor}' (contact 46000000{len(vendor)}) is not linked to Concur",
                next_attempt_at=utcnow() + dt.timedelta(hours=1),
                code="vendor",
                error_class="ParkError",
            )
        ids.append(rid)
    dead = dead_record(db, connection_id)
    groups = operations_problems.problem_groups(db)
    vendor_group = next(g for g in groups if g.code == "vendor")
    assert vendor_group.count == 3 and sorted(vendor_group.record_ids) == sorted(ids)
    assert vendor_group.message == "vendor '…' (contact N) is not linked to Concur"
    assert "sync vendors or link it" in vendor_group.hint.lower()
    dead_group = next(g for g in groups if g.state == "dead")
    assert dead_group.record_ids == [dead] and dead_group.error_class == "RetryableError"

    queued: list[tuple[int, str]] = []
    report = operations_problems.replay_group(
        db, vendor_group.key, requested_by="ops:t", enqueue=lambda r, s: queued.append((r, s))
    )
    assert sorted(report.queued) == sorted(ids) and {s for _, s in queued} == {"fetch"}
    with pytest.raises(operations.OperationError):
        operations_problems.replay_group(db, vendor_group.key, requested_by="t", enqueue=print)


def test_hints_for_common_causes() -> None:
    assert "connector connect" in operations_problems.fix_hint("needs_reauth", None)
    assert "rules file" in operations_problems.fix_hint("waiting", "account")
    assert "rules file" in operations_problems.fix_hint("failed", "4001", "InvalidRequestError")
    assert "scope" in operations_problems.fix_hint("failed", "403", "PermissionDeniedError")
    assert operations_problems.fix_hint("dead", "weird")


def test_normalize_message_and_since() -> None:
    assert operations_problems.normalize_message('bill "BL-0042" 12.50 EUR, id 4600000123') == (
        'bill "…" N EUR, id N'
    )
    assert operations_problems.normalize_message(None) == ""
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
    assert operations.parse_since("2h", now=now) == now - dt.timedelta(hours=2)
    assert operations.parse_since("2026-11-01", now=now) == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with pytest.raises(operations.OperationError):
        operations.parse_since("yesterday")


def test_waiting_too_long(db: Any, connection_id: int) -> None:
    old = new_record(db, connection_id, park_times=9)
    fresh = new_record(db, connection_id, park_times=9)
    drive(db, old)
    drive(db, fresh)
    with db.session() as s:
        s.get(SyncRecord, old).waiting_since = utcnow() - dt.timedelta(hours=2)
        stuck = operations_problems.waiting_too_long(s, older_than=dt.timedelta(hours=1))
    assert [r.id for r in stuck[(connection_id, "selftest")]] == [old]


def test_target_links() -> None:
    conn = Connection(name="c", zoho_organization_id="10234695")
    rec = SyncRecord(target_system="zoho", target_id="777", flow="expenses")
    assert (
        operations_records.target_url(rec, conn, sandbox_url="http://127.0.0.1:8090")
        == "http://127.0.0.1:8090/?org=10234695"
    )
    assert (
        operations_records.target_url(rec, conn, api_base="https://www.zohoapis.eu")
        == "https://books.zoho.eu/app/10234695#/journals/777"
    )
    assert (
        operations_records.target_url(SyncRecord(target_system="selftest", target_id="x"), conn)
        is None
    )
