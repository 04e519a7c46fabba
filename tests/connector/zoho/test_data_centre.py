"""The data centre is recorded however Zoho was authorized, and ``ping`` names the URL it called.

Issue #14 item 12: ``connector ping`` must say ``eu`` (not ``?``) for a connection authorized
with ``connector connect zoho --accounts-server https://accounts.zoho.eu`` or through the web
flow (``location=eu``), rows stored before regions were kept get one inferred from their hosts,
and a failing check prints ``METHOD URL -> status: vendor message``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import responses
from click.testing import CliRunner

from cli.main import main
from connector import config, connections, ping
from connector.api.oauth import CredentialView
from connector.config import Settings
from connector.models import Credential
from connector.vault import Vault
from connector.zoho import auth as zoho_auth
from webhooks.app import create_app

TEST_KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="
EU_ACCOUNTS, EU_API = zoho_auth.DATA_CENTRES["eu"]
ORG = "20099887"


def _token() -> str:
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


def _mock_eu_zoho(*, org_status: int = 200) -> dict[str, Any]:
    """Zoho's EU data centre as ``responses`` mocks: token, organizations, chart of accounts."""
    refresh = _token()
    calls = {
        "token": responses.post(
            f"{EU_ACCOUNTS}/oauth/v2/token",
            json={
                "access_token": _token(),
                "refresh_token": refresh,
                "api_domain": EU_API,
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        ),
        "list": responses.get(
            f"{EU_API}/books/v3/organizations",
            json={"code": 0, "organizations": [{"organization_id": ORG, "name": "Acme GmbH"}]},
        ),
    }
    if org_status == 200:
        body: dict[str, Any] = {"code": 0, "organization": {"organization_id": ORG, "name": "Acme"}}
    else:
        body = {"code": 1002, "message": "The organization is not active in this data centre."}
    calls["get"] = responses.get(
        f"{EU_API}/books/v3/organizations/{ORG}", status=org_status, json=body
    )
    calls["accounts"] = responses.get(
        f"{EU_API}/books/v3/chartofaccounts", json={"code": 0, "chartofaccounts": [{}]}
    )
    return calls


@pytest.fixture
def real_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The CLI of a production-shaped connector: real Zoho hosts, no sandbox."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'connector.sqlite'}",
        "CONNECTOR_SECRET_KEY": TEST_KEY,
        "CONNECTOR_VAR_DIR": str(tmp_path / "var"),
        "ZOHO_CLIENT_ID": "real-client",
        "ZOHO_CLIENT_SECRET": "real-secret-value",
        "CONNECTOR_PUBLIC_URL": "https://connector.example",
    }
    for key in [k for k in os.environ if k.startswith(("ZOHO_", "CONCUR_", "CONNECTOR_"))]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from connector.migrate import upgrade

    upgrade(env["DATABASE_URL"])
    config.get_settings(reload=True)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(main, list(args))
        assert result.exit_code == code, (result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    yield run
    config._cached = None


def _zoho_line(output: str, check: str) -> str:
    return next(line for line in output.splitlines() if " zoho " in line and check in line)


@responses.activate
def test_cli_authorization_at_the_eu_accounts_server_pings_eu(real_cli: Any) -> None:
    calls = _mock_eu_zoho()
    cid = real_cli("connections", "create", "eu-cli").output.strip()
    real_cli("connect", "zoho", cid, "--code", "1000.code", "--accounts-server", EU_ACCOUNTS,
             "--organization-id", ORG)  # fmt: skip
    assert calls["token"].call_count == 1
    shown = json.loads(real_cli("connections", "show", cid, "--json").output)["zoho"]
    assert shown["region"] == "eu"
    out = real_cli("ping", cid, code=1).output  # the Concur side is not connected: exit 1
    assert "(eu data centre)" in _zoho_line(out, "token")
    assert " ok " in _zoho_line(out, "chart of accounts")


@responses.activate
def test_a_failing_check_names_the_url_it_called_and_the_vendors_message(real_cli: Any) -> None:
    _mock_eu_zoho(org_status=400)
    cid = real_cli("connections", "create", "eu-failing").output.strip()
    real_cli("connect", "zoho", cid, "--code", "1000.code", "--accounts-server", EU_ACCOUNTS,
             "--organization-id", ORG)  # fmt: skip
    line = _zoho_line(real_cli("ping", cid, code=1).output, "organization")
    assert "FAIL" in line
    assert f"GET {EU_API}/books/v3/organizations/{ORG} -> 400" in line
    assert "The organization is not active in this data centre." in line
    assert "?" not in line.split("->")[0]  # no query string in the URL shown


@responses.activate
def test_a_refused_refresh_names_the_accounts_url(real_cli: Any) -> None:
    _mock_eu_zoho()
    cid = real_cli("connections", "create", "eu-dead").output.strip()
    real_cli("connect", "zoho", cid, "--code", "1000.code", "--accounts-server", EU_ACCOUNTS,
             "--organization-id", ORG)  # fmt: skip
    responses.replace(
        responses.POST, f"{EU_ACCOUNTS}/oauth/v2/token", json={"error": "invalid_code"}
    )
    settings = config.get_settings()
    from connector.db import get_database

    db = get_database(settings.database_url)
    with db.session() as session:  # the access token is spent: ping must refresh
        row = connections.credential(session, int(cid), connections.ZOHO)
        assert row is not None
        row.access_expires_at = None
    line = _zoho_line(real_cli("ping", cid, code=1).output, "token")
    assert "ReauthRequired" in line and "invalid_code" in line
    assert f"POST {EU_ACCOUNTS}/oauth/v2/token" in line
    # Next time (already marked dead, nothing called) it names where refreshes go.
    again = _zoho_line(real_cli("ping", cid, code=1).output, "token")
    assert EU_ACCOUNTS in again


@responses.activate
def test_web_flow_with_location_eu_pings_eu(db: Any, tmp_path: Path) -> None:
    _mock_eu_zoho()
    settings = Settings(
        database_url=db.url, redis_url=None, secret_keys=(TEST_KEY,), embedded=True,
        var_dir=tmp_path, zoho_client_id="real-client", zoho_client_secret="real-secret-value",
        public_url="http://127.0.0.1:5999", web_bind="127.0.0.1:5999",
    )  # fmt: skip
    app = create_app(settings, db=db, config={"TESTING": True,
                     "ENQUEUE_EVENT": lambda *a, **k: None, "ENQUEUE_RECORD": lambda *a: None})  # fmt: skip
    web = app.test_client()
    cid = connections.create(db, "eu-web")
    started = web.get(f"/oauth/zoho/start?connection={cid}")
    assert started.status_code == 302, started.get_data(as_text=True)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    # What Zoho's redirect carries for an EU user (zoho-books.md §1.2).
    query = urlencode({"code": "1000.code", "state": state, "location": "eu",
                       "accounts-server": EU_ACCOUNTS})  # fmt: skip
    answer = web.get(f"/oauth/zoho/callback?{query}")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert connections.show(db, cid)["zoho"]["region"] == "eu"
    token = ping.ping_zoho(db, settings, cid)[0]
    assert token.ok and "(eu data centre)" in token.detail


def _view(**values: Any) -> CredentialView:
    base: dict[str, Any] = dict.fromkeys(CredentialView.__dataclass_fields__)
    base.update(id=1, connection_id=1, status="connected")
    base.update(values)
    return CredentialView(**base)


def test_region_of_infers_the_data_centre_of_a_row_without_one(db: Any) -> None:
    cid = connections.create(db, "old-row")
    vault = Vault((TEST_KEY,))
    with db.session() as session:
        session.add(Credential(connection_id=cid, system="zoho", region=None,
                               api_base_url=EU_API, auth_base_url=EU_ACCOUNTS,
                               refresh_token_enc=vault.encrypt(_token())))  # fmt: skip
        session.add(Credential(connection_id=cid, system="concur", region="",
                               api_base_url="https://eu2.api.concursolutions.com",
                               refresh_token_enc=vault.encrypt(_token())))  # fmt: skip
    shown = connections.show(db, cid)
    assert (shown["zoho"]["region"], shown["concur"]["region"]) == ("eu", "eu2")
    # The sandbox lays data centres out as paths; an unknown host stays unknown.
    sandbox = "http://127.0.0.1:8090/zoho/au"
    assert connections.region_of(_view(system="zoho", api_base_url=f"{sandbox}/api")) == "au"
    assert connections.region_of(_view(system="zoho", auth_base_url=f"{sandbox}/accounts")) == "au"
    assert connections.region_of(_view(system="zoho", api_base_url="https://x.example")) is None
    assert connections.region_of(_view(system="zoho", region="in")) == "in"


def test_data_centre_prefers_the_hosts_and_keeps_only_known_codes() -> None:
    dc = zoho_auth.data_centre
    assert dc(api_domain="https://www.zohoapis.eu") == "eu"
    assert dc(accounts_server="https://accounts.zoho.com.au/") == "au"
    assert dc(accounts_server="https://accounts.zohocloud.ca") == "ca"
    assert dc(location="EU") == "eu"
    # The hosts say where calls go; a location that disagrees (or is forged) does not win.
    assert dc(api_domain="https://www.zohoapis.in", location="eu") == "in"
    assert dc(location="<script>") is None and dc() is None


@responses.activate
def test_a_refresh_fills_the_region_of_an_older_row(db: Any, tmp_path: Path) -> None:
    settings = Settings(
        database_url=db.url, redis_url=None, secret_keys=(TEST_KEY,), embedded=True,
        var_dir=tmp_path, zoho_client_id="real-client", zoho_client_secret="real-secret-value",
    )  # fmt: skip
    responses.post(f"{EU_ACCOUNTS}/oauth/v2/token",
                   json={"access_token": _token(), "api_domain": EU_API, "expires_in": 3600})  # fmt: skip
    cid = connections.create(db, "refresh-fills")
    vault = Vault((TEST_KEY,))
    with db.session() as session:
        session.add(Credential(connection_id=cid, system="zoho", region=None, status="connected",
                               api_base_url=EU_API, auth_base_url=EU_ACCOUNTS,
                               refresh_token_enc=vault.encrypt(_token())))  # fmt: skip
    manager = connections.token_manager(db, settings, cid, connections.ZOHO)
    manager.access_token()
    with db.session() as session:
        row = connections.credential(session, cid, connections.ZOHO)
        assert row is not None and row.region == "eu"
