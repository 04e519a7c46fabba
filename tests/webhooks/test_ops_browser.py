"""``/ops`` in a real headless Chromium: an operator clicks "Replay" on a dead record and watches
it reach ``posted``, carried out by a real Celery worker on Redis and PostgreSQL.

Needs ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (Debian packages ``chromium`` and
``chromium-driver``; ``.ci/run`` installs them) and the ``selenium`` package. Without them the
test skips with the reason, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector import backoff, ledger
from connector.config import Settings
from connector.db import Database
from connector.models import AuditEvent, Connection, Step, SyncRecord
from flows import FLOWS
from webhooks import create_app

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CI = os.environ.get("CI", "").lower() == "true"
KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _missing_browser() -> str | None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return (
            f"{CHROMIUM} / {CHROMEDRIVER} not installed (apt-get install chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    reason = _missing_browser()
    if reason:
        if CI:
            pytest.fail(f"CI=true: {reason}; the browser test must run in CI", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ops-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def ops_server(pg_db: Database, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """The real Flask app under a werkzeug server thread, production-shaped (PostgreSQL, Redis,
    basic auth). Its replay button enqueues to Redis exactly as ``tasks.pipeline.enqueue``
    does (the test process's own Celery app is configured for the embedded broker)."""
    from celery import Celery
    from werkzeug.serving import make_server

    sender = Celery("ops-browser-test", broker=redis_url)

    def enqueue(record_id: int, step: str) -> str:
        queue, task_id = FLOWS.route(pg_db, record_id, Step(step))
        sender.send_task(
            f"pipeline.{queue}.{step}", args=[record_id, str(step)], task_id=task_id, queue=queue
        )
        return task_id

    settings = Settings.from_env(
        {
            "DATABASE_URL": pg_db.url,
            "REDIS_URL": redis_url,
            "CONNECTOR_SECRET_KEY": KEY,
            "CONNECTOR_VAR_DIR": str(tmp_path),
            "OPS_BASIC_AUTH": "admin:s3cret",
            "CONNECTOR_PUBLIC_URL": "https://connector.example",
        }
    )
    app = create_app(
        settings, db=pg_db, config={"ENQUEUE_EVENT": lambda _id: None, "OPS_ENQUEUE": enqueue}
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        sender.close()


def dead_record(db: Database) -> int:
    with db.session() as s:
        conn = Connection(name=f"browser-{uuid.uuid4().hex[:6]}")
        s.add(conn)
        s.flush()
        rec, _ = ledger.get_or_create(
            s,
            connection_id=conn.id,
            flow="selftest",
            source_system="selftest",
            source_type="probe",
            source_id=uuid.uuid4().hex,
            source_version="1",
            target_system="selftest",
            source_ref="BL-BROWSER",
            source_payload={"transient_times": backoff.MAX_TRANSIENT_ATTEMPTS + 5},
        )
        rid = rec.id
    step: Step | None = Step.FETCH
    for _ in range(40):
        assert step is not None
        result = FLOWS.run_step(db, rid, step, owner="test", lease_seconds=60)
        if result.action not in ("next", "retry"):
            break
        step = result.next_step
    assert result.state == "dead"
    return rid


def test_operator_replays_a_dead_record_and_sees_it_posted(
    browser: Any, ops_server: str, pg_db: Database, start_worker: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    start_worker()
    rid = dead_record(pg_db)

    # Basic auth on every request the browser makes, including the form POST.
    token = base64.b64encode(b"admin:s3cret").decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )

    browser.get(f"{ops_server}/ops/")
    problems = browser.find_element(By.ID, "problems").text
    assert "dead" in problems and "retries exhausted" in problems

    browser.get(f"{ops_server}/ops/records/{rid}")
    assert browser.find_element(By.ID, "record-state").text == "dead"

    # The cause is fixed (the selftest target stops failing); the operator clicks Replay.
    with pg_db.session() as s:
        rec = s.get(SyncRecord, rid)
        rec.source_payload = {**rec.source_payload, "transient_times": 0}
    browser.find_element(By.ID, "replay").click()
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "message"))
    assert "1 queued" in browser.find_element(By.ID, "message").text

    def shows_posted(driver: Any) -> bool:
        driver.get(f"{ops_server}/ops/records/{rid}")
        return driver.find_element(By.ID, "record-state").text == "posted"

    WebDriverWait(browser, 60, poll_frequency=0.5).until(shows_posted)
    assert browser.find_element(By.ID, "target").text.endswith(f"selftest-{rid}")
    audit = browser.find_element(By.ID, "audit").text
    assert "replay requested by ops:admin" in audit
    with pg_db.session() as s:
        posted = s.execute(
            select(AuditEvent).where(AuditEvent.record_id == rid, AuditEvent.outcome == "posted")
        ).all()
    assert len(posted) == 1
