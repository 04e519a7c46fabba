"""Concur OAuth2: company bootstrap, geolocation, refresh rotation, expiry and error codes."""

from __future__ import annotations

import base64
import json
import time

import pytest

from sandbox.concur import config

try:
    from tests.sandbox.concur_fixtures import EU, US, ConcurHarness, concur
except ImportError:  # tests/ is not a package: import the sibling module directly
    from concur_fixtures import EU, US, ConcurHarness, concur  # type: ignore[no-redef]  # noqa: F401


def _claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_bootstrap_returns_documented_fields(concur: ConcurHarness) -> None:
    resp = concur.bootstrap()
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == "3600"  # the main doc shows a string
    assert body["geolocation"] == concur.geo("us2")
    # refresh_expires_in is an epoch timestamp about six months out, not a duration
    assert body["refresh_expires_in"] > time.time() + 170 * 86400
    assert _claims(body["id_token"])["sub"] == US
    assert "refresh_token" in body and "access_token" in body
    assert resp.headers["concur-correlationid"]


def test_request_token_is_reusable_for_24_hours_only(concur: ConcurHarness) -> None:
    first = concur.bootstrap().json()
    second = concur.bootstrap().json()
    assert first["access_token"] != second["access_token"]
    concur.advance(config.REQUEST_TOKEN_TTL + 1)
    resp = concur.bootstrap()
    assert resp.status_code == 400
    assert resp.json()["code"] == 5
    assert resp.json()["error"] == "invalid_grant"


def test_new_request_token_from_admin_bootstraps(concur: ConcurHarness) -> None:
    made = concur.admin.create_company(geo="eu2", name="Late Co")
    resp = concur.bootstrap("us2", made["company_id"], made["request_token"])
    assert resp.status_code == 400 and resp.json()["code"] == 16
    assert resp.json()["geolocation"] == concur.geo("eu2")
    resp = concur.bootstrap("eu2", made["company_id"], made["request_token"])
    assert resp.status_code == 200
    token = concur.admin.new_request_token(made["company_id"])
    assert concur.bootstrap("eu2", made["company_id"], token).status_code == 200


def test_wrong_data_centre_answers_code_16_with_geolocation(concur: ConcurHarness) -> None:
    resp = concur.bootstrap("eu2")
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == 16
    assert body["error"] == "invalid_request"
    assert body["error_description"] == "user lives elsewhere"
    assert body["geolocation"] == concur.geo("us2")
    # A client honouring geolocation retries there and succeeds.
    retry = concur.http.post(
        f"{body['geolocation']}/oauth2/v0/token",
        data={
            "client_id": config.CLIENT_ID,
            "client_secret": config.CLIENT_SECRET,
            "grant_type": "password",
            "username": US,
            "password": config.SEED_US_REQUEST_TOKEN,
            "credtype": "authtoken",
        },
        timeout=10,
    )
    assert retry.status_code == 200
    assert retry.json()["geolocation"] == concur.geo("us2")


def test_eu_company_lives_in_eu2(concur: ConcurHarness) -> None:
    tok = concur.company_token("eu2")
    assert tok["geolocation"] == concur.geo("eu2")
    headers = {"Authorization": f"Bearer {tok['access_token']}"}
    ok = concur.http.get(f"{concur.geo('eu2')}/api/v3.1/invoice/vendors", headers=headers)
    assert ok.status_code == 200
    assert {v["VendorCode"] for v in ok.json()["Items"]} >= {"BRITRAIL", "EUROCAT"}
    # The same token is unknown in the other data centre.
    wrong = concur.http.get(f"{concur.geo('us2')}/api/v3.1/invoice/vendors", headers=headers)
    assert wrong.status_code == 401
    assert "Message" in wrong.json()["Error"]


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"client_secret": "nope", "grant_type": "client_credentials"}, 401, 64),
        ({"client_id": "someone-else", "grant_type": "client_credentials"}, 401, 61),
        ({}, 400, 65),
        ({"grant_type": "password", "password": "x", "credtype": "authtoken"}, 400, 51),
        ({"grant_type": "password", "username": US, "credtype": "authtoken"}, 400, 52),
        ({"grant_type": "password", "username": US, "password": "x", "credtype": "bogus"}, 400, 120),
        ({"grant_type": "password", "username": US, "password": "wrong", "credtype": "authtoken"}, 400, 5),
        ({"grant_type": "password", "username": US, "password": config.SEED_US_REQUEST_TOKEN}, 400, 5),
        ({"grant_type": "password", "username": US, "password": config.SEED_EU_REQUEST_TOKEN, "credtype": "authtoken"}, 400, 136),
        ({"grant_type": "refresh_token"}, 400, 106),
        ({"grant_type": "refresh_token", "refresh_token": "not-a-token"}, 400, 108),
        ({"grant_type": "authorization_code", "code": "x"}, 400, 60),
    ],
)  # fmt: skip
def test_token_errors(concur: ConcurHarness, form: dict, status: int, code: int) -> None:
    resp = concur.token("us2", **form)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code
    assert body["error"] in {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "access_denied",
        "invalid_scope",
    }
    assert body["error_description"]


def test_refresh_without_rotation_keeps_token_and_renews_six_months(concur: ConcurHarness) -> None:
    boot = concur.company_token()
    concur.advance(10 * 86400)
    resp = concur.token(grant_type="refresh_token", refresh_token=boot["refresh_token"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["refresh_token"] == boot["refresh_token"]
    assert body["refresh_expires_in"] >= boot["refresh_expires_in"] + 10 * 86400 - 5
    assert body["geolocation"] == concur.geo("us2")
    assert body["access_token"] != boot["access_token"]


def test_refresh_rotation_kills_the_old_token(concur: ConcurHarness) -> None:
    concur.admin.settings(rotate_refresh_tokens=True)
    boot = concur.company_token()
    first = concur.token(grant_type="refresh_token", refresh_token=boot["refresh_token"])
    assert first.status_code == 200
    rotated = first.json()["refresh_token"]
    assert rotated != boot["refresh_token"]
    dead = concur.token(grant_type="refresh_token", refresh_token=boot["refresh_token"])
    assert dead.status_code == 400
    assert dead.json()["code"] == 108
    again = concur.token(grant_type="refresh_token", refresh_token=rotated)
    assert again.status_code == 200
    if concur.state is not None:
        assert concur.state.stats.snapshot()["refreshes"][f"concur:{US}"] == 2


def test_revoked_and_expired_refresh_tokens_answer_108(concur: ConcurHarness) -> None:
    boot = concur.company_token()
    assert concur.admin.revoke_refresh_tokens(refresh_token=boot["refresh_token"]) == 1
    resp = concur.token(grant_type="refresh_token", refresh_token=boot["refresh_token"])
    assert resp.status_code == 400 and resp.json()["code"] == 108
    other = concur.company_token()
    concur.advance(config.REFRESH_TOKEN_TTL + 1)
    resp = concur.token(grant_type="refresh_token", refresh_token=other["refresh_token"])
    assert resp.status_code == 400 and resp.json()["code"] == 108


def test_refresh_at_the_wrong_data_centre_points_home(concur: ConcurHarness) -> None:
    boot = concur.company_token()
    resp = concur.token("eu2", grant_type="refresh_token", refresh_token=boot["refresh_token"])
    assert resp.status_code == 400
    assert resp.json()["code"] == 16
    assert resp.json()["geolocation"] == concur.geo("us2")


@pytest.mark.parametrize(
    ("mode", "expected"), [("401", {401}), ("403", {403}), ("alternate", {401, 403})]
)
def test_expired_access_token_answers_401_or_403(
    concur: ConcurHarness, mode: str, expected: set[int]
) -> None:
    concur.admin.settings(expired_token_status=mode)
    headers = concur.headers()
    url = f"{concur.geo()}/api/v3.0/expense/reports"
    assert concur.http.get(url, headers=headers).status_code == 200
    concur.advance(config.ACCESS_TOKEN_TTL + 1)
    seen = {concur.http.get(url, headers=headers).status_code for _ in range(2)}
    assert seen == expected
    body = concur.http.get(url, headers=headers).json()
    assert set(body["Error"]) == {"Message", "Server-Time", "Id"}


def test_missing_or_malformed_authorization_is_401(concur: ConcurHarness) -> None:
    url = f"{concur.geo()}/api/v3.0/invoice/paymentrequestdigests"
    assert concur.http.get(url).status_code == 401
    assert concur.http.get(url, headers={"Authorization": "Basic abc"}).status_code == 401
    v4 = concur.http.get(f"{concur.geo()}/expensereports/v4/users/x/context/TRAVELER/reports/y")
    assert v4.status_code == 401
    assert {"errorMessage", "httpStatus", "path", "timestamp"} <= set(v4.json())


def test_app_token_is_for_events_only(concur: ConcurHarness) -> None:
    resp = concur.token(grant_type="client_credentials")
    body = resp.json()
    assert resp.status_code == 200
    assert "refresh_token" not in body
    assert body["geolocation"] == concur.geo("us2")
    app = {"Authorization": f"Bearer {body['access_token']}"}
    assert (
        concur.http.get(f"{concur.geo()}/api/v3.0/expense/reports", headers=app).status_code == 403
    )
    company = concur.headers()
    ess = concur.http.get(f"{concur.geo()}/events/v4/subscriptions", headers=company)
    assert ess.status_code == 403
    assert ess.json()["error"]["message"]


def test_expires_in_can_be_a_number(concur: ConcurHarness) -> None:
    concur.admin.settings(expires_in_as_string=False)
    assert concur.bootstrap().json()["expires_in"] == 3600


def test_unknown_data_centre_is_404(concur: ConcurHarness) -> None:
    resp = concur.http.post(f"{concur.url}/concur/apj9/oauth2/v0/token", data={})
    assert resp.status_code == 404
