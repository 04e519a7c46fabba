"""Issue #12 item 1: nobody can move a live connection to Zoho books they control.

Played against the real sandbox accounts server (several users and organizations) through the
Flask app: the operator has connected organization A (``finance@acme.example``); a stranger's
browser tries to re-authorize as user B (``finanz@acme.example``, who sees only the EU
organization). The sandbox's token list is the revocation record.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import func, select

from connector import authorize, connections, ping
from connector.errors import ConnectorError
from connector.models import Credential, OAuthState
from sandbox.zoho import seed as zoho_seed
from webhooks.app import create_app

AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}


@pytest.fixture
def settings(sandbox_settings: Any) -> Any:
    # The web process is not loopback-only here: /ops and the OAuth start need the password.
    return dataclasses.replace(sandbox_settings, ops_basic_auth="admin:s3cret", web_bind=None)


@pytest.fixture
def app(db: Any, settings: Any) -> Any:
    return create_app(
        settings,
        db=db,
        config={"TESTING": True, "ENQUEUE_EVENT": lambda *a, **k: None,
                "ENQUEUE_RECORD": lambda record_id, step: None},
    )  # fmt: skip


def consent_as(start_location: str, user: str) -> str:
    """The browser at Zoho: the sandbox consents as ``user`` and redirects to our callback."""
    answer = requests.get(
        start_location + "&" + urlencode({"login_hint": user}), allow_redirects=False, timeout=10
    )
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/oauth/zoho/callback"
    return f"{back.path}?{back.query}"


def zoho_tokens(admin: Any) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in admin.zoho_tokens()}


def stored_zoho(db: Any, connection_id: int) -> tuple[str | None, bytes | str | None]:
    with db.session() as session:
        org = connections.get(session, connection_id).zoho_organization_id
        cred = session.execute(
            select(Credential).where(
                Credential.connection_id == connection_id, Credential.system == "zoho"
            )
        ).scalar_one()
        return org, cred.refresh_token_enc


def concur_company(db: Any, connection_id: int) -> str | None:
    with db.session() as session:
        return connections.get(session, connection_id).concur_company_id


def test_takeover_is_refused_and_a_confirmed_change_succeeds(
    app: Any, db: Any, settings: Any, connected: int, admin: Any
) -> None:
    org_a = connections.show(db, connected)["zoho"]["organization_id"]
    assert org_a == zoho_seed.MAIN_ORG_ID
    before = stored_zoho(db, connected)
    live_before = {i for i, t in zoho_tokens(admin).items() if not t["revoked"]}
    assert len(live_before) == 1
    old_token_id = next(iter(live_before))

    # 1. An unauthenticated browser cannot even start: no state is issued.
    stranger = app.test_client()
    answer = stranger.get(f"/oauth/zoho/start?connection={connected}")
    assert answer.status_code == 401 and "Location" not in answer.headers
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(OAuthState)) == 0

    # 2. A state copied out of the operator's browser is useless in the stranger's browser,
    #    even after consenting at Zoho as user B.
    operator = app.test_client()
    started = operator.get(f"/oauth/zoho/start?connection={connected}", headers=AUTH)
    assert started.status_code == 302
    cookie = started.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/oauth/" in cookie
    callback = consent_as(started.headers["Location"], zoho_seed.EU_USER)
    refused = stranger.get(callback)
    assert refused.status_code == 400
    assert "another browser" in refused.get_data(as_text=True)
    assert stored_zoho(db, connected) == before

    # 3. Even in the operator's browser, consenting as user B changes nothing by itself: a
    #    confirmation page names old -> new, and the old token stays live.
    page = operator.get(callback)
    html = page.get_data(as_text=True)
    assert page.status_code == 409 and "Confirm the change" in html
    assert zoho_seed.MAIN_ORG_ID in html and zoho_seed.EU_ORG_ID in html
    assert page.headers["X-Frame-Options"] == "DENY"
    assert stored_zoho(db, connected) == before
    assert not zoho_tokens(admin)[old_token_id]["revoked"]
    state = html.split('name="state" value="', 1)[1].split('"', 1)[0]
    form = {"state": state, "organization_id": zoho_seed.EU_ORG_ID, "action": "confirm"}

    # The confirmation needs the operator's login ...
    assert operator.post("/oauth/zoho/confirm", data=form).status_code == 401
    # ... and the browser that started (a logged-in operator elsewhere is not enough).
    elsewhere = app.test_client().post("/oauth/zoho/confirm", data=form, headers=AUTH)
    assert elsewhere.status_code == 400
    assert stored_zoho(db, connected) == before
    assert not zoho_tokens(admin)[old_token_id]["revoked"]
    assert all(c.ok for c in ping.ping_zoho(db, settings, connected))  # still org A, working

    # 4. The operator confirms that exact change: new credentials stored, then old revoked.
    done = operator.post("/oauth/zoho/confirm", data=form, headers=AUTH)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert "Zoho Books connected" in done.get_data(as_text=True)
    org, refresh = stored_zoho(db, connected)
    assert org == zoho_seed.EU_ORG_ID and refresh != before[1]
    tokens = zoho_tokens(admin)
    assert tokens[old_token_id]["revoked"]
    live = [t for t in tokens.values() if not t["revoked"]]
    assert [t["user"] for t in live] == [zoho_seed.EU_USER]
    assert all(c.ok for c in ping.ping_zoho(db, settings, connected))
    audit = connections.show(db, connected)
    assert audit["zoho"]["organization_id"] == zoho_seed.EU_ORG_ID
    # The confirmation is single-use.
    again = operator.post("/oauth/zoho/confirm", data=form, headers=AUTH)
    assert again.status_code == 400 and "already used" in again.get_data(as_text=True)


def test_cancelled_change_keeps_the_connection_and_revokes_the_new_login(
    app: Any, db: Any, connected: int, admin: Any
) -> None:
    before = stored_zoho(db, connected)
    operator = app.test_client()
    started = operator.get(f"/oauth/zoho/start?connection={connected}", headers=AUTH)
    html = operator.get(consent_as(started.headers["Location"], zoho_seed.EU_USER)).get_data(
        as_text=True
    )
    state = html.split('name="state" value="', 1)[1].split('"', 1)[0]
    cancelled = operator.post(
        "/oauth/zoho/confirm", data={"state": state, "action": "cancel"}, headers=AUTH
    )
    assert cancelled.status_code == 200 and "cancelled" in cancelled.get_data(as_text=True)
    assert stored_zoho(db, connected) == before
    by_user = {t["user"]: t for t in admin.zoho_tokens()}
    assert by_user[zoho_seed.EU_USER]["revoked"] and not by_user[zoho_seed.MAIN_USER]["revoked"]


def test_same_organization_reauthorization_needs_no_confirmation(
    app: Any, db: Any, connected: int, admin: Any
) -> None:
    operator = app.test_client()
    started = operator.get(f"/oauth/zoho/start?connection={connected}", headers=AUTH)
    answer = operator.get(consent_as(started.headers["Location"], zoho_seed.MAIN_USER))
    assert answer.status_code == 200 and "Zoho Books connected" in answer.get_data(as_text=True)
    assert connections.show(db, connected)["zoho"]["organization_id"] == zoho_seed.MAIN_ORG_ID
    assert sum(not t["revoked"] for t in admin.zoho_tokens()) == 1  # the replaced one revoked


def test_organization_choice_is_bound_to_the_browser(app: Any, db: Any) -> None:
    cid = connections.create(db, "fresh")
    operator = app.test_client()
    started = operator.get(f"/oauth/zoho/start?connection={cid}", headers=AUTH)
    page = operator.get(consent_as(started.headers["Location"], zoho_seed.MAIN_USER))
    html = page.get_data(as_text=True)
    assert "Choose the Zoho Books organization" in html
    # The choice page gets the same security headers as /ops.
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    state = html.split('name="state" value="', 1)[1].split('"', 1)[0]
    form = {"state": state, "organization_id": zoho_seed.LABS_ORG_ID}
    assert app.test_client().post("/oauth/zoho/organization", data=form).status_code == 400
    chosen = operator.post("/oauth/zoho/organization", data=form)
    assert chosen.status_code == 200
    assert connections.show(db, cid)["zoho"]["organization_id"] == zoho_seed.LABS_ORG_ID


def test_redirect_uri_never_comes_from_the_host_header(app: Any, db: Any, settings: Any) -> None:
    cid = connections.create(db, "hosted")
    started = app.test_client().get(
        f"/oauth/zoho/start?connection={cid}",
        headers={**AUTH, "Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    query = parse_qs(urlsplit(started.headers["Location"]).query)
    assert query["redirect_uri"] == [f"{settings.public_url}/oauth/zoho/callback"]


@pytest.mark.parametrize(
    "accounts_server",
    [
        "https://accounts.evil.example",
        "https://accounts.zoho.com.evil.example",
        "https://accounts.zoho.com/evil",
        "https://accounts.zoho.com:8443",
        "https://accounts.zoho.com@evil.example",
        "https://evil.example#@accounts.zoho.com",
        "https://accounts.zoho.com?x=1",
        "http://accounts.zoho.com",
        "https://www.zohoapis.com",
        "//accounts.zoho.com",
    ],
)
def test_accounts_server_must_be_exactly_a_zoho_accounts_host(
    app: Any, db: Any, connected: int, accounts_server: str
) -> None:
    before = stored_zoho(db, connected)
    operator = app.test_client()
    started = operator.get(f"/oauth/zoho/start?connection={connected}", headers=AUTH)
    parts = urlsplit(consent_as(started.headers["Location"], zoho_seed.MAIN_USER))
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["accounts-server"] = accounts_server
    answer = operator.get(f"{parts.path}?{urlencode(query)}")
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert "refusing" in answer.get_data(as_text=True)
    assert stored_zoho(db, connected) == before


def test_cli_paths_refuse_another_tenant_without_the_exact_confirmation(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    from connector.zoho.auth import SCOPE

    before = stored_zoho(db, connected)
    code = admin.zoho_self_client_code(SCOPE, user=zoho_seed.EU_USER)
    for replace in (None, "someone-else"):
        with pytest.raises(ConnectorError, match="--replace-organization 10234695"):
            authorize.connect_zoho_self_client(
                db, sandbox_settings, connected, code=code["code"],
                organization_id=zoho_seed.EU_ORG_ID, accounts_server=code["accounts_server"],
                replace_organization=replace,
            )  # fmt: skip
    assert stored_zoho(db, connected) == before
    authorize.connect_zoho_self_client(
        db, sandbox_settings, connected, code=code["code"], organization_id=zoho_seed.EU_ORG_ID,
        accounts_server=code["accounts_server"], replace_organization=zoho_seed.MAIN_ORG_ID,
    )  # fmt: skip
    assert stored_zoho(db, connected)[0] == zoho_seed.EU_ORG_ID

    company = concur_company(db, connected)
    assert company
    with pytest.raises(ConnectorError, match=f"--replace-company {company}"):
        authorize.connect_concur(
            db, sandbox_settings, connected, company_id="00000000-0000-0000-0000-000000000001",
            request_token="whatever",
        )  # fmt: skip
    assert concur_company(db, connected) == company
