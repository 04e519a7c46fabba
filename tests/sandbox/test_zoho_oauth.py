"""Zoho Accounts: consent redirect, code and refresh grants, throttles, caps and revocation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from sandbox.zoho.seed import EU_ORG_ID as EU_ORG
from sandbox.zoho.store import SANDBOX_CLIENT_ID as CLIENT_ID
from sandbox.zoho.store import SANDBOX_CLIENT_SECRET as CLIENT_SECRET

if TYPE_CHECKING:
    from tests.sandbox.conftest import Zoho

REDIRECT = "http://127.0.0.1:9/oauth/callback"


def test_consent_redirects_with_code_location_accounts_server_and_state(zoho_anon: Zoho) -> None:
    redirect = zoho_anon.authorize(state="abc123")
    assert set(redirect) == {"code", "location", "accounts-server", "state"}
    assert redirect["location"] == "us"
    assert redirect["accounts-server"] == f"{zoho_anon.base}/zoho/us/accounts"
    assert redirect["state"] == "abc123"
    assert redirect["code"].startswith("1000.")


def test_eu_user_starting_at_us_server_is_sent_to_eu(zoho_anon: Zoho) -> None:
    redirect = zoho_anon.authorize(user="finanz@acme.example")
    assert redirect["location"] == "eu"
    assert redirect["accounts-server"].endswith("/zoho/eu/accounts")
    body = zoho_anon.exchange(redirect)
    assert body["api_domain"] == f"{zoho_anon.base}/zoho/eu/api"
    orgs = zoho_anon.call(
        "GET", "/organizations", org=None, token=body["access_token"], dc="eu"
    ).json()
    assert [o["organization_id"] for o in orgs["organizations"]] == [EU_ORG]


def test_consent_errors(zoho_anon: Zoho) -> None:
    base = zoho_anon.accounts()
    r = requests.get(
        f"{base}/oauth/v2/auth",
        params={
            "client_id": "nope",
            "scope": "x",
            "redirect_uri": REDIRECT,
            "response_type": "code",
        },
        allow_redirects=False,
    )
    assert r.status_code == 400 and "Invalid Client" in r.text
    denied = zoho_anon.authorize(sandbox_deny="1")
    assert denied == {"error": "access_denied", "state": "s1"}


def test_code_exchange_response_shape(zoho_anon: Zoho) -> None:
    body = zoho_anon.exchange(zoho_anon.authorize())
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert body["api_domain"] == f"{zoho_anon.base}/zoho/us/api"
    assert body["refresh_token"].startswith("1000.")
    assert body["scope"] == "ZohoBooks.fullaccess.all"


def test_online_access_gives_no_refresh_token(zoho_anon: Zoho) -> None:
    body = zoho_anon.exchange(zoho_anon.authorize(access_type="online"))
    assert "refresh_token" not in body and body["access_token"]


def test_code_is_single_use_dc_bound_and_short_lived(zoho_anon: Zoho, admin) -> None:
    redirect = zoho_anon.authorize()
    ok = zoho_anon.token(
        redirect["accounts-server"], grant_type="authorization_code", code=redirect["code"]
    )
    assert "access_token" in ok.json()
    again = zoho_anon.token(
        redirect["accounts-server"], grant_type="authorization_code", code=redirect["code"]
    )
    assert again.status_code == 200 and again.json() == {"error": "invalid_code"}

    other_dc = zoho_anon.authorize()
    r = zoho_anon.token(
        zoho_anon.accounts("eu"), grant_type="authorization_code", code=other_dc["code"]
    )
    assert r.json() == {"error": "invalid_code"}

    late = zoho_anon.authorize()
    admin.advance_clock(61)
    r = zoho_anon.token(late["accounts-server"], grant_type="authorization_code", code=late["code"])
    assert r.json() == {"error": "invalid_code"}


def test_client_credentials_are_checked(zoho_anon: Zoho) -> None:
    redirect = zoho_anon.authorize()
    url = f"{redirect['accounts-server']}/oauth/v2/token"
    r = requests.post(
        url,
        data={
            "grant_type": "authorization_code",
            "code": redirect["code"],
            "client_id": "someone-else",
            "client_secret": "x",
        },
    )
    assert r.json() == {"error": "invalid_client"}
    r = requests.post(
        url,
        data={
            "grant_type": "authorization_code",
            "code": redirect["code"],
            "client_id": CLIENT_ID,
            "client_secret": "wrong",
        },
    )
    assert r.json() == {"error": "invalid_client_secret"}
    r = requests.post(
        url, data={"grant_type": "password", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )
    assert r.json() == {"error": "unsupported_grant_type"}


def test_token_parameters_in_query_string_are_accepted(zoho_anon: Zoho) -> None:
    redirect = zoho_anon.authorize()
    r = requests.post(
        f"{redirect['accounts-server']}/oauth/v2/token",
        params={
            "grant_type": "authorization_code",
            "code": redirect["code"],
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT,
        },
    )
    assert "access_token" in r.json()


def test_refresh_grant(zoho: Zoho, admin) -> None:
    body = zoho.refresh()
    assert set(body) == {"access_token", "scope", "api_domain", "token_type", "expires_in"}
    assert body["expires_in"] == 3600
    assert zoho.get("/organizations", org=None, token=body["access_token"]).status_code == 200
    stats = admin.stats()
    assert list(stats["refreshes"].values()) == [1]


def test_refresh_at_wrong_dc_or_with_garbage_is_invalid_code(zoho: Zoho) -> None:
    r = zoho.token(
        zoho.accounts("eu"), grant_type="refresh_token", refresh_token=zoho.refresh_token
    )
    assert r.json() == {"error": "invalid_code"}
    r = zoho.token(zoho.accounts_server, grant_type="refresh_token", refresh_token="1000.bad.bad")
    assert r.json() == {"error": "invalid_code"}


def test_refresh_throttle_ten_per_ten_minutes(zoho: Zoho, admin) -> None:
    for _ in range(10):
        assert "access_token" in zoho.refresh()
    denied = zoho.refresh()
    assert denied["error"] == "Access Denied"
    assert "too many requests" in denied["error_description"]
    admin.advance_clock(601)
    assert "access_token" in zoho.refresh()


def test_token_error_status_is_configurable(zoho: Zoho, admin) -> None:
    admin.zoho_settings(token_error_status=400)
    r = zoho.token(zoho.accounts_server, grant_type="refresh_token", refresh_token="nope")
    assert r.status_code == 400 and r.json() == {"error": "invalid_code"}


def test_twenty_refresh_tokens_per_user_the_21st_revokes_the_oldest(zoho_anon: Zoho) -> None:
    tokens = []
    for _ in range(21):
        body = zoho_anon.exchange(zoho_anon.authorize(prompt="consent"))
        tokens.append(body["refresh_token"])
    server = f"{zoho_anon.base}/zoho/us/accounts"
    oldest = zoho_anon.token(server, grant_type="refresh_token", refresh_token=tokens[0])
    assert oldest.json() == {"error": "invalid_code"}
    second = zoho_anon.token(server, grant_type="refresh_token", refresh_token=tokens[1])
    assert "access_token" in second.json()


def test_new_refresh_token_needs_prompt_consent(zoho: Zoho) -> None:
    fresh = type(zoho)(zoho.base)
    again = fresh.exchange(fresh.authorize())
    assert "refresh_token" not in again
    forced = fresh.exchange(fresh.authorize(prompt="consent"))
    assert forced["refresh_token"] != zoho.refresh_token


def test_access_token_expires_with_the_sandbox_clock(zoho: Zoho, admin) -> None:
    assert zoho.get("/organizations", org=None).status_code == 200
    admin.advance_clock(3601)
    r = zoho.get("/organizations", org=None)
    assert r.status_code == 401 and r.json()["code"] == 57
    fresh = zoho.refresh()["access_token"]
    assert zoho.get("/organizations", org=None, token=fresh).status_code == 200


def test_revoke_kills_refresh_and_its_access_tokens(zoho: Zoho) -> None:
    r = requests.post(
        f"{zoho.accounts_server}/oauth/v2/token/revoke", params={"token": zoho.refresh_token}
    )
    assert r.status_code == 200 and r.json() == {"status": "success"}
    assert zoho.refresh() == {"error": "invalid_code"}
    assert zoho.get("/organizations", org=None).json()["code"] == 57
    again = requests.post(
        f"{zoho.accounts_server}/oauth/v2/token/revoke", params={"token": zoho.refresh_token}
    )
    assert again.json() == {"error": "invalid_code"}


def test_admin_revoke_and_token_listing(zoho: Zoho, admin) -> None:
    tokens = admin.zoho_tokens()
    assert len(tokens) == 1 and tokens[0]["user"] == "finance@acme.example"
    assert tokens[0]["live_access_tokens"] == 1
    admin.zoho_revoke(id=tokens[0]["id"])
    assert zoho.refresh() == {"error": "invalid_code"}


def test_self_client_code(zoho_anon: Zoho, admin) -> None:
    grant = admin.zoho_self_client_code(scope="ZohoBooks.accountants.ALL,ZohoBooks.settings.READ")
    assert grant["location"] == "us" and grant["organization_ids"]
    body = zoho_anon.token(
        grant["accounts_server"], grant_type="authorization_code", code=grant["code"]
    ).json()
    assert body["refresh_token"] and body["api_domain"] == grant["api_domain"]


def test_serverinfo_lists_all_eight_data_centres(zoho_anon: Zoho) -> None:
    body = requests.get(f"{zoho_anon.accounts()}/oauth/serverinfo").json()
    assert set(body["locations"]) == {"us", "eu", "in", "au", "jp", "ca", "cn", "sa"}


def test_unknown_data_centre_is_not_found(zoho_anon: Zoho) -> None:
    r = requests.get(f"{zoho_anon.base}/zoho/xx/accounts/oauth/serverinfo")
    assert r.status_code == 404
