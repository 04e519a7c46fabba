"""Zoho webhook secrets that Zoho Books accepts, and the separate delivery token (#14.1, #12.2)."""

from __future__ import annotations

import re
from typing import Any

from connector import connections, webhook_secrets
from connector.models import AuditEvent, Connection
from connector.vault import Vault

ZOHO_RULE = re.compile(r"[A-Za-z0-9]{40,50}")


def test_created_and_rotated_secrets_follow_zohos_rule(db: Any, sandbox_settings: Any) -> None:
    """token_urlsafe(32) put '-' or '_' in three secrets out of four; twenty draws catch it."""
    cid = connections.create(db, "rule")
    first = connections.webhook_secret(db, sandbox_settings, cid)
    drawn = [first] + [
        connections.webhook_secret(db, sandbox_settings, cid, rotate=True) for _ in range(20)
    ]
    assert all(ZOHO_RULE.fullmatch(s) for s in drawn), drawn
    assert len(set(drawn)) == len(drawn)
    assert connections.webhook_secret(db, sandbox_settings, cid) == drawn[-1]


def test_token_is_derived_one_way_and_rotates_with_the_secret(
    db: Any, sandbox_settings: Any
) -> None:
    cid = connections.create(db, "token")
    creds = webhook_secrets.webhook_credentials(db, sandbox_settings, cid)
    assert creds.change == "created" and creds.token != creds.secret
    assert creds.secret not in creds.token and creds.token == webhook_secrets.derive_token(
        creds.secret
    )
    again = webhook_secrets.webhook_credentials(db, sandbox_settings, cid)
    assert (again.secret, again.token, again.change) == (creds.secret, creds.token, None)
    rotated = webhook_secrets.webhook_credentials(db, sandbox_settings, cid, rotate=True)
    assert rotated.change == "rotated" and rotated.token != creds.token


def test_a_stored_secret_zoho_would_refuse_is_replaced(db: Any, sandbox_settings: Any) -> None:
    """Secrets of earlier versions (token_urlsafe) cannot be configured in Zoho Books."""
    legacy = "abc-DEF_ghi-JKL_mno-PQR_stu-VWX_yz0-123"
    with db.session() as s:
        conn = Connection(
            name="legacy", webhook_secret_enc=Vault(sandbox_settings.secret_keys).encrypt(legacy)
        )
        s.add(conn)
        s.flush()
        cid = conn.id
    creds = webhook_secrets.webhook_credentials(db, sandbox_settings, cid)
    assert creds.change == "replaced" and ZOHO_RULE.fullmatch(creds.secret)
    with db.session() as s:
        outcomes = [a.outcome for a in s.query(AuditEvent).filter_by(connection_id=cid)]
    assert outcomes == ["webhook_secret_replaced"]
