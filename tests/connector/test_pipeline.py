"""The generic pipeline driven directly (no broker), through the selftest flow, on both dialects."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from connector import backoff, ledger
from connector.db import utcnow
from connector.models import AuditEvent, Connection, RecordState, Step, SyncRecord
from connector.pipeline import due_for_redrive
from flows import FLOWS

S = RecordState


def new_record(db: Any, connection_id: int, **payload: Any) -> int:
    with db.session() as s:
        rec, _ = ledger.get_or_create(
            s,
            connection_id=connection_id,
            flow="selftest",
            source_system="selftest",
            source_type="probe",
            source_id=uuid.uuid4().hex,
            source_version="1",
            target_system="selftest",
            stable_ref="REF-1",
            source_payload=payload,
        )
        return rec.id


def drive(db: Any, record_id: int, *, max_steps: int = 20) -> list[tuple[str, str | None]]:
    """Run steps in order the way the tasks would, following StepResult; returns the actions."""
    step: Step | None = Step.FETCH
    actions = []
    for _ in range(max_steps):
        assert step is not None
        result = FLOWS.run_step(db, record_id, step, owner="test-owner", lease_seconds=60)
        actions.append((result.action, result.state))
        if result.action == "next" or result.action == "retry":
            step = result.next_step
        else:
            break
    return actions


def record(db: Any, record_id: int) -> SyncRecord:
    with db.session() as s:
        return s.get(SyncRecord, record_id)


def test_happy_path_posts_and_audits_every_step(db: Any, connection_id: int) -> None:
    rid = new_record(db, connection_id, echo="hi")
    actions = drive(db, rid)
    assert actions[-1] == ("done", "posted")
    rec = record(db, rid)
    assert rec.state == S.POSTED and rec.target_id == f"selftest-{rid}"
    assert rec.mapped_payload == {"reference": "REF-1", "echo": "hi"}
    with db.session() as s:
        steps = [
            (a.step, a.outcome)
            for a in s.execute(
                select(AuditEvent).where(AuditEvent.record_id == rid).order_by(AuditEvent.id)
            ).scalars()
        ]
    assert steps == [
        ("receive", "created"),
        ("fetch", "ok"),
        ("map", "ok"),
        ("validate", "ok"),
        ("post", "posting"),
        ("post", "posted"),
        ("audit", "completed"),
    ]


def test_missing_dependency_waits_with_reason_and_backoff(db: Any, connection_id: int) -> None:
    rid = new_record(db, connection_id, park_times=1, needs="vendor Acme")
    before = utcnow()
    actions = drive(db, rid)
    assert actions[-1] == ("done", "waiting")
    rec = record(db, rid)
    assert rec.state == S.WAITING and rec.step == Step.VALIDATE
    assert "vendor Acme" in rec.last_error_message
    wait = (rec.next_attempt_at - before).total_seconds()
    assert backoff.WAITING.base - 1 <= wait <= backoff.WAITING.base + 5
    # The sweeper resumes it once the back-off has elapsed, and it then posts.
    with db.session() as s:
        s.get(SyncRecord, rid).next_attempt_at = utcnow() - dt.timedelta(seconds=1)
    assert due_for_redrive(db, stale_after=300) == [(rid, Step.VALIDATE)]
    result = FLOWS.run_step(db, rid, Step.VALIDATE, owner="w", lease_seconds=60)
    assert result.action == "next"
    assert FLOWS.run_step(db, rid, Step.POST, owner="w", lease_seconds=60).state == "posted"


def test_transient_failure_retries_with_countdown_then_searches_before_reposting(
    db: Any, connection_id: int
) -> None:
    rid = new_record(db, connection_id, transient_times=1, landed=True)
    actions = drive(db, rid)
    assert ("retry", "posting") in actions
    rec = record(db, rid)
    assert rec.state == S.POSTED and rec.post_attempts == 2
    with db.session() as s:
        outcomes = [
            a.outcome
            for a in s.execute(select(AuditEvent).where(AuditEvent.record_id == rid)).scalars()
        ]
    # The retry found the object the first (ambiguous) POST created, and adopted it.
    assert "adopted" in outcomes and "posted" not in outcomes


def test_retries_exhausted_goes_dead(db: Any, connection_id: int) -> None:
    rid = new_record(db, connection_id, transient_times=backoff.MAX_TRANSIENT_ATTEMPTS + 5)
    actions = drive(db, rid, max_steps=40)
    assert actions[-1] == ("done", "dead")
    assert "retries exhausted" in record(db, rid).last_error_message


def test_definitive_rejection_fails_with_vendor_message(db: Any, connection_id: int) -> None:
    rid = new_record(db, connection_id, fatal=True)
    assert drive(db, rid)[-1] == ("done", "failed")
    rec = record(db, rid)
    assert rec.last_error_code == "SELFTEST" and "rejected" in rec.last_error_message


def test_dead_credential_parks_record_and_flags_connection(db: Any, connection_id: int) -> None:
    rid = new_record(db, connection_id, reauth=True)
    assert drive(db, rid)[-1] == ("done", "needs_reauth")
    with db.session() as s:
        assert s.get(Connection, connection_id).status == "needs_reauth"


def test_duplicate_message_for_a_step_does_nothing(db: Any, connection_id: int) -> None:
    rid = new_record(db, connection_id)
    assert FLOWS.run_step(db, rid, Step.FETCH, owner="a", lease_seconds=60).action == "next"
    assert FLOWS.run_step(db, rid, Step.FETCH, owner="b", lease_seconds=60).action == "skip"


class _PacedFlow:
    """The selftest flow, except that our own limiter refuses its fetch ``denials`` times."""

    name = "paced-test"

    def __init__(self, denials: int) -> None:
        from flows.selftest import SelfTestFlow

        self.inner = SelfTestFlow()
        self.denials = denials

    def queue_for(self, step: str) -> str:
        return "default"

    def fetch(self, ctx: Any, rec: SyncRecord) -> dict[str, Any]:
        from connector.errors import RateLimitedError

        if self.denials > 0:
            self.denials -= 1
            raise RateLimitedError("zoho rate limit reached", retry_after=0.5, local=True)
        return self.inner.fetch(ctx, rec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_waiting_for_our_own_rate_limit_does_not_use_up_attempts(
    db: Any, connection_id: int
) -> None:
    """A long backlog paced by the shared limiter is retried many times before its turn comes;
    those refusals are not failures, so the record must not go dead (B1's 600-bill backlog)."""
    import flows

    flows.FLOWS.add(flows.Flow(_PacedFlow(denials=backoff.MAX_TRANSIENT_ATTEMPTS + 5)))
    with db.session() as s:
        rec, _ = ledger.get_or_create(
            s,
            connection_id=connection_id,
            flow="paced-test",
            source_system="selftest",
            source_type="probe",
            source_id=uuid.uuid4().hex,
            source_version="1",
            target_system="selftest",
            stable_ref="REF-P",
            source_payload={},
        )
        rid = rec.id
    actions = drive(db, rid, max_steps=40)
    assert actions.count(("retry", "received")) == backoff.MAX_TRANSIENT_ATTEMPTS + 5
    assert actions[-1] == ("done", "posted")
    with db.session() as s:
        retries = (
            s.execute(
                select(AuditEvent).where(AuditEvent.record_id == rid, AuditEvent.outcome == "retry")
            )
            .scalars()
            .all()
        )
    assert [r.details["attempt"] for r in retries] == [1] * len(retries)
