"""Tokens and secrets live only in the vault: never in a log record, an audit row or a column.

A whole connect + refresh + ping cycle (plus a dead credential, whose errors are the usual leak)
runs with every logger at DEBUG; then every value the sandbox issued (access and refresh
tokens, grant codes, the company request token) and every client secret is searched for in every
captured log record and in every row of every table.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from connector import authorize, connections, ping, token_refresh
from connector.db import Base
from connector.zoho.auth import SCOPE
from sandbox.concur import config as cc
from sandbox.concur.admin import ConcurAdmin
from sandbox.zoho import seed as zoho_seed
from webhooks.app import create_app


def issued_secrets(sandbox: Any) -> set[str]:
    zoho = sandbox.state.zoho
    concur = sandbox.state.extensions["concur"].store
    values = {*zoho.refresh_tokens, *zoho.access_tokens, *zoho.grants}
    values |= {*concur.refresh_tokens, *concur.access_tokens}
    for company in concur.companies.values():
        values |= set(company.request_tokens)
    return values


def test_connect_refresh_ping_cycle_leaks_no_secret(
    db: Any, sandbox: Any, sandbox_settings: Any, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: set[str] = {"sandbox-zoho-secret", "sandbox-concur-secret"}
    concur_admin = ConcurAdmin(admin.base_url)
    concur_admin.settings(rotate_refresh_tokens=True)

    # Zoho through the web flow (the EU user), Concur through the company bootstrap.
    web = create_app(sandbox_settings, db=db, config={
        "TESTING": True, "ENQUEUE_EVENT": lambda *a: None, "ENQUEUE_RECORD": lambda *a: None,
    }).test_client()  # fmt: skip
    cid = connections.create(db, "secrets")
    start = web.get(f"/oauth/zoho/start?connection={cid}").headers["Location"]
    import requests

    redirect = requests.get(f"{start}&login_hint={zoho_seed.EU_USER}", allow_redirects=False,
                            timeout=10).headers["Location"]  # fmt: skip
    assert web.get(redirect[redirect.index("/oauth/") :]).status_code == 200
    authorize.connect_concur(db, sandbox_settings, cid, company_id=cc.SEED_US_COMPANY_ID,
                             request_token=cc.SEED_US_REQUEST_TOKEN)  # fmt: skip
    seen |= issued_secrets(sandbox)

    # A self-client re-authorization (the code and the replaced refresh token are secrets too).
    second = connections.create(db, "self-client")
    grant = admin.zoho_self_client_code(scope=SCOPE)
    authorize.connect_zoho_self_client(
        db, sandbox_settings, second, code=grant["code"], organization_id=zoho_seed.MAIN_ORG_ID,
        accounts_server=grant["accounts_server"],
    )  # fmt: skip
    seen |= issued_secrets(sandbox) | {grant["code"]}

    # Refresh: forced, by the beat, and on demand after a vendor-side expiry.
    for system in ("zoho", "concur"):
        connections.token_manager(db, sandbox_settings, cid, system).refresh(force=True)
        seen |= issued_secrets(sandbox)
    with freeze_time(datetime.now(UTC) + timedelta(minutes=55), tick=True,
                     ignore=["sandbox", "werkzeug", "socketserver"]):  # fmt: skip
        token_refresh.refresh_due(db, sandbox_settings)
    seen |= issued_secrets(sandbox)
    admin.advance_clock(7300)
    assert all(c.ok for c in ping.ping(db, sandbox_settings, cid))
    seen |= issued_secrets(sandbox)

    # A dead credential: refusals and their error messages must not echo a token either.
    for token in admin.zoho_tokens():
        admin.zoho_revoke(id=token["id"])
    concur_admin.revoke_refresh_tokens(company_id=cc.SEED_US_COMPANY_ID)
    admin.advance_clock(7300)
    checks = ping.ping(db, sandbox_settings, cid)
    assert any("invalid_code" in c.detail for c in checks) and any(
        "108" in c.detail for c in checks
    )
    seen |= issued_secrets(sandbox)

    assert len(seen) > 15
    leaks: list[str] = []
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        text += " ".join(str(v) for k, v in vars(record).items() if k not in ("msg", "args"))
        leaks += [f"log {record.name}: {s[:12]}…" for s in seen if s in text]
    with db.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                text = " ".join(str(v) for v in row)
                leaks += [f"table {table.name}: {s[:12]}…" for s in seen if s in text]
    assert leaks == []
    assert any(
        r.levelno == logging.DEBUG and r.name.startswith("connector") for r in caplog.records
    )
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # DEBUG really was on
