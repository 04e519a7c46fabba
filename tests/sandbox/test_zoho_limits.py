"""Per-organization rate limit (100/minute, configurable) and the daily quota headers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.zoho.seed import LABS_ORG_ID as LABS_ORG
from sandbox.zoho.seed import MAIN_ORG_ID as MAIN_ORG

if TYPE_CHECKING:
    from sandbox.admin import AdminClient
    from tests.sandbox.conftest import Zoho


def test_the_101st_call_in_a_minute_is_429_without_retry_after(
    zoho: Zoho, admin: AdminClient
) -> None:
    for i in range(100):
        r = zoho.get("/settings/currencies")
        assert r.status_code == 200, i
    r = zoho.get("/settings/currencies")
    assert r.status_code == 429
    assert r.json() == {"code": 45, "message": r.json()["message"]} and r.json()["message"]
    assert "Retry-After" not in r.headers
    assert r.headers["X-Rate-Limit-Limit"] == "10000"  # PREMIUM plan
    # The limit is per organization: the user's other org is unaffected.
    assert zoho.get("/settings/currencies", org=LABS_ORG).status_code == 200
    stats = admin.stats()
    assert stats["rate_limited"] == {f"zoho:{MAIN_ORG}": 1}
    assert stats["max_in_window"]["zoho.org_per_minute"][MAIN_ORG] == 100
    assert stats["per_tenant"][f"zoho:{MAIN_ORG}"] >= 101


def test_rate_limit_is_configurable_per_org(zoho: Zoho, admin: AdminClient) -> None:
    admin.zoho_limits(organization_id=MAIN_ORG, per_minute=3)
    codes = [zoho.get("/bills").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert zoho.get("/bills", org=LABS_ORG).status_code == 200
    admin.zoho_limits(per_minute=100, organization_id=MAIN_ORG, reset_windows=True)
    assert zoho.get("/bills").status_code == 200


def test_daily_quota_headers_and_exhaustion(zoho: Zoho, admin: AdminClient) -> None:
    admin.zoho_limits(organization_id=MAIN_ORG, daily=3)
    first = zoho.get("/bills")
    assert first.headers["X-Rate-Limit-Limit"] == "3"
    assert first.headers["X-Rate-Limit-Remaining"] == "2"
    reset = int(first.headers["X-Rate-Limit-Reset"])
    assert 0 < reset <= 86400
    bad = zoho.get("/bills/1")  # errors after the org is known still carry the headers
    assert bad.status_code == 404 and bad.headers["X-Rate-Limit-Remaining"] == "1"
    zoho.get("/bills")
    over = zoho.get("/bills")
    assert over.status_code == 429 and over.headers["X-Rate-Limit-Remaining"] == "0"
    assert "per day" in over.json()["message"]
    admin.advance_clock(reset + 1)
    zoho.access_token = zoho.refresh()["access_token"]  # a day later the old token is long dead
    again = zoho.get("/bills")
    assert again.status_code == 200 and again.headers["X-Rate-Limit-Remaining"] == "2"


def test_default_daily_quota_follows_the_plan(zoho_anon: Zoho) -> None:
    ind = zoho_anon.login(user="accounts@acme.example")
    r = ind.get("/bills", org="60012345")
    assert r.headers["X-Rate-Limit-Limit"] == "2000"  # STANDARD plan


def test_no_rate_headers_before_the_org_is_known(zoho: Zoho) -> None:
    r = zoho.get("/bills", org="1")
    assert r.status_code == 401 and "X-Rate-Limit-Limit" not in r.headers
