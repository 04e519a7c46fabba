"""The per-connection lock: one vendor pass per connection at a time.

PostgreSQL: ``pg_try_advisory_lock`` held by a dedicated connection, so the server frees it
if the process dies. SQLite (tests, demo): a lease row in ``sync_cursors`` (flow
``vendors-lock``) renewed as the pass goes and expiring after ``CONNECTOR_LEASE_SECONDS``. A
second pass (or a single-vendor sync) finds it taken and reports ``busy``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from connector.db import Database, utcnow
from connector.errors import (
    RetryableError,
)
from connector.models import SyncCursor

LOCK_FLOW = "vendors-lock"


PASS_OWNER_PREFIX = "vendors-pass:"


class VendorSyncBusy(RetryableError):
    """Another vendor pass holds this connection's lock; try again later."""

    def __init__(self, connection_id: int) -> None:
        super().__init__(
            f"connection {connection_id}: a vendor reconciliation is already running",
            system="connector",
        )


class ConnectionLock:
    """One vendor pass per connection across processes (see module docstring)."""

    def __init__(self, db: Database, connection_id: int, owner: str, lease_seconds: float) -> None:
        self.db = db
        self.connection_id = connection_id
        self.owner = owner
        self.lease_seconds = float(lease_seconds)
        self._conn: Any = None
        self._pg_key = 0
        self.held = False

    def _key(self, conn: Any) -> int:
        """A 64-bit advisory key for (schema, connection): advisory locks are database-wide,
        so two deployments (or test sessions) sharing a database in separate schemas must not
        block each other."""
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar() or ""
        digest = hashlib.sha256(f"{schema}:vendors:{int(self.connection_id)}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def acquire(self) -> bool:
        if self.db.dialect == "postgresql":
            conn = self.db.engine.connect()
            try:
                self._pg_key = self._key(conn)
                got = conn.exec_driver_sql(
                    "SELECT pg_try_advisory_lock(%(k)s)", {"k": self._pg_key}
                ).scalar()
                conn.commit()
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
            if not got:
                conn.close()
                return False
            self._conn = conn
            self.held = True
            return True
        self.held = self._lease(take=True)
        return self.held

    def _lease(self, *, take: bool) -> bool:
        now = utcnow()
        stale = now - dt.timedelta(seconds=self.lease_seconds)
        where = [SyncCursor.connection_id == self.connection_id, SyncCursor.flow == LOCK_FLOW]
        with self.db.session() as session:
            exists = session.execute(select(SyncCursor.id).where(*where)).scalar_one_or_none()
            if exists is None:
                try:
                    with session.begin_nested():
                        session.add(
                            SyncCursor(
                                connection_id=self.connection_id,
                                flow=LOCK_FLOW,
                                cursor=self.owner,
                                updated_at=now,
                            )
                        )
                    return True
                except IntegrityError:
                    pass
            cond = SyncCursor.cursor == self.owner
            if take:
                cond = cond | SyncCursor.cursor.is_(None) | (SyncCursor.updated_at < stale)
            result = session.execute(
                update(SyncCursor)
                .where(*where, cond)
                .values(cursor=self.owner, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def renew(self) -> None:
        """Keep a lease-row lock alive during a long pass (no-op on PostgreSQL)."""
        if self.held and self._conn is None and not self._lease(take=False):
            raise VendorSyncBusy(self.connection_id)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": self._pg_key})
                conn.commit()
                conn.close()
            except Exception:  # a broken connection: drop it, the server frees the lock
                conn.invalidate()
                conn.close()
            return
        with self.db.session() as session:
            session.execute(
                update(SyncCursor)
                .where(
                    SyncCursor.connection_id == self.connection_id,
                    SyncCursor.flow == LOCK_FLOW,
                    SyncCursor.cursor == self.owner,
                )
                .values(cursor=None, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )


def new_owner() -> str:
    return f"{PASS_OWNER_PREFIX}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextmanager
def connection_lock(
    db: Database, connection_id: int, *, lease_seconds: float = 300.0, owner: str | None = None
) -> Iterator[ConnectionLock | None]:
    """``with connection_lock(...) as lock:`` -> the held lock, or None when another has it."""
    lock = ConnectionLock(db, connection_id, owner or new_owner(), lease_seconds)
    if not lock.acquire():
        yield None
        return
    try:
        yield lock
    finally:
        lock.release()
