"""Shared fixtures: real PostgreSQL and Redis, real Celery workers, and the sandbox.

Service-backed tests read ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` (defaulting to the local
services). Without the service they skip with a visible reason, except under ``CI=true``, where
a missing service fails the run: CI must never pass by skipping what it is meant to prove.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tasks.launch import QUEUES, worker_argv

# Nothing a test does may touch the developer's ./var (embedded database, broker, key).
if "CONNECTOR_VAR_DIR" not in os.environ:
    _TEST_VAR_DIR = tempfile.mkdtemp(prefix="connector-test-var-")
    os.environ["CONNECTOR_VAR_DIR"] = _TEST_VAR_DIR
    atexit.register(shutil.rmtree, _TEST_VAR_DIR, ignore_errors=True)

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() == "true"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_SECRET_KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="  # a Fernet key used only by tests


def service_unavailable(name: str, url: str, exc: BaseException) -> None:
    message = f"{name} not reachable at {url} ({type(exc).__name__}: {exc})"
    if CI:
        pytest.fail(f"CI=true: {message}; service-backed tests must run in CI", pytrace=False)
    pytest.skip(message)


# --------------------------------------------------------------------------- services


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    engine = sa.create_engine(TEST_DATABASE_URL)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        service_unavailable("PostgreSQL", TEST_DATABASE_URL, exc)
    finally:
        engine.dispose()
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        service_unavailable("Redis", TEST_REDIS_URL, exc)
    finally:
        client.close()
    return TEST_REDIS_URL


def _schema_url(server_url: str, schema: str) -> str:
    """A URL whose connections see only ``schema`` (psycopg2 passes ``options`` to libpq)."""
    sep = "&" if "?" in server_url else "?"
    return f"{server_url}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A private, migrated schema for this test session (parallel runs don't collide)."""
    from connector.migrate import upgrade

    schema = f"t_{os.getpid()}_{secrets.token_hex(3)}"
    engine = sa.create_engine(pg_server_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = _schema_url(pg_server_url, schema)
    upgrade(url)
    yield url
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    from connector.migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'connector.sqlite'}"
    upgrade(url)
    return url


def _truncate(database: Any) -> None:
    from connector.db import Base

    with database.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A migrated, empty database on each dialect the app supports."""
    from connector.db import Database

    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    database = Database(url)
    _truncate(database)
    yield database
    database.dispose()


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Any]:
    from connector.db import Database

    database = Database(pg_url)
    _truncate(database)
    yield database
    database.dispose()


@pytest.fixture
def settings_env(tmp_path: Path) -> dict[str, str]:
    """Environment for an embedded-mode process rooted in a temporary folder."""
    return {"CONNECTOR_VAR_DIR": str(tmp_path / "var"), "CONNECTOR_SECRET_KEY": TEST_SECRET_KEY}


# --------------------------------------------------------------------------- connections


@pytest.fixture
def connection_id(db: Any) -> int:
    from connector.models import Connection

    with db.session() as session:
        conn = Connection(name=f"test-{secrets.token_hex(3)}", zoho_organization_id="1001")
        session.add(conn)
        session.flush()
        return conn.id


# --------------------------------------------------------------------------- workers


class WorkerProcess:
    """A real ``celery -A tasks worker`` OS process for one test."""

    def __init__(
        self, env: dict[str, str], queues: str, concurrency: int, extra: list[str]
    ) -> None:
        self.env = env
        self.argv = worker_argv(
            concurrency=concurrency,
            queues=queues,
            name=f"test-{secrets.token_hex(3)}@%h",
            extra=extra,
        )
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("worker did not become ready:\n" + "".join(self.lines[-40:]))
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if " ready." in line:
                self._ready.set()

    def log(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def stack_env(pg_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for production-shaped processes: PostgreSQL + Redis (flushed)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "CELERY_"))}
    env.update(
        DATABASE_URL=pg_url,
        REDIS_URL=redis_url,
        CONNECTOR_SECRET_KEY=TEST_SECRET_KEY,
        CONNECTOR_VAR_DIR=str(tmp_path / "var"),
        CONNECTOR_PUBLIC_URL="http://127.0.0.1:5999",
        PYTHONPATH=str(ROOT),
    )
    (tmp_path / "var").mkdir(exist_ok=True)
    return env


@pytest.fixture
def start_worker(stack_env: dict[str, str]) -> Iterator[Any]:
    workers: list[WorkerProcess] = []

    def start(
        queues: str = QUEUES,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
    ) -> WorkerProcess:
        worker = WorkerProcess({**stack_env, **(env or {})}, queues, concurrency, extra or [])
        workers.append(worker.start())
        return worker

    yield start
    for worker in workers:
        worker.stop()


# --------------------------------------------------------------------------- sandbox


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Any]:
    """One real sandbox (simulated Zoho Books + SAP Concur) on a free port for the session."""
    from sandbox.server import SandboxServer

    server = SandboxServer(seed=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: Any) -> Any:
    """The session's sandbox, reset and re-seeded for this test."""
    state = sandbox_server.state
    state.reset()
    state.seed()
    # Short retry spacing keeps webhook-retry tests fast; the back-off shape is unchanged.
    state.deliverer.configure(base_delay=0.01, factor=2.0, timeout=2.0)
    return sandbox_server


@pytest.fixture
def admin(sandbox: Any) -> Any:
    from sandbox.admin import AdminClient

    return AdminClient(sandbox.url)


# --------------------------------------------------------------------------- connections


@pytest.fixture
def sandbox_settings(sandbox: Any, db: Any, tmp_path: Path) -> Any:
    """Settings of a connector in sandbox mode, on the test's database, limiter under tmp_path."""
    from connector.config import Settings

    (tmp_path / "var").mkdir(exist_ok=True)
    return Settings(
        database_url=db.url,
        redis_url=None,
        secret_keys=(TEST_SECRET_KEY,),
        embedded=True,
        var_dir=tmp_path / "var",
        zoho_client_id="sandbox-zoho-client",
        zoho_client_secret="sandbox-zoho-secret",
        zoho_accounts_url=f"{sandbox.url}/zoho/us/accounts",
        concur_client_id="sandbox-concur-client",
        concur_client_secret="sandbox-concur-secret",
        concur_auth_url=f"{sandbox.url}/concur/us2",
        sandbox_url=sandbox.url,
        public_url="http://127.0.0.1:5999",
        web_bind="127.0.0.1:5999",
    )


@pytest.fixture
def connected(db: Any, sandbox_settings: Any, sandbox: Any) -> int:
    """A connection with both sides authorized against the sandbox (Zoho self client, US org;
    Concur bootstrap of the seeded US company): ``cli.demo.authorize``, which ``connector
    run`` and ``connector demo`` use too."""
    from cli import demo
    from connector import connections

    connection_id = connections.create(db, f"acme-{secrets.token_hex(3)}")
    demo.authorize(db, sandbox_settings, connection_id, sandbox.url)
    return connection_id
