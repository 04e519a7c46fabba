"""A re-authorization must survive the steps that were refused by the credential it replaced.

Found by the chaos suite (scenario 6, docs/chaos.md): with workers busy, an operator's
``connector connect zoho`` lands while some steps are still failing on the revoked token. Those
steps used to park their records in ``needs_reauth`` *after* the re-authorization had resumed
the parked ones, and marked the fresh credential and the connection ``needs_reauth`` again: the
connection stayed dead and the records waited for a second re-authorization that nothing asked
for.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import flows
from connector import authorize, connections, ledger
from connector.errors import ReauthRequired
from connector.models import Connection, RecordState, Step, SyncRecord
from connector.zoho.auth import SCOPE
from sandbox.zoho import seed as zoho_seed


class _RefusedThenReauthorized:
    """A flow whose fetch is refused by the dead Zoho credential while, before the refusal is
    recorded, the operator re-authorizes (the interleaving the chaos run produced)."""

    name = "reauth-race"

    def __init__(self, admin: Any) -> None:
        self.admin = admin
        self.reauthorize = True

    def queue_for(self, step: str) -> str:
        return "default"

    def fetch(self, ctx: flows.StepContext, record: SyncRecord) -> dict[str, Any]:
        client = connections.zoho_client(ctx.db, ctx.settings, record.connection_id)
        client.accounts.list()  # refused while dead; fine once re-authorized
        return {"fetched": True}

    def map(self, ctx: flows.StepContext, record: SyncRecord) -> dict[str, Any]:
        return {}

    def validate(self, ctx: flows.StepContext, record: SyncRecord) -> None:
        return None

    def find_existing(self, ctx: flows.StepContext, record: SyncRecord) -> str | None:
        return None

    def post(self, ctx: flows.StepContext, record: SyncRecord) -> str:
        return f"race-{record.id}"


class _Racing(_RefusedThenReauthorized):
    def fetch(self, ctx: flows.StepContext, record: SyncRecord) -> dict[str, Any]:
        try:
            return super().fetch(ctx, record)
        except ReauthRequired:
            if not self.reauthorize:
                raise
            self.reauthorize = False
            grant = self.admin.zoho_self_client_code(scope=SCOPE)
            authorize.connect_zoho_self_client(
                ctx.db, ctx.settings, record.connection_id, code=grant["code"],
                organization_id=zoho_seed.MAIN_ORG_ID, accounts_server=grant["accounts_server"],
            )  # fmt: skip
            raise


def _new_record(db: Any, connection_id: int) -> int:
    with db.session() as s:
        rec, _ = ledger.get_or_create(
            s, connection_id=connection_id, flow="reauth-race", source_system="zoho",
            source_type="probe", source_id=uuid.uuid4().hex, source_version="1",
            target_system="selftest",
        )  # fmt: skip
        return rec.id


def test_a_step_refused_by_the_replaced_credential_does_not_undo_the_reauthorization(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    for token in admin.zoho_tokens():
        admin.zoho_revoke(id=token["id"])
    with pytest.raises(ReauthRequired):
        connections.zoho_client(db, sandbox_settings, connected).accounts.list()
    assert connections.show(db, connected)["status"] == "needs_reauth"
    flows.FLOWS.add(flows.Flow(_Racing(admin)))
    record_id = _new_record(db, connected)

    result = flows.FLOWS.run_step(
        db, record_id, Step.FETCH, owner="w1", lease_seconds=60, settings=sandbox_settings
    )

    # The refusal was about the revoked token: the step is retried, nothing is parked.
    assert result.action == "retry" and result.next_step is Step.FETCH
    shown = connections.show(db, connected)
    assert shown["status"] == "active"
    assert shown["zoho"]["status"] == "connected"
    with db.session() as s:
        rec = s.get(SyncRecord, record_id)
        assert rec.state == RecordState.RECEIVED and rec.lease_owner is None
        assert s.get(Connection, connected).status == "active"
    # ... and the retry goes through on the new credential.
    again = flows.FLOWS.run_step(
        db, record_id, Step.FETCH, owner="w2", lease_seconds=60, settings=sandbox_settings
    )
    assert again.action == "next" and again.state == RecordState.FETCHED


def test_a_refusal_by_the_current_credential_still_parks(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    """Without a re-authorization in between, a dead credential parks the record as before."""
    for token in admin.zoho_tokens():
        admin.zoho_revoke(id=token["id"])
    flows.FLOWS.add(flows.Flow(_RefusedThenReauthorized(admin)))
    record_id = _new_record(db, connected)
    result = flows.FLOWS.run_step(
        db, record_id, Step.FETCH, owner="w1", lease_seconds=60, settings=sandbox_settings
    )
    assert result.action == "done" and result.state == RecordState.NEEDS_REAUTH
    assert connections.show(db, connected)["zoho"]["status"] == "needs_reauth"


def test_a_client_refused_before_reauthorization_does_not_mark_the_new_credential(
    db: Any, sandbox_settings: Any, connected: int, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Zoho client records a refused credential (``credential_dead``). A refusal the token
    manager had already recorded, surfacing after the operator re-authorized, must not mark the
    new credential dead (the chaos run: the connection stayed ``needs_reauth`` after
    ``connector connect zoho`` succeeded)."""
    from connector.api import oauth

    for token in admin.zoho_tokens():
        admin.zoho_revoke(id=token["id"])
    with pytest.raises(ReauthRequired):
        connections.zoho_client(db, sandbox_settings, connected).accounts.list()
    client = connections.zoho_client  # the client is built while the credential is dead ...
    dead_client = client(db, sandbox_settings, connected)
    real_access_token = oauth.TokenManager.access_token

    def access_token_then_reauthorized(self: oauth.TokenManager) -> str:
        try:
            return real_access_token(self)
        except ReauthRequired:
            # ... and the operator's re-authorization commits before the refusal is handled.
            monkeypatch.setattr(oauth.TokenManager, "access_token", real_access_token)
            grant = admin.zoho_self_client_code(scope=SCOPE)
            authorize.connect_zoho_self_client(
                db, sandbox_settings, connected, code=grant["code"],
                organization_id=zoho_seed.MAIN_ORG_ID, accounts_server=grant["accounts_server"],
            )  # fmt: skip
            raise

    monkeypatch.setattr(oauth.TokenManager, "access_token", access_token_then_reauthorized)
    with pytest.raises(ReauthRequired):
        dead_client.accounts.list()
    shown = connections.show(db, connected)
    assert shown["zoho"]["status"] == "connected" and shown["status"] == "active"
    assert dead_client.accounts.list()  # the same client works on the new credential


def test_a_401_after_refresh_marks_only_the_credential_it_was_refused_with(
    db: Any, sandbox_settings: Any, connected: int
) -> None:
    manager = connections.token_manager(db, sandbox_settings, connected, connections.ZOHO)
    current = manager.current().access_token
    manager.mark_dead("401 after a forced refresh", refused_token="an-older-token")
    assert connections.show(db, connected)["zoho"]["status"] == "connected"
    manager.mark_dead("401 after a forced refresh", refused_token=current)
    assert connections.show(db, connected)["zoho"]["status"] == "needs_reauth"
