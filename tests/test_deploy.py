"""Issue #19: deploy exactly as the README says, and prove every process stays up.

``test_procfile_deploy`` is the README's "Deploying on a Heroku-style platform" on this machine:
a clean copy of the working tree (no ``var/``, no ``.venv``), only the documented variables,
``release`` run, then ``web``, ``worker``, ``beat`` and ``flower`` started with the Procfile's
own command lines through ``bash -c`` (each with its own ``$PORT``, as a platform gives each
dyno). The connection is set up with the CLI as a user would; the sandbox stands in for Zoho
and Concur. A bill and an approved report must reach ``posted``, and beat's sweeper and token
refresh must run within their (shortened) intervals.

``test_connector_run_production`` is the README's other deploy path, ``connector run``, in
production mode (PostgreSQL and Redis) from a clean copy, with the same checks where they apply.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from tests.conftest import TEST_SECRET_KEY, _schema_url
from tests.deploy_support import (
    ROOT,
    Processes,
    answers,
    base_env,
    clean_copy,
    parse_procfile,
    status_of,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

OPS_AUTH = ("ops", "ops-" + secrets.token_hex(4))
FLOWER_AUTH = ("flower", "flower-" + secrets.token_hex(4))
#: Short beat intervals through the documented variables, so the runs are seen within the test.
SWEEP_INTERVAL = 2
REFRESH_INTERVAL = 2
#: Deadlines for a process to come up or a beat job to be seen: generous, because the machine
#: may be shared (they bound a wait on a condition; a passing run takes a few seconds each).
BOOT_TIMEOUT = 120
BEAT_TIMEOUT = 120
#: Celery's line for a finished task (celery.app.trace), on the worker's log.
SWEEP_DONE = re.compile(r"Task maintenance\.sweep\[[0-9a-f-]+\] succeeded in ")
REFRESH_DONE = re.compile(
    r"Task maintenance\.refresh_tokens\[[0-9a-f-]+\] succeeded in .*'refreshed': \[\d"
)


def free_port() -> int:
    from bench.stack import free_port as pick

    return pick()


@pytest.fixture
def fresh_schema(pg_server_url: str) -> Iterator[str]:
    """An empty, unmigrated private schema: the release phase must create the tables."""
    schema = f"deploy_{secrets.token_hex(4)}"
    engine = sa.create_engine(pg_server_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield _schema_url(pg_server_url, schema)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture
def private_redis() -> Iterator[str]:
    """A redis-server of our own: the stack's queues must not meet other tests' messages."""
    from bench.stack import PrivateRedis
    from tests.conftest import service_unavailable

    server = PrivateRedis()
    try:
        server.start()
    except Exception as exc:
        service_unavailable("redis-server", "a private redis-server", exc)
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    app = clean_copy(tmp_path / "app")
    assert not (app / "var").exists() and not (app / ".venv").exists()
    return app


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[str]:
    """The simulated Zoho Books and SAP Concur: the vendors, not part of the deployment."""
    cwd = tmp_path / "sandbox"
    cwd.mkdir()
    procs = Processes(cwd, tmp_path)
    port = free_port()
    env = {**base_env(ROOT, tmp_path), "CONNECTOR_VAR_DIR": str(cwd / "var")}  # not ./var
    procs.start("sandbox", f"exec python -m sandbox serve --host 127.0.0.1 --port {port}", env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: answers(f"{url}/_admin/stats"), timeout=60, what="the sandbox", procs=procs
        )
        yield url
    finally:
        procs.stop_all()


def production_env(
    app: Path, home: Path, database_url: str, redis_url: str, sandbox_url: str, web_port: int
) -> dict[str, str]:
    """The README's deploy variables, the vendor client variables aimed at the sandbox, and the
    documented beat intervals shortened. Nothing else (notably no CONNECTOR_VAR_DIR)."""
    from cli import demo

    keys = home / "keys"
    pem = demo.fetch_public_key(sandbox_url, keys)  # what a user downloads from Concur
    env = base_env(app, home)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CONNECTOR_SECRET_KEY": TEST_SECRET_KEY,
            "OPS_BASIC_AUTH": ":".join(OPS_AUTH),
            "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
            "CONNECTOR_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
            "CONCUR_WEBHOOK_PUBLIC_KEYS": str(pem),
            "CONNECTOR_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
            "CONNECTOR_REFRESH_INTERVAL": str(REFRESH_INTERVAL),
            # Every run refreshes every token (they live 3600 s): each run leaves a trace.
            "CONNECTOR_REFRESH_MARGIN": "3599",
            "WEB_CONCURRENCY": "1",
            "WORKER_CONCURRENCY": "2",
        }
    )
    # CONNECTOR_SANDBOX_URL (trusts the sandbox's hosts), the client ids and secrets, and the
    # two vendor entry points, exactly as `connector run` gives them.
    return demo.sandbox_env(sandbox_url, env)


def connect_with_cli(procs: Processes, env: dict[str, str], sandbox_url: str) -> int:
    """The connection as the README has a user set it up against the sandbox: the CLI commands
    of "First hour in production", run by scripts/sandbox_connect.py (the compose steps too)."""
    out = procs.run(
        "sandbox_connect",
        f"python scripts/sandbox_connect.py --sandbox {sandbox_url} --name deploy-acme",
        env,
    )
    assert "$ connector connect zoho" in out and "$ connector concur subscribe" in out, out
    for secret in ("sbx-us2-company-request-token", env["CONNECTOR_SECRET_KEY"]):
        assert secret not in out
    match = re.search(r"connection (\d+) \(deploy-acme\) is connected", out)
    assert match, out
    return int(match.group(1))


def refreshed_since_connect(database_url: str, cid: int) -> dict[str, bool]:
    """Per side: was the credential's token refreshed after it was stored by `connect`?

    `connect` stores the grant with ``last_refreshed_at`` just before the row's ``created_at``;
    a later refresh moves ``last_refreshed_at`` past it. Race-free whatever ran first (Zoho caps
    token creations per credential, so the test cannot wait for "the next" refresh)."""
    from connector.db import get_database
    from connector.models import Credential

    with get_database(database_url).session() as session:
        rows = session.execute(
            select(Credential.system, Credential.created_at, Credential.last_refreshed_at).where(
                Credential.connection_id == cid
            )
        ).all()
    return {system: last is not None and last > created for system, created, last in rows}


def assert_bill_and_report_post(database_url: str, sandbox_url: str, cid: int) -> None:
    from cli import demo
    from connector.db import get_database

    rows = demo.run_scenario(get_database(database_url), sandbox_url, cid, timeout=180)
    states = {row.flow: row.state for row in rows}
    assert states == {"vendors": "posted", "payables": "posted", "expenses": "posted"}, demo.table(
        rows
    )
    assert all(row.target_id for row in rows), demo.table(rows)


def assert_token_refresh_runs(database_url: str, cid: int, procs: Processes) -> None:
    """Beat's refresh ran on the worker and refreshed both sides' tokens after `connect`."""

    def refreshed() -> bool:
        if not REFRESH_DONE.search("\n".join(p.output() for p in procs.started)):
            return False
        return refreshed_since_connect(database_url, cid) == {"zoho": True, "concur": True}

    wait_for(refreshed, timeout=BEAT_TIMEOUT, what="beat's token refresh", procs=procs)


def test_procfile_deploy(
    tmp_path: Path, app_dir: Path, fresh_schema: str, private_redis: str, sandbox: str
) -> None:
    procfile = parse_procfile(app_dir / "Procfile")
    assert set(procfile) == {"web", "worker", "beat", "flower", "release"}
    web_port, flower_port = free_port(), free_port()
    env = production_env(app_dir, tmp_path / "home", fresh_schema, private_redis, sandbox, web_port)
    procs = Processes(app_dir, tmp_path)
    try:
        # The copy's code runs, not the developer's checkout.
        where = procs.run("probe", "python -c 'import connector, celeryconfig; "
                          "print(connector.__file__); print(celeryconfig.__file__)'", env)  # fmt: skip
        assert all(line.startswith(str(app_dir)) for line in where.split()), where

        procs.run("release", procfile["release"], {**env, "PORT": str(web_port)})
        procs.start("web", procfile["web"], {**env, "PORT": str(web_port)})
        procs.start("worker", procfile["worker"], {**env, "PORT": str(free_port())})
        beat = procs.start("beat", procfile["beat"], {**env, "PORT": str(free_port())})
        flower = procs.start("flower", procfile["flower"], {**env, "PORT": str(flower_port)})

        base = f"http://127.0.0.1:{web_port}"
        wait_for(lambda: answers(f"{base}/readyz"), timeout=BOOT_TIMEOUT, what="web /readyz 200",
                 procs=procs)  # fmt: skip
        flower_url = f"http://127.0.0.1:{flower_port}/"
        wait_for(lambda: answers(flower_url, 200, FLOWER_AUTH), timeout=BOOT_TIMEOUT,
                 what="Flower with its password", procs=procs)  # fmt: skip
        assert status_of(flower_url) == 401
        assert status_of(flower_url, ("flower", "wrong")) == 401
        assert status_of(f"{base}/ops", OPS_AUTH) == 200
        assert status_of(f"{base}/ops") == 401

        # Beat created its schedule where the README says, in a directory nobody made for it.
        schedule_dir = app_dir / "var"
        wait_for(lambda: any(schedule_dir.glob("celerybeat-schedule*")), timeout=BOOT_TIMEOUT,
                 what="beat's schedule file under var/", procs=procs)  # fmt: skip
        worker = next(p for p in procs.started if p.name == "worker")
        wait_for(
            lambda: (
                "Sending due task sweep-ledger" in beat.output()
                and SWEEP_DONE.search(worker.output()) is not None
            ),
            timeout=BEAT_TIMEOUT,
            what="beat's sweeper run on the worker",
            procs=procs,
        )

        cid = connect_with_cli(procs, env, sandbox)
        assert_token_refresh_runs(fresh_schema, cid, procs)
        assert_bill_and_report_post(fresh_schema, sandbox, cid)

        assert answers(f"{base}/readyz")
        down = [p.name for p in procs.started if not p.alive]
        assert not down, f"{down} exited\n{procs.report()}"
        assert "Traceback" not in beat.output(), beat.tail()
        assert answers(flower_url, 200, FLOWER_AUTH), flower.tail()
    finally:
        procs.stop_all()


def test_connector_run_production(
    tmp_path: Path, app_dir: Path, fresh_schema: str, private_redis: str
) -> None:
    """`connector run --sandbox` on PostgreSQL and Redis from a clean copy: migrates, starts its
    own sandbox, sets up the demo connection, and posts a bill and a report; beat runs inside
    the worker with its schedule under var/ (which did not exist)."""
    from cli import demo
    from connector.db import get_database

    web_port, sandbox_port = free_port(), free_port()
    home = tmp_path / "home"
    env = base_env(app_dir, home)
    env.update(
        {
            "DATABASE_URL": fresh_schema,
            "REDIS_URL": private_redis,
            "CONNECTOR_SECRET_KEY": TEST_SECRET_KEY,
            "OPS_BASIC_AUTH": ":".join(OPS_AUTH),
            "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
            "CONNECTOR_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
            "CONNECTOR_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
            "CONNECTOR_REFRESH_INTERVAL": str(REFRESH_INTERVAL),
            "CONNECTOR_REFRESH_MARGIN": "3599",
        }
    )
    procs = Processes(app_dir, tmp_path)
    try:
        run = procs.start(
            "connector-run",
            f"exec connector run --sandbox --port {web_port} --sandbox-port {sandbox_port} "
            "--concurrency 2",
            env,
        )
        base = f"http://127.0.0.1:{web_port}"
        wait_for(
            lambda: answers(f"{base}/readyz"), timeout=BOOT_TIMEOUT, what="/readyz 200", procs=procs
        )
        wait_for(lambda: "is ready" in run.output(), timeout=BOOT_TIMEOUT,
                 what="the demo connection's set-up", procs=procs)  # fmt: skip
        assert status_of(f"{base}/ops", OPS_AUTH) == 200
        db = get_database(fresh_schema)
        from connector import connections

        cid = connections.resolve(db, demo.CONNECTION_NAME).id
        wait_for(
            lambda: SWEEP_DONE.search(run.output()) is not None,
            timeout=BEAT_TIMEOUT,
            what="the embedded beat's sweeper run",
            procs=procs,
        )
        assert any((app_dir / "var").glob("celerybeat-schedule*"))
        assert_token_refresh_runs(fresh_schema, cid, procs)
        assert_bill_and_report_post(fresh_schema, f"http://127.0.0.1:{sandbox_port}", cid)
        assert run.alive, run.tail()
        assert answers(f"{base}/readyz")
    finally:
        procs.stop_all()
