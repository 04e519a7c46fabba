"""Connections against the real sandbox: create, authorize, show, ping, needs_reauth, delete."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from connector import authorize, connections, ledger, ping
from connector.errors import ConnectorError, ReauthRequired
from connector.models import (
    AuditEvent,
    Connection,
    Credential,
    RecordState,
    Step,
    SyncRecord,
)
from connector.zoho.auth import SCOPE
from sandbox.concur import config as concur_config
from sandbox.zoho import seed as zoho_seed


def _audit(db: Any, connection_id: int, outcome: str) -> list[AuditEvent]:
    with db.session() as session:
        return list(
            session.execute(
                select(AuditEvent).where(
                    AuditEvent.connection_id == connection_id, AuditEvent.outcome == outcome
                )
            ).scalars()
        )


def test_create_show_and_list(db: Any) -> None:
    cid = connections.create(db, "acme")
    shown = connections.show(db, cid)
    assert shown["name"] == "acme" and shown["status"] == "active"
    assert shown["zoho"]["status"] == "not_connected"
    assert shown["concur"]["status"] == "not_connected"
    assert [c["id"] for c in connections.list_all(db)] == [cid]
    with pytest.raises(ConnectorError, match="already exists"):
        connections.create(db, "acme")
    assert connections.resolve(db, "acme").id == cid


def test_connected_connection_shows_both_sides_and_pings(
    db: Any, sandbox_settings: Any, connected: int
) -> None:
    shown = connections.show(db, connected)
    zoho, concur = shown["zoho"], shown["concur"]
    assert zoho["status"] == "connected" and zoho["region"] == "us"
    assert zoho["organization_id"] == zoho_seed.MAIN_ORG_ID
    assert zoho["api_base_url"].endswith("/zoho/us/api")
    assert concur["status"] == "connected" and concur["region"] == "us2"
    assert concur["company_id"] == concur_config.SEED_US_COMPANY_ID
    assert concur["refresh_expires_at"] is not None
    checks = ping.ping(db, sandbox_settings, connected)
    assert [(c.system, c.name, c.ok) for c in checks] == [
        ("zoho", "token", True),
        ("zoho", "organization", True),
        ("zoho", "chart of accounts", True),
        ("concur", "token", True),
        ("concur", "company", True),
        ("concur", "vendors", True),
    ], [c.detail for c in checks]
    assert len(_audit(db, connected, "authorized")) == 2


def test_self_client_refuses_an_organization_the_user_cannot_see(
    db: Any, sandbox_settings: Any, admin: Any
) -> None:
    cid = connections.create(db, "wrong-org")
    grant = admin.zoho_self_client_code(scope=SCOPE)
    with pytest.raises(ConnectorError, match="not visible"):
        authorize.connect_zoho_self_client(
            db, sandbox_settings, cid, code=grant["code"], organization_id=zoho_seed.EU_ORG_ID,
            accounts_server=grant["accounts_server"],
        )  # fmt: skip
    # The refresh token it created was revoked again: no slot of the user's 20 is wasted.
    assert all(t["revoked"] for t in admin.zoho_tokens())
    assert connections.show(db, cid)["zoho"]["status"] == "not_connected"


def _parked_record(db: Any, connection_id: int) -> int:
    with db.session() as session:
        record, _ = ledger.get_or_create(
            session, connection_id=connection_id, flow="payables", source_system="zoho",
            source_type="bill", source_id="B-1", source_version="v1", target_system="concur",
        )  # fmt: skip
        ledger.transition(session, record, RecordState.NEEDS_REAUTH, owner=None, message="dead")
        return record.id


def test_revoked_zoho_token_turns_needs_reauth_once_and_reauthorizing_resumes(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    for token in admin.zoho_tokens():
        admin.zoho_revoke(id=token["id"])
    client = connections.zoho_client(db, sandbox_settings, connected)
    with pytest.raises(ReauthRequired):
        client.accounts.list()
    # Later calls fail fast without calling Zoho, and do not alert again.
    with pytest.raises(ReauthRequired, match="re-authorize"):
        connections.zoho_client(db, sandbox_settings, connected).accounts.list()
    shown = connections.show(db, connected)
    assert shown["status"] == "needs_reauth" and shown["zoho"]["status"] == "needs_reauth"
    assert shown["concur"]["status"] == "connected"
    assert len(_audit(db, connected, "needs_reauth")) == 1
    record_id = _parked_record(db, connected)

    grant = admin.zoho_self_client_code(scope=SCOPE)
    result = authorize.connect_zoho_self_client(
        db, sandbox_settings, connected, code=grant["code"],
        organization_id=zoho_seed.MAIN_ORG_ID, accounts_server=grant["accounts_server"],
    )  # fmt: skip
    assert result.resumed == [(record_id, Step.FETCH.value)]
    with db.session() as session:
        assert session.get(SyncRecord, record_id).state == RecordState.RECEIVED
        assert session.get(Connection, connected).status == "active"
    assert [c.ok for c in ping.ping(db, sandbox_settings, connected)] == [True] * 6
    assert len(_audit(db, connected, "reauthorized")) == 1


def test_reauthorizing_zoho_revokes_the_replaced_refresh_token(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    grant = admin.zoho_self_client_code(scope=SCOPE)
    authorize.connect_zoho_self_client(
        db, sandbox_settings, connected, code=grant["code"],
        organization_id=zoho_seed.MAIN_ORG_ID, accounts_server=grant["accounts_server"],
    )  # fmt: skip
    live = [t for t in admin.zoho_tokens() if not t["revoked"]]
    assert len(live) == 1


def test_delete_revokes_and_removes_secrets(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    notes = connections.delete(db, sandbox_settings, connected)
    assert any("revoked the Zoho refresh token" in n for n in notes)
    assert all(t["revoked"] for t in admin.zoho_tokens())
    with db.session() as session:
        assert session.get(Connection, connected) is None
        assert session.execute(select(Credential)).first() is None


def test_webhook_secret_is_stored_encrypted_and_rotates(db: Any, sandbox_settings: Any) -> None:
    cid = connections.create(db, "hooks")
    first = connections.webhook_secret(db, sandbox_settings, cid)
    assert connections.webhook_secret(db, sandbox_settings, cid) == first
    with db.session() as session:
        assert first not in (session.get(Connection, cid).webhook_secret_enc or "")
    assert connections.webhook_secret(db, sandbox_settings, cid, rotate=True) != first
