"""Issue #21.1: the path from a stored event to its intake task survives a database or broker
outage at any point, with real processes: a real Celery worker (with its embedded beat, so the
real sweeper runs), a private ``redis-server`` that the test kills (no persistence: what it held
is lost) and a TCP proxy in front of PostgreSQL that the test cuts (``bench/stack.py``).

Points of the path, each cut separately for PostgreSQL and for Redis:

- ``after_commit``: the event is committed, then the enqueue (Redis) fails or the database
  goes away before the task runs;
- ``before_start``: the message is in the broker, no worker has taken it yet;
- ``during``: the intake task is running (its transaction open) when the cut happens.

Each ends with the event processed exactly once (status ``ignored``/the gated note, no failure
counted) within a deadline derived from the configured intervals.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery

from bench.stack import PrivateRedis, TcpProxy, wait_until
from connector import inbox
from connector.db import Database
from connector.models import WebhookEvent, WebhookStatus
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.slow

SWEEP = 1  # CONNECTOR_SWEEP_INTERVAL in the worker; the relay bound is then 5 s (its minimum)
#: Generous bound for a loaded 2-core machine: relay bound + broker retry back-off + start-up.
SETTLE = 90.0


@pytest.fixture
def outage(pg_url: str, stack_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    url = sa.engine.make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    redis = PrivateRedis().start()
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {
        **stack_env,
        "DATABASE_URL": proxied,
        "REDIS_URL": redis.url,
        "CONNECTOR_SWEEP_INTERVAL": str(SWEEP),
        "CONNECTOR_LEASE_SECONDS": "8",
        "INBOX_TEST_GATE_DIR": str(gate),
    }
    db = Database(proxied)
    producer = Celery(broker=redis.url)
    producer.conf.broker_connection_retry = False
    producer.conf.broker_connection_max_retries = 0
    state: dict[str, Any] = {"workers": []}

    def start_worker() -> WorkerProcess:
        worker = WorkerProcess(
            env, "default,maintenance", 2, ["-B", "-s", str(tmp_path / "beat-schedule")]
        )
        worker.argv[worker.argv.index("tasks")] = "tests.tasks.inbox_worker"
        state["workers"].append(worker.start())
        return worker

    def store(kind: str) -> int:
        with db.session() as s:
            return inbox.store(
                s, source="zoho", dedupe_key=f"outage:{kind}:{time.monotonic_ns()}",
                body=b"{}", headers={}, connection_id=None, event_type=kind,
            ).event_id  # fmt: skip

    def enqueue(event_id: int) -> None:
        # The receivers' enqueue_event, sent from this process to the private broker.
        producer.send_task(
            "intake.process", args=[event_id], task_id=f"event:{event_id}", queue="default"
        )

    def event(event_id: int) -> WebhookEvent:
        direct = Database(pg_url)
        try:
            with direct.session() as s:
                row = s.get(WebhookEvent, event_id)
                assert row is not None
                s.expunge(row)
                return row
        finally:
            direct.dispose()

    def settled(event_id: int) -> WebhookEvent:
        wait_until(
            lambda: event(event_id).status != WebhookStatus.RECEIVED.value,
            timeout=SETTLE,
            interval=0.2,
            what=f"event {event_id} processed",
        )
        return event(event_id)

    def started() -> bool:
        return any(p.name.startswith("started-") for p in gate.iterdir())

    ns = type("Outage", (), {})()
    ns.proxy, ns.redis, ns.gate, ns.db = proxy, redis, gate, db
    ns.start_worker, ns.store, ns.enqueue, ns.event, ns.settled = (
        start_worker, store, enqueue, event, settled,
    )  # fmt: skip
    ns.started = started
    yield ns
    (gate / "release").touch()
    for worker in state["workers"]:
        worker.stop()
    proxy.restore()
    db.dispose()
    proxy.close()
    redis.close()


def _assert_processed_once(ev: WebhookEvent, note: str) -> None:
    assert ev.status == WebhookStatus.IGNORED.value, (ev.status, ev.note)
    assert note in (ev.note or "") and ev.attempts == 0, ev.note


# ------------------------------------------------------------------------------ Redis


def test_redis_down_after_commit_before_enqueue(outage: Any) -> None:
    """The receiver committed, then the enqueue failed (it answered 503): the sweeper relays."""
    outage.start_worker()
    outage.redis.stop()
    event_id = outage.store("quicktest")
    with pytest.raises(Exception):  # noqa: B017 - kombu's/redis's connection error, either
        outage.enqueue(event_id)
    outage.redis.start()
    _assert_processed_once(outage.settled(event_id), "no flow handles")


def test_redis_lost_between_enqueue_and_task_start(outage: Any) -> None:
    event_id = outage.store("quicktest")
    outage.enqueue(event_id)
    outage.redis.stop()  # the queued message is gone with it (no persistence)
    outage.redis.start()
    outage.start_worker()
    _assert_processed_once(outage.settled(event_id), "no flow handles")


def test_redis_lost_during_the_intake_task(outage: Any) -> None:
    outage.start_worker()
    event_id = outage.store("gatedtest")
    outage.enqueue(event_id)
    wait_until(outage.started, timeout=60, what="intake task started")
    outage.redis.stop()  # the unacknowledged message is lost; the ack will fail
    outage.redis.start()
    (outage.gate / "release").touch()
    _assert_processed_once(outage.settled(event_id), "gated test event done")


# ------------------------------------------------------------------------------ PostgreSQL


def test_postgres_cut_after_commit_before_the_task_runs(outage: Any) -> None:
    """Committed and enqueued; the database is gone when the task runs: the task retries
    through the broker (never acked as failed, never counted as an attempt)."""
    worker = outage.start_worker()
    event_id = outage.store("quicktest")
    outage.proxy.cut()
    try:
        outage.enqueue(event_id)
        wait_until(
            lambda: "database unavailable" in worker.log(),
            timeout=60,
            what="the intake task meeting the outage",
        )
    finally:
        outage.proxy.restore()
    _assert_processed_once(outage.settled(event_id), "no flow handles")


def test_postgres_cut_between_enqueue_and_task_start(outage: Any) -> None:
    event_id = outage.store("quicktest")
    outage.enqueue(event_id)
    outage.proxy.cut()
    try:
        worker = outage.start_worker()
        wait_until(
            lambda: "database unavailable" in worker.log(),
            timeout=60,
            what="the intake task meeting the outage",
        )
    finally:
        outage.proxy.restore()
    _assert_processed_once(outage.settled(event_id), "no flow handles")


def test_postgres_cut_during_the_intake_task(outage: Any) -> None:
    worker = outage.start_worker()
    event_id = outage.store("gatedtest")
    outage.enqueue(event_id)
    wait_until(outage.started, timeout=60, what="intake task started")
    outage.proxy.cut()  # the task's open transaction loses its connection
    try:
        (outage.gate / "release").touch()  # its commit now fails
        wait_until(
            lambda: "database unavailable" in worker.log(),
            timeout=60,
            what="the intake task meeting the outage",
        )
    finally:
        outage.proxy.restore()
    _assert_processed_once(outage.settled(event_id), "gated test event done")


def test_a_burst_of_events_through_a_postgres_cut_and_a_redis_restart(outage: Any) -> None:
    """The chaos scenario's shape in small: many events in flight when PostgreSQL is cut, then
    the broker restarted (losing what it held): every event ends processed, none counted as a
    failed attempt."""
    worker = outage.start_worker()
    ids = [outage.store("quicktest") for _ in range(60)]
    outage.proxy.cut()
    try:
        for event_id in ids:
            outage.enqueue(event_id)
        wait_until(
            lambda: "database unavailable" in worker.log(),
            timeout=60,
            what="intake tasks meeting the outage",
        )
        outage.redis.stop()  # retries waiting in the broker are lost too
        outage.redis.start()
    finally:
        outage.proxy.restore()
    for event_id in ids:
        _assert_processed_once(outage.settled(event_id), "no flow handles")
