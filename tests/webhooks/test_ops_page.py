"""``/ops``: basic auth, problems grouped with hints, the record page, replay buttons with CSRF."""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector import backoff, ledger
from connector.config import Settings
from connector.db import Database, utcnow
from connector.models import AuditEvent, Connection, Step, SyncRecord
from flows import FLOWS
from webhooks import create_app

KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="
PROD = {
    "DATABASE_URL": "postgresql://ops@127.0.0.1:1/none",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "CONNECTOR_PUBLIC_URL": "https://connector.example",
}


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic("admin", "s3cret")


class App:
    def __init__(self, db: Database, tmp_path: Path, **env: str) -> None:
        settings = Settings.from_env(
            {"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path), **env}
        )
        self.queued: list[tuple[int, str]] = []
        self.app = create_app(
            settings,
            db=db,
            config={
                "ENQUEUE_EVENT": lambda event_id: None,
                "OPS_ENQUEUE": lambda rid, step: self.queued.append((rid, str(step))),
            },
        )
        self.client = self.app.test_client()


@pytest.fixture
def ops(db: Database, tmp_path: Path) -> App:
    return App(db, tmp_path, OPS_BASIC_AUTH="admin:s3cret", **PROD)


def connection(db: Database, name: str = "acme", **fields: Any) -> int:
    with db.session() as s:
        conn = Connection(name=name, zoho_organization_id="10234695", **fields)
        s.add(conn)
        s.flush()
        return conn.id


def record(db: Database, connection_id: int, **payload: Any) -> int:
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
            source_ref="BL-00042",
            source_payload=payload,
        )
        return rec.id


def drive(db: Database, rid: int) -> str | None:
    step: Step | None = Step.FETCH
    result = None
    for _ in range(40):
        assert step is not None
        result = FLOWS.run_step(db, rid, step, owner="w", lease_seconds=60)
        if result.action not in ("next", "retry"):
            break
        step = result.next_step
    return result.state if result else None


def waiting_on_vendor(db: Database, connection_id: int, vendor: str) -> int:
    rid = record(db, connection_id)
    with db.session() as s:
        ledger.park(
            s,
            s.get(SyncRecord, rid),
            owner=None,
            reason=f"vendor '{vendor}' is not linked to a Concur vendor",
            next_attempt_at=utcnow() + dt.timedelta(hours=1),
            code="vendor",
            error_class="ParkError",
        )
    return rid


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


# --------------------------------------------------------------------------- auth


def test_production_refuses_without_ops_basic_auth(db: Database, tmp_path: Path) -> None:
    app = App(db, tmp_path, **PROD)
    response = app.client.get("/ops/")
    assert response.status_code == 503 and b"OPS_BASIC_AUTH" in response.data


def test_basic_auth_is_required(ops: App) -> None:
    response = ops.client.get("/ops/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert ops.client.get("/ops/", headers=basic("admin", "wrong")).status_code == 401
    assert ops.client.get("/ops/records/1", headers=basic("root", "s3cret")).status_code == 401
    assert ops.client.post("/ops/replay", data={"record_id": "1"}).status_code == 401
    response = ops.client.get("/ops/", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["X-Frame-Options"] == "DENY"


def test_loopback_bound_web_without_credentials_is_open_to_local_requests(
    db: Database, tmp_path: Path
) -> None:
    app = App(db, tmp_path, WEB_BIND="127.0.0.1:5000")
    assert app.client.get("/ops/").status_code == 200


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="embedded-bind-unknown"),
        pytest.param({"WEB_BIND": "0.0.0.0:5000"}, id="embedded-all-interfaces"),
        pytest.param({"WEB_BIND": "10.0.0.7:5000"}, id="embedded-lan-address"),
    ],
)
def test_embedded_mode_is_not_no_login(db: Database, tmp_path: Path, env: dict[str, str]) -> None:
    """Issue #12 item 4: the SQLite database no longer opens /ops; the bind address decides."""
    app = App(db, tmp_path, **env)
    response = app.client.get("/ops/")
    assert response.status_code == 503
    assert b"OPS_BASIC_AUTH" in response.data and b"WEB_BIND" in response.data
    # Starting an authorization is refused the same way.
    assert app.client.get("/oauth/zoho/start?connection=1").status_code == 503


@pytest.mark.parametrize(
    ("remote", "headers"),
    [
        pytest.param("10.0.0.9", {}, id="remote-address"),
        pytest.param("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, id="local-proxy"),
        pytest.param("127.0.0.1", {"Forwarded": "for=203.0.113.9"}, id="local-proxy-rfc7239"),
    ],
)
def test_loopback_bind_still_needs_a_local_request(
    db: Database, tmp_path: Path, remote: str, headers: dict[str, str]
) -> None:
    app = App(db, tmp_path, WEB_BIND="127.0.0.1:5000")
    response = app.client.get("/ops/", headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == 503 and b"OPS_BASIC_AUTH" in response.data


def test_production_database_on_a_loopback_bind_is_open_locally(
    db: Database, tmp_path: Path
) -> None:
    """The database URL plays no part: PostgreSQL behind a loopback-only web is local too."""
    app = App(db, tmp_path, WEB_BIND="[::1]:5000", **PROD)
    assert app.client.get("/ops/").status_code == 200
    assert app.client.get("/ops/", environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 503


def test_ops_pages_carry_security_headers(ops: App) -> None:
    response = ops.client.get("/ops/", headers=AUTH)
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


# --------------------------------------------------------------------------- overview


def test_overview_shows_connections_counts_and_grouped_problems(ops: App, db: Database) -> None:
    cid = connection(db)
    connection(db, "globex", status="needs_reauth", status_reason="zoho refresh refused")
    vendor_ids = [waiting_on_vendor(db, cid, v) for v in ("Acme Supplies", "Initech", "Hooli")]
    dead = record(db, cid, transient_times=backoff.MAX_TRANSIENT_ATTEMPTS + 5)
    assert drive(db, dead) == "dead"
    posted = record(db, cid)
    assert drive(db, posted) == "posted"

    html = ops.client.get("/ops/", headers=AUTH).get_data(as_text=True)
    assert "acme" in html and "globex" in html
    assert "connector connect zoho globex" in html  # the connection's fix hint
    counts = html.split('id="counts"')[1].split("</table>")[0]
    assert "selftest" in counts and ">3</a>" in counts and ">1</a>" in counts

    problems = html.split('id="problems"')[1].split("</table>")[0]
    groups = re.findall(r'<tr class="group" data-group="(\w+)">(.*?)</tr>', problems, re.S)
    assert len(groups) == 2
    dead_row = next(body for _, body in groups if "state-dead" in body)
    vendor_row = next(body for _, body in groups if "vendor" in body)
    assert "vendor &#39;…&#39; is not linked to a Concur vendor" in vendor_row
    assert "Sync vendors or link it" in vendor_row and "Replay 3" in vendor_row
    for rid in vendor_ids:
        assert f"/ops/records/{rid}" in vendor_row
    assert "retries exhausted after N attempts" in dead_row and "Replay 1" in dead_row


def test_record_page_shows_trail_payloads_and_target_link(db: Database, tmp_path: Path) -> None:
    app = App(
        db,
        tmp_path,
        OPS_BASIC_AUTH="admin:s3cret",
        CONNECTOR_SANDBOX_URL="http://127.0.0.1:8090",
        **PROD,
    )
    cid = connection(db)
    rid = record(db, cid, echo="<script>x</script>")
    assert drive(db, rid) == "posted"
    with db.session() as s:  # as a Zoho-bound flow would leave it
        rec = s.get(SyncRecord, rid)
        rec.target_system, rec.target_id = "zoho", "460000000012345"

    html = app.client.get(f"/ops/records/{rid}", headers=AUTH).get_data(as_text=True)
    assert 'id="record-state">posted<' in html
    assert 'href="http://127.0.0.1:8090/?org=10234695"' in html and "460000000012345" in html
    assert html.count('class="audit-row"') == 7
    assert "&lt;script&gt;" in html and "<script>x" not in html  # escaped, not executed
    assert "&#34;fetched&#34;: true" in html  # pretty JSON of the source payload
    assert 'id="verify"' in html and 'id="replay"' not in html

    assert app.client.get("/ops/records/999999", headers=AUTH).status_code == 404


# --------------------------------------------------------------------------- replay


def test_replay_button_needs_csrf_and_restarts_the_record(ops: App, db: Database) -> None:
    cid = connection(db)
    rid = record(db, cid, transient_times=backoff.MAX_TRANSIENT_ATTEMPTS + 5)
    assert drive(db, rid) == "dead"
    page = ops.client.get(f"/ops/records/{rid}", headers=AUTH).get_data(as_text=True)
    assert 'id="replay"' in page

    refused = ops.client.post("/ops/replay", headers=AUTH, data={"record_id": str(rid)})
    assert refused.status_code == 400 and b"CSRF" in refused.data
    forged = ops.client.post(
        "/ops/replay", headers=AUTH, data={"record_id": str(rid), "csrf_token": "1.abc"}
    )
    assert forged.status_code == 400
    with ops.app.test_request_context():
        from flask import g

        from webhooks.ops import csrf_token

        g.ops_user = "admin"
        stale = csrf_token("admin", now=time.time() - 13 * 3600)
    assert (
        ops.client.post(
            "/ops/replay", headers=AUTH, data={"record_id": str(rid), "csrf_token": stale}
        ).status_code
        == 400
    )
    assert ops.queued == []

    response = ops.client.post(
        "/ops/replay",
        headers=AUTH,
        data={
            "record_id": str(rid),
            "csrf_token": csrf(page),
            "next": f"/ops/records/{rid}",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"/ops/records/{rid}?message=replay")
    assert ops.queued == [(rid, "post")]
    with db.session() as s:
        assert s.get(SyncRecord, rid).state == "validated"
        trail = [
            a.message or ""
            for a in s.execute(select(AuditEvent).where(AuditEvent.record_id == rid)).scalars()
        ]
    assert any(m.startswith("replay requested by ops:admin") for m in trail)
    page = ops.client.get(response.headers["Location"], headers=AUTH).get_data(as_text=True)
    assert 'id="message"' in page and "1 queued" in page


def test_group_replay_and_safe_redirects(ops: App, db: Database) -> None:
    cid = connection(db)
    ids = [waiting_on_vendor(db, cid, v) for v in ("A Corp", "B Corp")]
    html = ops.client.get("/ops/", headers=AUTH).get_data(as_text=True)
    key = re.search(r'name="group" value="(\w+)"', html).group(1)
    response = ops.client.post(
        "/ops/replay",
        headers=AUTH,
        data={"group": key, "csrf_token": csrf(html), "next": "https://evil.example/"},
    )
    assert response.status_code == 303 and response.headers["Location"].startswith("/ops/?")
    assert sorted(r for r, _ in ops.queued) == sorted(ids)
    # The group is gone now: a second click says so instead of failing.
    again = ops.client.post(
        "/ops/replay", headers=AUTH, data={"group": key, "csrf_token": csrf(html)}
    )
    assert again.status_code == 303 and "no+longer+exists" in again.headers["Location"]
