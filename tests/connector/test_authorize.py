"""``connector.authorize``: a held change of organization never leaves a live orphan token."""

from __future__ import annotations

from typing import Any

from connector import authorize, connections, oauth_state
from connector.zoho.auth import SCOPE
from sandbox.zoho import seed as zoho_seed


def test_an_unanswered_change_confirmation_is_revoked_once_it_expires(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    code = admin.zoho_self_client_code(SCOPE, user=zoho_seed.EU_USER)
    result = authorize.complete_zoho_web(
        db, sandbox_settings, connected, code=code["code"],
        accounts_server=code["accounts_server"], location=None,
        redirect_uri="http://127.0.0.1:5999/oauth/zoho/callback",
    )  # fmt: skip
    assert (
        result.pending is not None and result.pending.old_organization_id == zoho_seed.MAIN_ORG_ID
    )
    assert connections.show(db, connected)["zoho"]["organization_id"] == zoho_seed.MAIN_ORG_ID
    # Still answerable: nothing is revoked.
    oauth_state.issue(db, sandbox_settings, connected, oauth_state.CONFIRM_CHANGE,
                      data=result.pending.as_data())  # fmt: skip
    assert authorize.revoke_abandoned_changes(db, sandbox_settings) == 0
    # Expired unanswered: the new login (user B) is revoked, exactly once; A's stays live.
    oauth_state.issue(db, sandbox_settings, connected, oauth_state.CONFIRM_CHANGE,
                      data=result.pending.as_data(), ttl=-1)  # fmt: skip
    assert authorize.revoke_abandoned_changes(db, sandbox_settings) == 1
    assert authorize.revoke_abandoned_changes(db, sandbox_settings) == 0
    by_user = {t["user"]: t for t in admin.zoho_tokens()}
    assert by_user[zoho_seed.EU_USER]["revoked"] and not by_user[zoho_seed.MAIN_USER]["revoked"]
