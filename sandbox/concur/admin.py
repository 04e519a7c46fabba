"""Small HTTP client for ``/_admin/concur/...``, for tests, benchmarks and the docs script.

It talks to the admin API over HTTP (not to the store) so it works against a sandbox running in
another process exactly as against one in-process.
"""

from __future__ import annotations

from typing import Any

import requests


class ConcurAdmin:
    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/") + "/_admin/concur"
        self.http = session or requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.http.request(method, self.base + path, timeout=10, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text}")
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            return resp.json()
        return resp.content

    def summary(self) -> dict[str, Any]:
        return self._call("GET", "")

    def public_key_pem(self) -> bytes:
        return self._call("GET", "/public-key.pem")

    def create_company(self, geo: str = "us2", name: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/companies", json={"geo": geo, "name": name})

    def new_request_token(self, company_id: str) -> str:
        return self._call("POST", f"/companies/{company_id}/request-token")["request_token"]

    def transition(self, report_id: str, action: str) -> dict[str, Any]:
        return self._call("POST", f"/reports/{report_id}/{action}", json={})

    def approve(self, report_id: str) -> dict[str, Any]:
        return self.transition(report_id, "approve")

    def create_vendors(self, *vendors: dict[str, Any], company_id: str | None = None) -> Any:
        return self._call(
            "POST", "/vendors", json={"company_id": company_id, "Vendor": list(vendors)}
        )

    def update_vendors(self, *vendors: dict[str, Any], company_id: str | None = None) -> Any:
        return self._call(
            "PUT", "/vendors", json={"company_id": company_id, "Vendor": list(vendors)}
        )

    def advance_payment_request(
        self, pr_id: str, approval_status: str = "A_APPR", payment_status: str | None = None
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/payment-requests/{pr_id}/advance",
            json={"approval_status": approval_status, "payment_status": payment_status},
        )

    def set_limit(
        self, endpoint: str, limit: int, period: float = 60.0, company_id: str | None = None
    ) -> Any:
        return self._call(
            "POST",
            "/limits",
            json={"endpoint": endpoint, "limit": limit, "period": period, "company_id": company_id},
        )

    def clear_limits(self) -> Any:
        return self._call("DELETE", "/limits")

    def settings(self, **knobs: Any) -> dict[str, Any]:
        return self._call("POST", "/settings", json=knobs)

    def revoke_refresh_tokens(
        self, refresh_token: str | None = None, company_id: str | None = None
    ) -> int:
        body = {"refresh_token": refresh_token, "company_id": company_id}
        return self._call("POST", "/refresh-tokens/revoke", json=body)["revoked"]

    def created(self) -> dict[str, Any]:
        return self._call("GET", "/created")

    def duplicates(self) -> dict[str, Any]:
        return self._call("GET", "/duplicates")

    def events(self) -> dict[str, Any]:
        return self._call("GET", "/events")
