"""Alerts: the digest rule (new, grew, reminder, resolved) under frozen time, and the channels
against a real local HTTP receiver and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from connector import alerts, backoff, ledger
from connector.api.redaction import clear_secrets, register_secret
from connector.config import Settings
from connector.db import utcnow
from connector.models import Alert, Connection, Step, SyncRecord
from flows import FLOWS

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def base_settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "CONNECTOR_VAR_DIR": str(tmp_path / "var"),
            "CONNECTOR_SECRET_KEY": "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o=",
            "CONNECTOR_PUBLIC_URL": "https://connector.example.com",
        }
    )


def make_record(db: Any, connection_id: int, **payload: Any) -> int:
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
            source_payload=payload,
        )
        return rec.id


def make_dead(db: Any, connection_id: int) -> int:
    rid = make_record(db, connection_id, transient_times=backoff.MAX_TRANSIENT_ATTEMPTS + 5)
    step: Any = Step.FETCH
    for _ in range(40):
        result = FLOWS.run_step(db, rid, step, owner="w", lease_seconds=60)
        if result.action not in ("next", "retry"):
            break
        step = result.next_step
    assert result.state == "dead"
    return rid


def digest(db: Any, now: dt.datetime, *, remind_hours: int = 24) -> list[alerts.DigestItem]:
    """One digest run as the beat task does it, with delivery assumed to succeed."""
    with db.session() as s:
        items = alerts.compute_digest(
            s,
            waiting_age=dt.timedelta(hours=1),
            remind_after=dt.timedelta(hours=remind_hours),
            now=now,
        )
    with db.session() as s:
        alerts.mark_notified(s, items, now=now)
    return items


def changes(items: list[alerts.DigestItem]) -> list[tuple[str, str, int]]:
    return sorted((i.kind, i.change, i.count) for i in items)


# --------------------------------------------------------------------------- the digest rule


def test_dead_records_notify_when_new_and_when_growing_not_on_repeat(
    db: Any, connection_id: int
) -> None:
    with freeze_time(T0):
        make_dead(db, connection_id)
        assert changes(digest(db, utcnow())) == [("dead", "new", 1)]
    with freeze_time(T0 + dt.timedelta(minutes=5)):
        assert digest(db, utcnow()) == []  # same count: quiet
    with freeze_time(T0 + dt.timedelta(minutes=10)):
        make_dead(db, connection_id)
        make_dead(db, connection_id)
        items = digest(db, utcnow())
        assert changes(items) == [("dead", "grew", 3)]
        assert "(+2)" in items[0].line()
    with freeze_time(T0 + dt.timedelta(hours=23)):
        assert digest(db, utcnow()) == []
    with freeze_time(T0 + dt.timedelta(hours=24, minutes=11)):
        assert changes(digest(db, utcnow())) == [("dead", "reminder", 3)]
    with freeze_time(T0 + dt.timedelta(hours=25)):
        assert digest(db, utcnow()) == []


def test_shrinking_lowers_the_baseline_and_clearing_resolves_once(
    db: Any, connection_id: int
) -> None:
    with freeze_time(T0):
        ids = [make_dead(db, connection_id) for _ in range(3)]
        assert changes(digest(db, utcnow())) == [("dead", "new", 3)]
    with freeze_time(T0 + dt.timedelta(minutes=5)):
        with db.session() as s:  # two of them were replayed and posted
            for rid in ids[:2]:
                s.delete(s.get(SyncRecord, rid))
        assert digest(db, utcnow()) == []
    with freeze_time(T0 + dt.timedelta(minutes=10)):
        make_dead(db, connection_id)  # 2 now, fewer than the 3 notified, but new trouble
        assert changes(digest(db, utcnow())) == [("dead", "grew", 2)]
    with freeze_time(T0 + dt.timedelta(minutes=15)):
        with db.session() as s:
            for rec in s.execute(select(SyncRecord)).scalars():
                s.delete(rec)
        assert changes(digest(db, utcnow())) == [("dead", "resolved", 0)]
    with freeze_time(T0 + dt.timedelta(minutes=20)):
        assert digest(db, utcnow()) == []
        make_dead(db, connection_id)
        assert changes(digest(db, utcnow())) == [("dead", "new", 1)]


def test_needs_reauth_alerts_once_not_per_parked_record(db: Any, connection_id: int) -> None:
    with freeze_time(T0):
        parked = make_record(db, connection_id, reauth=True)
        for step in ("fetch", "map", "validate", "post"):
            FLOWS.run_step(db, parked, Step(step), owner="w", lease_seconds=60)
        items = digest(db, utcnow())
        assert changes(items) == [("needs_reauth", "new", 1)]
        assert "connector connect" in items[0].summary
    with freeze_time(T0 + dt.timedelta(minutes=5)):
        second = make_record(db, connection_id, reauth=True)
        for step in ("fetch", "map", "validate", "post"):
            FLOWS.run_step(db, second, Step(step), owner="w", lease_seconds=60)
        assert digest(db, utcnow()) == []  # more parked records are not news
    with freeze_time(T0 + dt.timedelta(minutes=10)):
        with db.session() as s:
            s.get(Connection, connection_id).status = "active"
        assert changes(digest(db, utcnow())) == [("needs_reauth", "resolved", 0)]


def test_waiting_records_raise_only_past_the_age(db: Any, connection_id: int) -> None:
    with freeze_time(T0):
        rid = make_record(db, connection_id, park_times=50, needs="vendor Acme")
        for step in ("fetch", "map", "validate"):
            FLOWS.run_step(db, rid, Step(step), owner="w", lease_seconds=60)
        with db.session() as s:
            assert s.get(SyncRecord, rid).state == "waiting"
        assert digest(db, utcnow()) == []
    with freeze_time(T0 + dt.timedelta(minutes=61)):
        items = digest(db, utcnow())
        assert changes(items) == [("waiting", "new", 1)]
        assert "waiting longer than 1 h" in items[0].summary


# --------------------------------------------------------------------------- channels


class Receiver:
    """A tiny HTTP server that records what a Slack-style webhook would get."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_gets_one_redacted_digest(
    db: Any, connection_id: int, base_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "zoho-refresh-1000.abcdef0123456789abcdef0123456789"
    register_secret(secret)
    try:
        with db.session() as s:
            conn = s.get(Connection, connection_id)
            conn.status = "needs_reauth"
            conn.status_reason = f"refresh refused for token {secret}"
        make_dead(db, connection_id)
        with Receiver() as hook:
            settings = dataclasses.replace(base_settings, alert_webhook_url=hook.url)
            with caplog.at_level("WARNING", logger="connector.alerts"):
                report = alerts.run(db, settings)
            assert report["delivered"] == {"webhook": "ok"}
            assert len(hook.bodies) == 1
            text = hook.bodies[0]["text"]
            assert "[NEW] dead" in text and "[NEW] needs_reauth" in text
            assert "https://connector.example.com/ops" in text
            assert secret not in text and "[REDACTED]" in text
            assert sum("alert [NEW]" in r.getMessage() for r in caplog.records) == 2
            assert alerts.run(db, settings)["items"] == 0  # nothing new: no second message
            assert len(hook.bodies) == 1
    finally:
        clear_secrets()


def test_failed_delivery_is_retried_next_run(
    db: Any, connection_id: int, base_settings: Settings
) -> None:
    make_dead(db, connection_id)
    with Receiver(status=500) as broken:
        settings = dataclasses.replace(base_settings, alert_webhook_url=broken.url)
        assert alerts.run(db, settings)["delivered"] == {"webhook": "HTTPError"}
    with db.session() as s:
        assert s.execute(select(Alert)).scalar_one().notified_at is None
    with Receiver() as hook:
        settings = dataclasses.replace(base_settings, alert_webhook_url=hook.url)
        assert alerts.run(db, settings)["delivered"] == {"webhook": "ok"}
        assert "[NEW] dead" in hook.bodies[0]["text"]


def test_email_digest_through_a_real_smtp_server(
    db: Any, connection_id: int, base_settings: Settings
) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list[Any] = []

    class Collect(Message):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            received.append(message)

    with socket.socket() as probe:  # a free port (aiosmtpd's ready check cannot use port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = dataclasses.replace(
            base_settings,
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=port,
            alert_smtp_from="connector@example.com",
            alert_smtp_to=("ops@example.com", "finance@example.com"),
            alert_smtp_starttls=False,
        )
        make_dead(db, connection_id)
        assert alerts.run(db, settings)["delivered"] == {"email": "ok"}
        assert len(received) == 1
        msg = received[0]
        assert msg["To"] == "ops@example.com, finance@example.com"
        assert msg["Subject"].startswith("[connector] 1 alert(s): 1 new")
        assert "dead record(s)" in msg.get_payload()

        # STARTTLS required but not offered by the server: delivery fails, nothing marked.
        make_dead(db, connection_id)
        strict = dataclasses.replace(settings, alert_smtp_starttls=True)
        assert alerts.run(db, strict)["delivered"] == {"email": "SMTPNotSupportedError"}
        assert alerts.run(db, settings)["delivered"] == {"email": "ok"}
        assert len(received) == 2
    finally:
        controller.stop()


def test_alert_settings_are_checked(tmp_path: Path) -> None:
    from connector.errors import ConfigurationError

    env = {
        "CONNECTOR_VAR_DIR": str(tmp_path),
        "ALERT_SMTP_HOST": "smtp.example.com",
        "ALERT_WEBHOOK_URL": "hooks.slack.com/x",
        "ALERT_SMTP_STARTTLS": "maybe",
        "ALERT_INTERVAL": "0",
    }
    with pytest.raises(ConfigurationError) as err:
        Settings.from_env(env)
    text = str(err.value)
    for name in ("ALERT_SMTP_FROM", "ALERT_WEBHOOK_URL", "ALERT_SMTP_STARTTLS", "ALERT_INTERVAL"):
        assert name in text
    ok = Settings.from_env(
        {
            "CONNECTOR_VAR_DIR": str(tmp_path),
            "ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/secret",
            "ALERT_WAITING_AGE": "7200",
        }
    )
    assert ok.alert_waiting_age == 7200 and ok.alert_interval == 300
    assert ok.safe_summary()["alert_webhook_url"] == "<set>"
