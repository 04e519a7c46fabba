"""SAP Concur: company bootstrap, code 16, geolocation routing, dead tokens, 30-day warning."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
import responses
from freezegun import freeze_time
from sqlalchemy import select

from connector import authorize, connections
from connector.api.oauth import TokenGrant
from connector.concur import auth as concur_auth
from connector.config import Settings
from connector.db import utcnow
from connector.errors import ConnectorError, ReauthRequired, UntrustedHostError
from connector.models import AuditEvent, Connection
from sandbox.concur import config as cc
from sandbox.concur.admin import ConcurAdmin

REAL = "https://us2.api.concursolutions.com"
TEST_KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


def test_bootstrap_stores_tokens_geolocation_and_refresh_expiry(
    db: Any, sandbox_settings: Any
) -> None:
    cid = connections.create(db, "us")
    authorize.connect_concur(db, sandbox_settings, cid, company_id=cc.SEED_US_COMPANY_ID,
                             request_token=cc.SEED_US_REQUEST_TOKEN)  # fmt: skip
    view = connections.token_manager(db, sandbox_settings, cid, "concur").current()
    assert view.api_base_url == f"{sandbox_settings.sandbox_url}/concur/us2"
    assert view.principal == cc.SEED_US_COMPANY_ID and view.region == "us2"
    assert view.refresh_expires_at is not None
    assert view.refresh_expires_at - utcnow() > dt.timedelta(days=170)


def test_code_16_is_followed_and_every_later_call_goes_to_the_stored_geolocation(
    db: Any, sandbox_settings: Any, admin: Any
) -> None:
    cid = connections.create(db, "eu")
    # The bootstrap starts at us2 (CONCUR_AUTH_URL); the EU company lives in eu2.
    authorize.connect_concur(db, sandbox_settings, cid, company_id=cc.SEED_EU_COMPANY_ID,
                             request_token=cc.SEED_EU_REQUEST_TOKEN)  # fmt: skip
    view = connections.token_manager(db, sandbox_settings, cid, "concur").current()
    assert view.api_base_url.endswith("/concur/eu2") and view.region == "eu2"
    client = connections.concur_client(db, sandbox_settings, cid)
    assert client.base_url.endswith("/concur/eu2")
    assert client.vendors.search(limit=1)["TotalCount"] >= 1
    manager = connections.token_manager(db, sandbox_settings, cid, "concur")
    assert manager.refresh(force=True).credential.api_base_url.endswith("/concur/eu2")


def test_a_refused_request_token_is_one_readable_error(db: Any, sandbox_settings: Any) -> None:
    cid = connections.create(db, "bad")
    with pytest.raises(ConnectorError, match="refused the company request token") as caught:
        authorize.connect_concur(db, sandbox_settings, cid, company_id=cc.SEED_US_COMPANY_ID,
                                 request_token="not-the-token")  # fmt: skip
    assert "not-the-token" not in str(caught.value)
    assert connections.show(db, cid)["concur"]["status"] == "not_connected"


def test_a_company_belongs_to_one_connection(
    db: Any, sandbox_settings: Any, connected: int
) -> None:
    other = connections.create(db, "second")
    with pytest.raises(ConnectorError, match=f"already used by connection {connected}"):
        authorize.connect_concur(db, sandbox_settings, other, company_id=cc.SEED_US_COMPANY_ID,
                                 request_token=cc.SEED_US_REQUEST_TOKEN)  # fmt: skip


def test_refused_refresh_108_turns_needs_reauth_with_one_alert(
    db: Any, sandbox_settings: Any, connected: int, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ConcurAdmin(admin.base_url).revoke_refresh_tokens(company_id=cc.SEED_US_COMPANY_ID)
    admin.advance_clock(3700)
    caplog.set_level(logging.ERROR)
    with pytest.raises(ReauthRequired):
        connections.concur_client(db, sandbox_settings, connected).vendors.search(limit=1)
    with pytest.raises(ReauthRequired):
        connections.concur_client(db, sandbox_settings, connected).vendors.search(limit=1)
    shown = connections.show(db, connected)
    assert shown["status"] == "needs_reauth" and shown["concur"]["status"] == "needs_reauth"
    assert "108" in (shown["status_reason"] or "")
    with db.session() as session:
        alerts = (
            session.execute(select(AuditEvent).where(AuditEvent.outcome == "needs_reauth"))
            .scalars()
            .all()
        )
    assert len(alerts) == 1
    assert len([r for r in caplog.records if "needs re-authorization" in r.getMessage()]) == 1
    # A new request token brings it back.
    token = ConcurAdmin(admin.base_url).new_request_token(cc.SEED_US_COMPANY_ID)
    authorize.connect_concur(db, sandbox_settings, connected, company_id=cc.SEED_US_COMPANY_ID,
                             request_token=token)  # fmt: skip
    assert connections.show(db, connected)["status"] == "active"
    assert connections.concur_client(db, sandbox_settings, connected).vendors.search(limit=1)


def test_untrusted_geolocation_is_refused(db: Any, sandbox_settings: Any, tmp_path: Path) -> None:
    settings = Settings(database_url=db.url, redis_url=None, secret_keys=(TEST_KEY,),
                        embedded=True, var_dir=tmp_path, concur_client_id="c",
                        concur_client_secret="real-secret-value")  # fmt: skip
    with responses.RequestsMock() as mock:
        mock.post(f"{REAL}/oauth2/v0/token", json={
            "access_token": "eyJhbGciOi.eyJzdWIiOi.sig", "refresh_token": "r" * 30,
            "expires_in": "3600", "geolocation": "https://concur.evil.example"})  # fmt: skip
        with pytest.raises(UntrustedHostError, match=r"concur\.evil\.example"):
            concur_auth.bootstrap(settings, company_id="c-1", request_token="request-tok-123")


# --------------------------------------------------------------------------- 30-day warning


def _real_connection(
    db: Any, tmp_path: Path, refresh_expires_at: dt.datetime
) -> tuple[Settings, int]:
    settings = Settings(database_url=db.url, redis_url=None, secret_keys=(TEST_KEY,),
                        embedded=True, var_dir=tmp_path, concur_client_id="c",
                        concur_client_secret="real-secret-value")  # fmt: skip
    cid = connections.create(db, f"real-{secrets.token_hex(2)}")
    grant = TokenGrant(access_token="eyJ0eXAi.eyJzdWIi.sig1", expires_in=3600,
                       refresh_token="refresh-token-0001", api_base_url=REAL, auth_base_url=REAL,
                       refresh_expires_at=refresh_expires_at, region="us2")  # fmt: skip
    authorize.store_grant(db, settings, cid, "concur", grant, principal="c-1")
    with db.session() as session:
        session.get(Connection, cid).concur_company_id = "c-1"
    return settings, cid


@freeze_time("2030-01-01T12:00:00Z")
def test_warns_when_refreshing_did_not_extend_a_lapsing_refresh_token(
    db: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expiry = utcnow() + dt.timedelta(days=20)
    settings, cid = _real_connection(db, tmp_path, expiry)
    caplog.set_level(logging.WARNING)
    with responses.RequestsMock() as mock:
        for _ in range(2):
            mock.post(f"{REAL}/oauth2/v0/token", json={
                "access_token": f"eyJ0eXAi.eyJzdWIi.sig{secrets.token_hex(4)}",
                "refresh_token": "refresh-token-0001", "expires_in": "3600",
                "refresh_expires_in": int(expiry.timestamp()), "geolocation": REAL})  # fmt: skip
        manager = connections.token_manager(db, settings, cid, "concur")
        manager.refresh(force=True)
        manager.refresh(force=True)
    shown = connections.show(db, cid)
    assert shown["status"] == "active"  # still working: a warning, not a failure
    assert "did not extend" in shown["status_reason"] and "20 day(s) left" in shown["status_reason"]
    assert any("did not extend" in r.getMessage() for r in caplog.records)
    with db.session() as session:
        rows = (
            session.execute(select(AuditEvent).where(AuditEvent.outcome == "refresh_expiring"))
            .scalars()
            .all()
        )
    assert len(rows) == 1  # the same warning is not repeated on every refresh


@freeze_time("2030-01-01T12:00:00Z")
def test_no_warning_when_refreshing_extends_the_refresh_token(db: Any, tmp_path: Path) -> None:
    expiry = utcnow() + dt.timedelta(days=20)
    settings, cid = _real_connection(db, tmp_path, expiry)
    with responses.RequestsMock() as mock:
        mock.post(f"{REAL}/oauth2/v0/token", json={
            "access_token": "eyJ0eXAi.eyJzdWIi.sig2", "refresh_token": "refresh-token-0002",
            "expires_in": 3600, "geolocation": REAL,
            "refresh_expires_in": int((utcnow() + dt.timedelta(days=182)).timestamp())})  # fmt: skip
        connections.token_manager(db, settings, cid, "concur").refresh(force=True)
    assert connections.show(db, cid)["status_reason"] is None


def test_refresh_warning_rules() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    soon, later = now + dt.timedelta(days=10), now + dt.timedelta(days=100)
    assert concur_auth.refresh_warning(soon, soon, now) is not None
    assert concur_auth.refresh_warning(soon, None, now) is not None
    assert concur_auth.refresh_warning(soon, later, now) is None
    assert concur_auth.refresh_warning(later, later, now) is None
    assert concur_auth.refresh_warning(None, None, now) is None
