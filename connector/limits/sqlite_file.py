"""A SQLite file shared by the processes of one machine: embedded mode's Redis.

The rate limiter, the in-flight semaphore and the daily-quota store each keep a table in the
same file (``var/ratelimit.sqlite``). What makes that safe is the same for all three, so it lives
here once: one connection per process, reopened after a fork (Celery's prefork children must not
share their parent's), WAL so readers do not wait for writers, and a busy timeout so contenders
queue instead of failing. Each store brings its own ``SCHEMA`` and takes ``BEGIN IMMEDIATE``
before a read-modify-write, which makes it atomic across processes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable


class SharedSqliteFile:
    """Base of the embedded-mode stores; subclasses set ``SCHEMA`` (idempotent DDL)."""

    SCHEMA = ""

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 10.0,
    ) -> None:
        self._path = os.fspath(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never across a fork
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(self.SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn
