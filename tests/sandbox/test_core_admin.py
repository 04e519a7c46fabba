"""Control and inspection API: reset, seed, generate, clock, stats, created, duplicates."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import requests

from sandbox.app import create_app
from sandbox.state import SandboxState
from sandbox.zoho.seed import MAIN_ORG_ID as MAIN_ORG

if TYPE_CHECKING:
    from sandbox.admin import AdminClient
    from sandbox.server import SandboxServer
    from tests.sandbox.conftest import Zoho


def test_admin_refuses_non_loopback_clients() -> None:
    app = create_app(SandboxState())
    client = app.test_client()
    for path in ("/_admin/stats", "/_admin/zoho/orgs", "/"):
        r = client.get(path, environ_base={"REMOTE_ADDR": "10.1.2.3"})
        assert r.status_code == 403, path
    r = client.post(
        "/_admin/reset",
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
        headers={"X-Forwarded-For": "127.0.0.1"},
    )
    assert r.status_code == 403
    assert client.get("/_admin/stats", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_admin_index_lists_endpoints(admin: AdminClient) -> None:
    body = admin._call("GET", "/")
    assert "POST /_admin/faults" in " ".join(body["endpoints"])
    assert {"bills", "invoices", "vendors"} <= set(body["generators"])


def test_reset_empties_and_seed_is_deterministic(admin: AdminClient) -> None:
    def snapshot() -> list[tuple[str, str, float]]:
        out = []
        for org in admin.zoho_orgs()["organizations"]:
            out.append((org["organization_id"], org["name"], sum(org["counts"].values())))
        return out

    first = snapshot()
    admin.reset()
    assert admin.zoho_orgs()["organizations"] == []
    admin.seed()
    assert snapshot() == first


def test_seed_content_is_identical_between_seeds(sandbox: SandboxServer) -> None:
    state = sandbox.state
    org = state.zoho.orgs[MAIN_ORG]
    before = {
        bid: (r.data["bill_number"], r.data["total"], r.data["vendor_id"])
        for bid, r in org.bills.items()
    }
    state.reset()
    state.seed()
    org = state.zoho.orgs[MAIN_ORG]
    after = {
        bid: (r.data["bill_number"], r.data["total"], r.data["vendor_id"])
        for bid, r in org.bills.items()
    }
    assert before == after


def test_generate_ten_thousand_bills_quickly(admin: AdminClient, zoho: Zoho) -> None:
    start = time.monotonic()
    out = admin.generate("zoho.bills", 10_000)
    assert time.monotonic() - start < 2.0
    assert out["results"][0]["created"] == 10_000
    page = zoho.get("/bills", params={"page": 50, "per_page": 200}).json()
    assert len(page["bills"]) == 200 and page["page_context"]["has_more_page"] is True
    last = zoho.get("/bills", params={"page": 51, "per_page": 200}).json()
    assert len(last["bills"]) == 30 and last["page_context"]["has_more_page"] is False


def test_generate_vendors_and_invoices(admin: AdminClient, zoho: Zoho) -> None:
    admin.generate("zoho.vendors", 5)
    admin.generate("invoices", 7, organization_id=MAIN_ORG)
    vendors = zoho.get("/contacts", params={"contact_type": "vendor"}).json()["contacts"]
    assert len(vendors) == 17
    assert len(zoho.get("/invoices").json()["invoices"]) == 27
    r = requests.post(f"{admin.base_url}/_admin/generate", json={"kind": "unicorns", "n": 1})
    assert r.status_code == 400


def test_clock_advance(admin: AdminClient) -> None:
    before = admin._call("GET", "/clock")
    out = admin.advance_clock(3600)
    assert out["offset"] == before["offset"] + 3600
    r = requests.post(f"{admin.base_url}/_admin/clock/advance", json={"seconds": -1})
    assert r.status_code == 400


def test_stats_per_endpoint_tenant_and_status(zoho: Zoho, admin: AdminClient) -> None:
    zoho.get("/bills")
    zoho.get("/bills")
    zoho.get("/bills/1")
    zoho.get("/organizations", org=None)
    stats = admin.stats()
    ep = stats["per_endpoint"]
    assert ep["GET /zoho/<dc>/api/books/v3/bills"] == 2
    assert ep["GET /zoho/<dc>/api/books/v3/bills/<bill_id>"] == 1
    assert ep["POST /zoho/<dc>/accounts/oauth/v2/token"] == 1
    tenant = stats["per_tenant_endpoint"][f"zoho:{MAIN_ORG}"]
    assert tenant["GET /zoho/<dc>/api/books/v3/bills"] == 2
    assert stats["status_counts"]["404"] == 1
    assert "/_admin" not in " ".join(ep)


def test_created_and_duplicates_reports(zoho: Zoho, admin: AdminClient) -> None:
    zoho.post("/contacts", json={"contact_name": "Delta Air Lines", "contact_type": "vendor"})
    zoho.post("/contacts", json={"contact_name": "delta  air lines", "contact_type": "vendor"})
    dups = admin.duplicates()["zoho"]["vendors_by_name"]
    assert len(dups) == 1 and dups[0]["count"] == 3
    created = admin.created()["zoho"]
    assert len(created["contacts"]) == 2 and created["journals"] == []
    assert all(c["via"] == "api" for c in created["contacts"])
    listed = zoho.get("/contacts", params={"filter_by": "Status.Duplicate"}).json()["contacts"]
    assert len(listed) == 3


def test_deliveries_endpoint_shape(admin: AdminClient) -> None:
    body = admin.deliveries()
    assert body["pending"] == 0 and body["attempts"] == []
    assert admin.configure_deliveries(base_delay=0.01)["base_delay"] == 0.01


def test_zoho_admin_settings_limits_and_datacentres(admin: AdminClient) -> None:
    dcs = admin._call("GET", "/zoho/datacentres")
    assert dcs["ca"]["real"] == ["https://accounts.zohocloud.ca", "https://www.zohoapis.ca"]
    assert dcs["eu"]["api_domain"].endswith("/zoho/eu/api")
    r = requests.post(f"{admin.base_url}/_admin/zoho/settings", json={"token_error_status": 418})
    assert r.status_code == 400
    r = requests.post(f"{admin.base_url}/_admin/zoho/settings", json={"nope": 1})
    assert r.status_code == 400
    limits = admin.zoho_limits(per_minute=50, daily=123)
    assert limits["per_minute"] == 50 and limits["orgs"][MAIN_ORG]["daily"] == 123
    r = requests.post(f"{admin.base_url}/_admin/zoho/orgs/1/bills", json={})
    assert r.status_code == 400 and "unknown organization" in r.json()["error"]
    r = requests.patch(f"{admin.base_url}/_admin/zoho/orgs/{MAIN_ORG}/bills/1", json={})
    assert r.status_code == 404
