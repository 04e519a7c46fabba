"""Readiness checks shared by ``/readyz`` and ``connector ping``-style commands."""

from __future__ import annotations

import time
from dataclasses import dataclass

from connector.api.redaction import redact
from connector.db import Database


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    ms: float


def _timed(name: str, fn: object) -> Check:
    start = time.perf_counter()
    try:
        fn()  # type: ignore[operator]
    except Exception as exc:  # a readiness probe reports, it does not raise
        return Check(
            name,
            False,
            redact(f"{type(exc).__name__}: {exc}")[:300],
            (time.perf_counter() - start) * 1000,
        )
    return Check(name, True, "ok", (time.perf_counter() - start) * 1000)


def check_database(db: Database) -> Check:
    return _timed("database", db.ping)


def check_broker(broker_url: str) -> Check:
    def ping() -> None:
        if broker_url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()
        else:
            # The embedded broker is an SQLite file: ready when it opens and answers.
            import sqlite3

            path = broker_url.split(":///", 1)[1]
            conn = sqlite3.connect(f"file:{path}?mode=rwc", uri=True, timeout=2)
            try:
                conn.execute("SELECT 1")
            finally:
                conn.close()

    return _timed("broker", ping)
