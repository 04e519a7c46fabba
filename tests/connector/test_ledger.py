"""The ledger's guarantees on both dialects: one record per version, one worker per record,
legal moves only, every move audited, the sweeper finds what nobody moves."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from connector import ledger
from connector.db import utcnow
from connector.errors import IllegalTransition, LeaseLost
from connector.models import AuditEvent, RecordState, Step, SyncRecord

S = RecordState


def make(
    session: Any, connection_id: int, source_id: str = "B-1", version: str = "v1"
) -> tuple[SyncRecord, bool]:
    return ledger.get_or_create(
        session,
        connection_id=connection_id,
        flow="payables",
        source_system="zoho",
        source_type="bill",
        source_id=source_id,
        source_version=version,
        target_system="concur",
        source_ref="BILL-001",
        stable_ref="BILL-001",
    )


def audits(db: Any, record_id: int) -> list[AuditEvent]:
    with db.session() as s:
        return list(
            s.execute(
                select(AuditEvent).where(AuditEvent.record_id == record_id).order_by(AuditEvent.id)
            ).scalars()
        )


def test_second_delivery_of_same_version_returns_existing_record(
    db: Any, connection_id: int
) -> None:
    with db.session() as s:
        first, created = make(s, connection_id)
    with db.session() as s:
        second, created_again = make(s, connection_id)
    assert created and not created_again
    assert second.id == first.id
    with db.session() as s:
        _, created_v2 = make(s, connection_id, version="v2")
    assert created_v2, "a new version is a new record"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(SyncRecord)) == 2
    assert [a.outcome for a in audits(db, first.id)] == ["created"]


def test_concurrent_creators_meet_on_one_record(pg_db: Any, request: pytest.FixtureRequest) -> None:
    from connector.models import Connection

    with pg_db.session() as s:
        conn = Connection(name="race", zoho_organization_id="1")
        s.add(conn)
        s.flush()
        cid = conn.id
    barrier = threading.Barrier(8)
    ids: list[int] = []
    created: list[bool] = []

    def worker() -> None:
        barrier.wait()
        with pg_db.session() as s:
            rec, new = make(s, cid, source_id="RACE")
            ids.append(rec.id)
            created.append(new)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert created.count(True) == 1


def test_claim_gives_the_record_to_one_worker_until_the_lease_expires(
    db: Any, connection_id: int
) -> None:
    with db.session() as s:
        rec, _ = make(s, connection_id)
    now = utcnow()
    with db.session() as s:
        assert ledger.claim(s, rec.id, Step.FETCH, "w1", lease_seconds=60, now=now) is not None
    with db.session() as s:
        assert (
            ledger.claim(
                s, rec.id, Step.FETCH, "w2", lease_seconds=60, now=now + dt.timedelta(seconds=30)
            )
            is None
        )
    with db.session() as s:
        taken = ledger.claim(
            s, rec.id, Step.FETCH, "w2", lease_seconds=60, now=now + dt.timedelta(seconds=61)
        )
        assert taken is not None and taken.lease_owner == "w2" and taken.attempts == 2
    # The first worker comes back from a long pause: its write must not land.
    with db.session() as s:
        live = s.get(SyncRecord, rec.id)
        with pytest.raises(LeaseLost):
            ledger.transition(s, live, S.FETCHED, owner="w1", step=Step.MAP)


def test_claim_refuses_a_step_the_record_is_not_at(db: Any, connection_id: int) -> None:
    with db.session() as s:
        rec, _ = make(s, connection_id)
    with db.session() as s:
        assert ledger.claim(s, rec.id, Step.POST, "w1", lease_seconds=60) is None


def test_threads_racing_to_claim_get_one_winner(pg_db: Any) -> None:
    from connector.models import Connection

    with pg_db.session() as s:
        conn = Connection(name="claim-race")
        s.add(conn)
        s.flush()
        rec, _ = make(s, conn.id)
    barrier = threading.Barrier(8)
    winners: list[str] = []

    def worker(name: str) -> None:
        barrier.wait()
        with pg_db.session() as s:
            if ledger.claim(s, rec.id, Step.FETCH, name, lease_seconds=60) is not None:
                winners.append(name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [
        pytest.param(S.RECEIVED, S.POSTED, id="skip-to-posted"),
        pytest.param(S.POSTED, S.RECEIVED, id="posted-is-terminal"),
        pytest.param(S.FETCHED, S.POSTING, id="skip-validate"),
        pytest.param(S.DEAD, S.POSTED, id="dead-cannot-post"),
    ],
)
def test_illegal_transitions_raise(from_state: RecordState, to_state: RecordState) -> None:
    with pytest.raises(IllegalTransition):
        ledger.check_transition(from_state, to_state)


def test_every_transition_is_audited_and_waiting_keeps_its_reason(
    db: Any, connection_id: int
) -> None:
    with db.session() as s:
        rec, _ = make(s, connection_id)
    with db.session() as s:
        live = ledger.claim(s, rec.id, Step.FETCH, "w1", lease_seconds=60)
        ledger.transition(s, live, S.FETCHED, owner="w1", step=Step.MAP)
    later = utcnow() + dt.timedelta(minutes=5)
    with db.session() as s:
        live = ledger.claim(s, rec.id, Step.MAP, "w1", lease_seconds=60)
        ledger.park(
            s,
            live,
            owner="w1",
            reason="vendor 'Acme' is not in Concur yet",
            next_attempt_at=later,
            code="vendor",
        )
    with db.session() as s:
        live = s.get(SyncRecord, rec.id)
        assert live.state == S.WAITING and live.step == Step.MAP
        assert live.last_error_message == "vendor 'Acme' is not in Concur yet"
        assert live.next_attempt_at == later.replace(microsecond=live.next_attempt_at.microsecond)
        assert live.lease_owner is None
        assert ledger.due_waiting(s) == []
        assert [r.id for r in ledger.due_waiting(s, now=later + dt.timedelta(seconds=1))] == [
            rec.id
        ]
        ledger.resume(s, live, reason="back-off elapsed")
        assert live.state == S.FETCHED and live.last_error_message is None
    trail = [(a.from_state, a.to_state) for a in audits(db, rec.id)]
    assert trail == [
        (None, "received"),
        ("received", "fetched"),
        ("fetched", "waiting"),
        ("waiting", "fetched"),
    ]


def test_sweeper_finds_expired_leases_and_lost_messages(db: Any, connection_id: int) -> None:
    with db.session() as s:
        leased, _ = make(s, connection_id, source_id="A")
        lost, _ = make(s, connection_id, source_id="B")
        fresh, _ = make(s, connection_id, source_id="C")
    now = utcnow()
    with db.session() as s:
        ledger.claim(s, leased.id, Step.FETCH, "dead-worker", lease_seconds=30, now=now)
    with db.session() as s:
        assert ledger.expired_leases(s, now=now + dt.timedelta(seconds=10), stale_after=300) == []
        found = ledger.expired_leases(s, now=now + dt.timedelta(seconds=400), stale_after=300)
        assert {r.id for r in found} == {leased.id, lost.id, fresh.id}
        found = ledger.expired_leases(s, now=now + dt.timedelta(seconds=31), stale_after=300)
        assert [r.id for r in found] == [leased.id]
        assert ledger.take_over(s, found[0], now=now + dt.timedelta(seconds=31))
    with db.session() as s:
        assert s.get(SyncRecord, leased.id).lease_owner is None
    assert audits(db, leased.id)[-1].outcome == "redriven"
    assert lost.id != fresh.id


def test_replay_never_reposts_a_posted_record(db: Any, connection_id: int) -> None:
    with db.session() as s:
        rec, _ = make(s, connection_id)
        rec.state, rec.step = S.POSTED.value, Step.AUDIT.value
    with db.session() as s, pytest.raises(IllegalTransition):
        ledger.resume(s, s.get(SyncRecord, rec.id), reason="operator replay")
