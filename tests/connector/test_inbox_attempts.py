"""Issue #12.3 (nothing fails after storage and loops unseen) and #21.1 (the relay bound).

- An event whose processing always raises is counted per run, ends ``failed`` after
  ``INBOX_MAX_ATTEMPTS`` with the reason in ``note``, is never relayed again, and shows on /ops
  (with a replay button behind the login), in the alert digest and (tests/tasks) in
  ``celery -A tasks dead list``.
- The sweeper relays a ``received`` event after two sweep intervals, not after a record lease:
  the deterministic reproduction of the chaos failure's second half (an event whose message was
  lost sat ``received`` for the whole lease, 300 s by default, longer than the settle window).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from connector import alerts, inbox, intake
from connector.config import Settings
from connector.db import Database
from connector.intake import IntakeResult
from connector.models import Connection, WebhookEvent, WebhookStatus
from flows import FLOWS, IntakeHook
from tests.webhooks.test_ops_page import AUTH, PROD, App, csrf

KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="
T0 = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path), **env}
    )


def _always_raises(_session: Any, _event: Any, _payload: Any) -> IntakeResult:
    raise RuntimeError("handler exploded on purpose")


@pytest.fixture
def poisoned(db: Database) -> Any:
    FLOWS.add_intake("zoho", "explodingtest", IntakeHook(_always_raises))
    with db.session() as s:
        conn = Connection(name="attempts")
        s.add(conn)
        s.flush()
        stored = inbox.store(
            s,
            source="zoho",
            dedupe_key="attempts-1",
            body=b'{"explodingtest": {"explodingtest_id": "1"}}',
            headers={"Content-Type": "application/json"},
            connection_id=conn.id,
            event_type="explodingtest",
        )
    yield stored.event_id
    FLOWS.remove_intake("zoho", "explodingtest")


def _event(db: Database, event_id: int) -> WebhookEvent:
    with db.session() as s:
        event = s.get(WebhookEvent, event_id)
        assert event is not None
        s.expunge(event)
        return event


def _stale(db: Database, settings: Settings) -> list[int]:
    with db.session() as s:
        return [e.id for e in inbox.stale_events(s, older_than=inbox.relay_after(settings))]


def test_always_failing_event_ends_failed_visible_and_no_longer_relayed(
    db: Database, tmp_path: Path, poisoned: int
) -> None:
    settings = _settings(tmp_path, INBOX_MAX_ATTEMPTS="3", CONNECTOR_SWEEP_INTERVAL="10")
    bound = inbox.relay_after(settings)
    assert bound == 20.0  # two sweeps
    now = T0
    with freeze_time(now) as clock:
        for attempt in (1, 2, 3):
            assert FLOWS.process_event(db, poisoned, settings) == []
            event = _event(db, poisoned)
            assert event.attempts == attempt
            assert "RuntimeError: handler exploded on purpose" in (event.note or "")
            if attempt < 3:
                assert event.status == WebhookStatus.RECEIVED.value
                assert _stale(db, settings) == []  # backs off a whole bound after a failure
                clock.tick(dt.timedelta(seconds=bound + 1))
                assert _stale(db, settings) == [poisoned]  # then the sweeper relays it
        assert event.status == WebhookStatus.FAILED.value
        assert event.note.startswith("failed after 3 attempt(s)")
        # Never relayed again, however long it sits; a fourth run (a stray message) is a no-op.
        clock.tick(dt.timedelta(days=3))
        assert _stale(db, settings) == []
        assert FLOWS.process_event(db, poisoned, settings) == []
        assert _event(db, poisoned).attempts == 3

    # The alert digest names it.
    with db.session() as s:
        conditions = alerts.current_conditions(s, waiting_age=dt.timedelta(hours=1))
    [cond] = [c for c in conditions if c.kind == alerts.FAILED_EVENTS]
    assert cond.count == 1 and f"#{poisoned}" in cond.summary and "handler exploded" in cond.summary

    # /ops lists it with the reason; replay is behind the login and the CSRF check.
    ops = App(db, tmp_path, OPS_BASIC_AUTH="admin:s3cret", **PROD)
    queued: list[int] = []
    ops.app.config["OPS_ENQUEUE_EVENT"] = queued.append
    assert ops.client.get("/ops/").status_code == 401
    page = ops.client.get("/ops/", headers=AUTH).get_data(as_text=True)
    assert "Webhook events that failed" in page and f'data-event="{poisoned}"' in page
    assert "handler exploded on purpose" in page
    refused = ops.client.post("/ops/events/replay", data={"event_id": str(poisoned)})
    assert refused.status_code == 401 and queued == []
    bad_csrf = ops.client.post(
        "/ops/events/replay", headers=AUTH, data={"event_id": str(poisoned), "csrf_token": "1.x"}
    )
    assert bad_csrf.status_code == 400 and queued == []
    answer = ops.client.post(
        "/ops/events/replay",
        headers=AUTH,
        data={"event_id": str(poisoned), "csrf_token": csrf(page)},
    )
    assert answer.status_code == 303 and queued == [poisoned]
    event = _event(db, poisoned)
    assert event.status == WebhookStatus.RECEIVED.value and event.attempts == 0
    assert event.note.startswith("replayed by ops:admin")


@pytest.mark.parametrize("error", ["outage", "rate-limited"])
def test_a_database_outage_or_rate_limit_during_intake_is_not_counted(
    db: Database, tmp_path: Path, error: str
) -> None:
    """An unreachable database or an empty rate-limit bucket is not the event's fault:
    re-raised for the broker retry (tasks.base), never counted as an attempt."""
    from sqlalchemy.exc import OperationalError

    from connector.errors import RateLimitedError

    expected: type[Exception] = OperationalError if error == "outage" else RateLimitedError

    def unreachable(_session: Any, _event: Any, _payload: Any) -> IntakeResult:
        if error == "outage":
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("proxy cut"))
        raise RateLimitedError("bucket empty", retry_after=1.0)

    FLOWS.add_intake("zoho", "outagetest", IntakeHook(unreachable))
    try:
        with db.session() as s:
            stored = inbox.store(
                s, source="zoho", dedupe_key="outage-1", body=b"{}", headers={},
                connection_id=None, event_type="outagetest",
            )  # fmt: skip
        with pytest.raises(expected):
            FLOWS.process_event(db, stored.event_id, _settings(tmp_path))
        event = _event(db, stored.event_id)
        assert event.attempts == 0 and event.status == WebhookStatus.RECEIVED.value
    finally:
        FLOWS.remove_intake("zoho", "outagetest")


def test_unrouted_concur_event_is_routed_once_the_company_is_connected(
    db: Database, tmp_path: Path
) -> None:
    seen: list[int | None] = []

    def handler(_session: Any, event: WebhookEvent, _payload: Any) -> IntakeResult:
        seen.append(event.connection_id)
        return IntakeResult([], ignored="test handler")

    FLOWS.add_intake("concur", "routingtest", IntakeHook(handler))
    try:
        body = b'{"id": "r-1", "eventType": "routingtest", "facts": {"companyId": "co-9"}}'
        with db.session() as s:
            stored = inbox.store(
                s, source="concur", dedupe_key="r-1", body=body, headers={},
                connection_id=None, event_type="routingtest",
            )  # fmt: skip
        settings = _settings(tmp_path)
        FLOWS.process_event(db, stored.event_id, settings)
        event = _event(db, stored.event_id)
        assert event.attempts == 1 and "no connection for Concur company co-9" in event.note
        with db.session() as s:
            conn = Connection(name="later", concur_company_id="co-9")
            s.add(conn)
            s.flush()
            cid = conn.id
        FLOWS.process_event(db, stored.event_id, settings)
        assert seen == [cid] and _event(db, stored.event_id).connection_id == cid
    finally:
        FLOWS.remove_intake("concur", "routingtest")


def test_sweeper_relays_a_lost_event_after_two_sweeps_not_a_lease(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#21.1, deterministic: the event was committed and its message lost (a receiver killed
    between commit and enqueue, a broker flushed, a task acked while the database was away).
    With the default settings (lease 300 s, sweep 60 s) the old sweeper relayed it only after
    the lease: still ``received`` 180 s later. Now: after two sweeps, once per bound."""
    from connector import config
    from connector import db as dbmod
    from tasks import maintenance

    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/12")
    monkeypatch.setenv("CONNECTOR_SECRET_KEY", KEY)
    monkeypatch.setenv("CONNECTOR_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("CONNECTOR_PUBLIC_URL", "https://connector.example.com")
    monkeypatch.setattr(config, "_cached", None)
    monkeypatch.setitem(dbmod._databases, db.url, db)
    relayed: list[int] = []
    monkeypatch.setattr(maintenance, "enqueue_event", relayed.append)
    with freeze_time(T0) as clock:
        with db.session() as s:
            event_id = inbox.store(
                s, source="zoho", dedupe_key="lost-1", body=b"{}", headers={},
                connection_id=None, event_type="lostmessage",
            ).event_id  # fmt: skip
        clock.tick(dt.timedelta(seconds=60))
        maintenance.sweep.run()
        assert relayed == []  # a message may still be on its way after one sweep
        clock.tick(dt.timedelta(seconds=61))
        maintenance.sweep.run()
        assert relayed == [event_id], "a lost event must be relayed within two sweeps"
        clock.tick(dt.timedelta(seconds=30))
        maintenance.sweep.run()
        assert relayed == [event_id]  # stamped: not relayed again within the bound
        clock.tick(dt.timedelta(seconds=91))
        maintenance.sweep.run()
        assert relayed == [event_id, event_id]
    monkeypatch.setattr(config, "_cached", None)


def test_intake_reads_form_bodies_and_rows_stored_before_raw_bodies() -> None:
    """The stored raw form body is parsed like the receiver parsed it; a row stored before the
    raw-body change (re-serialized JSON under a form content type) still reads."""
    from urllib.parse import urlencode

    form = WebhookEvent(
        source="zoho",
        body=urlencode([("JSONString", '{"bill": {"bill_id": "1"}}')]),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    legacy = WebhookEvent(
        source="zoho",
        body='{"bill": {"bill_id": "1"}}',
        headers={"content-type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert intake.payload_of(form) == intake.payload_of(legacy) == {"bill": {"bill_id": "1"}}


def test_a_lost_connection_under_another_dbapi_class_is_an_outage_not_an_attempt(
    db: Database, tmp_path: Path
) -> None:
    """psycopg2 can report a socket cut mid-statement as a plain ``DatabaseError``; SQLAlchemy
    then flags ``connection_invalidated``. That is an outage (re-raised), while a genuine
    database refusal of the event's data is an attempt whose note omits the SQL parameters."""
    from sqlalchemy.exc import DatabaseError, DataError

    raised: list[Exception] = [
        DatabaseError("SELECT 1", {}, Exception("SSL SYSCALL error: EOF detected"), connection_invalidated=True),
        DataError("INSERT x VALUES (%(secretish)s)", {"secretish": "payload-value"}, Exception("value too long\nDETAIL")),
    ]  # fmt: skip

    def handler(_session: Any, _event: Any, _payload: Any) -> IntakeResult:
        raise raised.pop(0)

    FLOWS.add_intake("zoho", "dbapitest", IntakeHook(handler))
    try:
        with db.session() as s:
            stored = inbox.store(
                s, source="zoho", dedupe_key="dbapi-1", body=b"{}", headers={},
                connection_id=None, event_type="dbapitest",
            )  # fmt: skip
        with pytest.raises(DatabaseError):
            FLOWS.process_event(db, stored.event_id, _settings(tmp_path))
        assert _event(db, stored.event_id).attempts == 0
        FLOWS.process_event(db, stored.event_id, _settings(tmp_path))
        event = _event(db, stored.event_id)
        assert event.attempts == 1 and "DataError: value too long" in event.note
        assert "payload-value" not in event.note and "INSERT" not in event.note
    finally:
        FLOWS.remove_intake("zoho", "dbapitest")
