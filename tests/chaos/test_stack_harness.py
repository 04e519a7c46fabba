"""The chaos harness itself: a cut proxy looks like a database outage, a restarted private Redis
loses its queues, and the pipeline recovers from both through the ledger and the sweeper."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from bench.stack import running_stack, wait_until
from connector import ledger
from connector.db import Database
from connector.models import Connection, SyncRecord

pytestmark = pytest.mark.slow


def test_proxy_cut_is_a_database_outage_and_restore_ends_it(pg_server_url: str) -> None:
    with running_stack("proxy") as stack:
        assert stack.db_proxy is not None
        engine = sa.create_engine(
            stack.database_url, pool_pre_ping=True, connect_args={"connect_timeout": 2}
        )
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        stack.db_proxy.cut()
        with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        stack.db_proxy.restore()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        engine.dispose()


def test_pipeline_survives_a_redis_restart_and_a_killed_worker(
    pg_server_url: str, redis_url: str
) -> None:
    with running_stack("redis", CONNECTOR_SWEEP_INTERVAL="1", CONNECTOR_LEASE_SECONDS="3") as stack:
        db = Database(stack.database_url)
        worker = stack.start_worker()
        stack.start_beat()
        with db.session() as s:
            conn = Connection(name="chaos")
            s.add(conn)
            s.flush()
            ids = []
            for _ in range(20):
                rec, _ = ledger.get_or_create(
                    s,
                    connection_id=conn.id,
                    flow="selftest",
                    source_system="selftest",
                    source_type="probe",
                    source_id=uuid.uuid4().hex,
                    source_version="1",
                    target_system="selftest",
                )
                ids.append(rec.id)
        # Nothing was enqueued: the sweeper finds them (stale after the lease), then Redis dies.
        assert stack.redis is not None
        stack.redis.restart()
        worker.kill()
        stack.start_worker("worker2")

        def all_posted() -> bool:
            with db.session() as s:
                states = (
                    s.execute(sa.select(SyncRecord.state).where(SyncRecord.id.in_(ids)))
                    .scalars()
                    .all()
                )
            return all(state == "posted" for state in states)

        try:
            wait_until(all_posted, timeout=90, what="every record posted")
        except TimeoutError:
            raise AssertionError(stack.logs()) from None
        db.dispose()
