"""Concur through the shared control surface: faults, stats, generators, created/duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

try:
    from tests.sandbox.concur_fixtures import US, ConcurHarness, concur
except ImportError:
    from concur_fixtures import US, ConcurHarness, concur  # type: ignore[no-redef]  # noqa: F401


def test_injected_faults_use_concur_bodies(concur: ConcurHarness, admin: Any) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.1/invoice/vendors"
    admin.add_fault("GET", "/concur/us2/api/v3.1/invoice/vendors", 429)
    limited = concur.http.get(url, headers=h)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "0"
    assert limited.json()["error"]["id"] == "security.rate.limit.reached"
    admin.add_fault("GET", "/concur/us2/api/v3.1/invoice/vendors", 503)
    down = concur.http.get(url, headers=h)
    assert down.status_code == 503 and "Message" in down.json()["Error"]
    admin.add_fault("GET", "/concur/us2/expensereports/*", 500)
    v4 = concur.http.get(f"{concur.geo()}/expensereports/v4/users/u/context/TRAVELER/reports/r")
    assert v4.status_code == 500 and v4.json()["httpStatus"].startswith("500")
    assert concur.http.get(url, headers=h).status_code == 200


def test_stats_count_requests_per_company_tenant(concur: ConcurHarness, admin: Any) -> None:
    h = concur.headers()
    for _ in range(3):
        concur.http.get(f"{concur.geo()}/api/v3.0/expense/reports", headers=h)
    stats = admin.stats()
    assert stats["per_tenant"][f"concur:{US}"] >= 4  # bootstrap + 3 calls


def test_generators_and_read_back_through_core_admin(concur: ConcurHarness, admin: Any) -> None:
    out = admin.generate("reports", 3)
    assert out["results"][0]["created"] == 3
    out = admin.generate("concur_vendors", 5)
    assert out["results"][0]["created"] == 5
    h = concur.headers()
    concur.http.post(
        f"{concur.geo()}/api/v3.1/invoice/vendors",
        json={
            "Vendor": [
                {
                    "VendorCode": "CTRL1",
                    "AddressCode": "MAIN",
                    "VendorName": "Vandelay Industries",
                    "CountryCode": "US",
                    "CurrencyCode": "USD",
                }
            ]
        },
        headers=h,
    )
    created = admin.created()["concur"]
    assert [v["VendorCode"] for v in created["vendors"]] == ["CTRL1"]
    dupes = admin.duplicates()["concur"]["vendor_names"]
    assert any(d["codes"] == ["CTRL1", "VANDEL1", "VANDEL2"] for d in dupes)


def test_admin_clock_expires_tokens(concur: ConcurHarness, admin: Any) -> None:
    concur.admin.settings(expired_token_status="403")
    h = concur.headers()
    admin.advance_clock(3601)
    resp = concur.http.get(f"{concur.geo()}/api/v3.0/expense/reports", headers=h)
    assert resp.status_code == 403
    assert resp.json()["Error"]["Message"] == "Forbidden Request"


def _demo_script() -> str | None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    for name in ("sandbox.md", "sandbox-concur.md"):
        path = docs / name
        if path.exists() and "<!-- concur-demo -->" in path.read_text():
            text = path.read_text().split("<!-- concur-demo -->", 1)[1]
            return text.split("```python\n", 1)[1].split("```", 1)[0]
    return None


def test_docs_demo_script_runs(concur: ConcurHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _demo_script()
    if script is None:
        pytest.skip("the Concur demo script is not in docs/")
    monkeypatch.setenv("SANDBOX_URL", concur.url)
    exec(compile(script, "docs-concur-demo", "exec"), {"__name__": "__main__"})
