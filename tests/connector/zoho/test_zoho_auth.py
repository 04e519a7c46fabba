"""Zoho authorization: every data centre routes right, the throttle holds, no extra tokens."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from freezegun import freeze_time

from connector import authorize, connections
from connector.config import Settings
from connector.errors import ApiError, RateLimitedError, UntrustedHostError
from connector.limits.ratelimit import Limit
from connector.models import Credential
from connector.zoho import auth as zoho_auth
from connector.zoho.auth import DATA_CENTRES, SCOPE

TEST_KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


def real_settings(db: Any, tmp_path: Path) -> Settings:
    """A production-shaped connector: real Zoho hosts only (no sandbox)."""
    return Settings(
        database_url=db.url, redis_url=None, secret_keys=(TEST_KEY,), embedded=True,
        var_dir=tmp_path, zoho_client_id="real-client", zoho_client_secret="real-secret-value",
    )  # fmt: skip


def zoho_token() -> str:
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


@pytest.mark.parametrize("dc", list(DATA_CENTRES))
@responses.activate
def test_each_data_centre_exchanges_refreshes_and_calls_at_its_own_hosts(
    db: Any, tmp_path: Path, dc: str
) -> None:
    accounts, api = DATA_CENTRES[dc]
    settings = real_settings(db, tmp_path)
    access, refresh, access2 = zoho_token(), zoho_token(), zoho_token()
    exchange = responses.post(
        f"{accounts}/oauth/v2/token",
        match=[responses.matchers.urlencoded_params_matcher(
            {"grant_type": "authorization_code", "code": "1000.code", "client_id": "real-client",
             "client_secret": "real-secret-value", "redirect_uri": "https://c.example/cb"})],
        json={"access_token": access, "refresh_token": refresh, "api_domain": api,
              "token_type": "Bearer", "expires_in": 3600},
    )  # fmt: skip
    responses.get(
        f"{api}/books/v3/organizations",
        json={"code": 0, "organizations": [{"organization_id": "77", "name": f"Org {dc}"}]},
    )
    cid = connections.create(db, f"dc-{dc}")
    result = authorize.complete_zoho_web(
        db, settings, cid, code="1000.code", accounts_server=accounts, location=dc,
        redirect_uri="https://c.example/cb",
    )  # fmt: skip
    assert result.organization_id == "77" and exchange.call_count == 1
    shown = connections.show(db, cid)["zoho"]
    assert (shown["region"], shown["api_base_url"], shown["auth_base_url"]) == (dc, api, accounts)

    refresh_call = responses.post(
        f"{accounts}/oauth/v2/token",
        match=[responses.matchers.urlencoded_params_matcher(
            {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "real-client",
             "client_secret": "real-secret-value"})],
        json={"access_token": access2, "api_domain": api, "expires_in": 3600},
    )  # fmt: skip
    books = responses.get(
        f"{api}/books/v3/chartofaccounts", json={"code": 0, "chartofaccounts": []}
    )
    with freeze_time("2099-01-01"):  # our clock: long after the token expired
        client = connections.zoho_client(db, settings, cid)
        client.accounts.list()
    assert refresh_call.call_count == 1
    sent = books.calls[0].request
    assert sent.headers["Authorization"] == f"Zoho-oauthtoken {access2}"
    assert parse_qs(urlsplit(sent.url).query)["organization_id"] == ["77"]


def test_canada_uses_zohocloud_for_accounts() -> None:
    assert DATA_CENTRES["ca"] == ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca")
    assert zoho_auth.location_of("https://accounts.zohocloud.ca") == "ca"


@responses.activate
def test_an_untrusted_accounts_server_never_receives_the_secret(db: Any, tmp_path: Path) -> None:
    settings = real_settings(db, tmp_path)
    cid = connections.create(db, "evil")
    with pytest.raises(UntrustedHostError, match=r"accounts\.evil\.example"):
        authorize.complete_zoho_web(
            db, settings, cid, code="1000.code", accounts_server="https://accounts.evil.example",
            location="us", redirect_uri="https://c.example/cb",
        )  # fmt: skip
    assert len(responses.calls) == 0


@responses.activate
def test_an_untrusted_api_domain_is_refused_and_nothing_is_stored(db: Any, tmp_path: Path) -> None:
    settings = real_settings(db, tmp_path)
    responses.post("https://accounts.zoho.eu/oauth/v2/token", json={
        "access_token": zoho_token(), "refresh_token": zoho_token(),
        "api_domain": "https://www.zohoapis.eu.evil.example", "expires_in": 3600})  # fmt: skip
    cid = connections.create(db, "evil-api")
    with pytest.raises(UntrustedHostError, match="not a Zoho domain"):
        authorize.complete_zoho_web(
            db, settings, cid, code="1000.code", accounts_server="https://accounts.zoho.eu",
            location="eu", redirect_uri="https://c.example/cb",
        )  # fmt: skip
    with db.session() as session:
        assert session.query(Credential).count() == 0


def test_authorization_url_asks_for_offline_access_and_explicit_scopes(
    sandbox_settings: Any,
) -> None:
    url = zoho_auth.authorization_url(sandbox_settings, redirect_uri="https://c.example/cb",
                                      state="abc")  # fmt: skip
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{sandbox_settings.zoho_accounts_url}/oauth/v2/auth?")
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    scopes = query["scope"][0].split(",")
    assert "ZohoBooks.accountants.READ" in scopes and "ZohoBooks.settings.READ" in scopes
    assert not any("fullaccess" in s.lower() for s in scopes)


def test_token_creation_never_exceeds_our_cap(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    manager = connections.token_manager(db, sandbox_settings, connected, "zoho")
    for _ in range(zoho_auth.TOKEN_CREATION_LIMIT.requests):
        assert manager.refresh(force=True).refreshed
    with pytest.raises(RateLimitedError, match="capped") as caught:
        manager.refresh(force=True)
    assert 0 < caught.value.retry_after <= 600
    assert (
        sum(t["refreshes"] for t in admin.zoho_tokens()) == zoho_auth.TOKEN_CREATION_LIMIT.requests
    )
    assert admin.stats()["rate_limited_total"] == 0  # Zoho never had to say "Access Denied"
    assert connections.show(db, connected)["zoho"]["status"] == "connected"


def test_zoho_throttle_answer_is_a_wait_not_a_dead_credential(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    # Without our cap, Zoho itself refuses the 11th token in 10 minutes ("Access Denied").
    manager = connections.token_manager(db, sandbox_settings, connected, "zoho")
    manager.refresher = zoho_auth.ZohoRefresher(
        sandbox_settings, connections.limiter(sandbox_settings), limit=Limit(100, 600)
    )
    with pytest.raises(RateLimitedError, match="token creation throttled"):
        for _ in range(11):
            manager.refresh(force=True)
    assert connections.show(db, connected)["zoho"]["status"] == "connected"


def test_refresh_never_creates_refresh_tokens(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    manager = connections.token_manager(db, sandbox_settings, connected, "zoho")
    refresh_token = manager.current().refresh_token
    for _ in range(3):
        manager.refresh(force=True)
    tokens = admin.zoho_tokens()
    assert len(tokens) == 1 and not tokens[0]["revoked"] and tokens[0]["refreshes"] == 3
    assert manager.current().refresh_token == refresh_token


def test_self_client_in_another_data_centre(db: Any, sandbox_settings: Any, admin: Any) -> None:
    from sandbox.zoho import seed as zoho_seed

    cid = connections.create(db, "eu")
    grant = admin.zoho_self_client_code(scope=SCOPE, user=zoho_seed.EU_USER)
    authorize.connect_zoho_self_client(
        db, sandbox_settings, cid, code=grant["code"], organization_id=zoho_seed.EU_ORG_ID,
        accounts_server=grant["accounts_server"],
    )  # fmt: skip
    shown = connections.show(db, cid)["zoho"]
    assert shown["region"] == "eu" and shown["api_base_url"].endswith("/zoho/eu/api")
    client = connections.zoho_client(db, sandbox_settings, cid)
    assert client.organizations.get()["organization_id"] == zoho_seed.EU_ORG_ID


# --------------------------------------------------------------------------- issue #12


@responses.activate
def test_a_307_from_the_token_endpoint_does_not_resend_the_client_secret(
    db: Any, tmp_path: Path
) -> None:
    settings = real_settings(db, tmp_path)
    responses.post(
        "https://accounts.zoho.eu/oauth/v2/token",
        status=307,
        headers={"Location": "https://collector.example/oauth/v2/token"},
    )
    elsewhere = responses.post("https://collector.example/oauth/v2/token", json={})
    with pytest.raises(ApiError) as info:
        zoho_auth.exchange_code(
            settings, accounts_server="https://accounts.zoho.eu", code="1000.code",
            client_id="real-client", client_secret="real-secret-value",
        )  # fmt: skip
    assert elsewhere.call_count == 0 and len(responses.calls) == 1
    assert "307" in str(info.value) and "collector.example" in str(info.value)
    assert "real-secret-value" not in str(info.value)


@pytest.mark.parametrize("dc", list(DATA_CENTRES))
def test_each_known_accounts_host_is_accepted_exactly(db: Any, tmp_path: Path, dc: str) -> None:
    accounts = DATA_CENTRES[dc][0]
    settings = real_settings(db, tmp_path)
    assert zoho_auth.check_accounts_server(accounts, settings) == accounts
    assert zoho_auth.check_accounts_server(accounts + "/", settings) == accounts


@pytest.mark.parametrize(
    "value",
    [
        "https://accounts.zoho.com/oauth",
        "https://accounts.zoho.com:443",
        "https://ACCOUNTS.zoho.com.evil.example",
        "https://x@accounts.zoho.com",
        "https://accounts.zoho.com\\@evil.example",
        "https://accounts.zoho.com%2F@evil.example",
        "https://accounts.zoho.com/?next=x",
        "http://accounts.zoho.com",
        "https://foo.zoho.com",
        "",
        "http://127.0.0.1:8090/zoho/us/accounts",  # sandbox host, but sandbox mode is off
    ],
)
def test_accounts_server_from_the_browser_is_refused(db: Any, tmp_path: Path, value: str) -> None:
    with pytest.raises(UntrustedHostError):
        zoho_auth.check_accounts_server(value, real_settings(db, tmp_path))


def test_sandbox_accounts_servers_are_accepted_only_in_sandbox_mode(
    db: Any, tmp_path: Path
) -> None:
    import dataclasses

    settings = dataclasses.replace(real_settings(db, tmp_path), sandbox_url="http://127.0.0.1:8090")
    good = "http://127.0.0.1:8090/zoho/eu/accounts"
    assert zoho_auth.check_accounts_server(good, settings) == good
    for bad in ("http://127.0.0.1:8090/zoho/eu/accounts/x", "http://127.0.0.1:8090/other",
                "http://127.0.0.1:8091/zoho/eu/accounts", "http://127.0.0.1:8090/zoho/xx/accounts"):  # fmt: skip
        with pytest.raises(UntrustedHostError):
            zoho_auth.check_accounts_server(bad, settings)
