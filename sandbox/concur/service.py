"""The Concur extension object: store + shared sandbox state, and the verbs both the API views
and the admin views need (URLs per data centre, rate limits, workflow transitions that publish
ESS events, read-back for the admin API).

It lives at ``state.extensions["concur"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.concur import config, events, expense, seed
from sandbox.concur.errors import ConcurError, rate_limited
from sandbox.concur.invoice import is_duplicate
from sandbox.concur.store import ConcurStore, v3_date
from sandbox.stats import RateWindow

if TYPE_CHECKING:
    from sandbox.state import SandboxState


class ConcurService:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.store = ConcurStore()

    # -- URLs ------------------------------------------------------------------------------------
    def base_url(self) -> str:
        """Prefer the host the client used (it may say localhost or 127.0.0.1)."""
        from flask import has_request_context, request

        if has_request_context():
            return request.host_url.rstrip("/")
        return self.state.base_url.rstrip("/")

    def geo_url(self, geo: str) -> str:
        return f"{self.base_url()}/concur/{geo}"

    def describe(self, url: str) -> str:
        lines = ["  SAP Concur data centres (geolocation = token/API base):"]
        for geo in config.GEOS:
            lines.append(f"    {geo} {url}/concur/{geo}")
        lines.append(
            f"  Concur client: client_id={config.CLIENT_ID} client_secret={config.CLIENT_SECRET}"
        )
        lines.append(
            f"  Concur companies: us2 {config.SEED_US_COMPANY_ID} "
            f"(request token {config.SEED_US_REQUEST_TOKEN}); eu2 {config.SEED_EU_COMPANY_ID} "
            f"(request token {config.SEED_EU_REQUEST_TOKEN})"
        )
        return "\n".join(lines)

    # -- lifecycle -------------------------------------------------------------------------------
    def reset(self) -> None:
        self.store.reset()

    def seed(self) -> None:
        seed.seed(self.store, self.state.clock.now())

    # -- limits ----------------------------------------------------------------------------------
    def set_limit(self, endpoint: str, limit: int, period: float, company_id: str = "*") -> None:
        if endpoint not in config.ENDPOINTS:
            raise ConcurError(400, f"unknown endpoint {endpoint!r}; known: {config.ENDPOINTS}")
        if int(limit) < 1 or float(period) <= 0:
            raise ConcurError(400, "limit must be >= 1 and period > 0")
        key = (company_id, endpoint)
        self.store.settings.limits[key] = (int(limit), float(period))
        window = RateWindow(int(limit), float(period))
        self.store.windows[key] = window
        self.state.stats.register_window(f"concur:{company_id}:{endpoint}", window)

    def clear_limits(self) -> None:
        self.store.settings.limits.clear()
        self.store.windows.clear()

    def check_limit(self, company_id: str, endpoint: str) -> None:
        if not self.store.windows:
            return
        window = self.store.windows.get((company_id, endpoint)) or self.store.windows.get(
            ("*", endpoint)
        )
        if window is not None and not window.hit(company_id):
            self.state.stats.record_429(f"concur:{company_id}")
            raise rate_limited()

    # -- workflow ----------------------------------------------------------------------------------
    def transition(self, company_id: str, report_id: str, action: str) -> dict[str, Any]:
        company = self.store.company(company_id)
        if company is None:
            raise ConcurError(404, f"unknown company {company_id}")
        now = self.state.clock.now()
        facts = expense.transition(company, report_id, action, now, self.geo_url(company.geo))
        sent = events.publish(self.store, self.state.deliverer, facts, now)
        return {
            "report_id": report_id,
            "action": action,
            "facts": facts,
            "events": [{"subscription": s["subscription"], "id": s["event"]["id"]} for s in sent],
        }

    def find_report(self, report_id: str) -> str | None:
        for company in self.store.companies.values():
            if report_id in company.reports:
                return company.id
        return None

    # -- read-back ---------------------------------------------------------------------------------
    def created(self) -> dict[str, Any]:
        """Everything clients created through the APIs, in its current state."""
        out: dict[str, Any] = {"vendors": [], "payment_requests": [], "subscriptions": []}
        for item in self.store.created:
            company = self.store.company(item["company_id"]) if item["company_id"] else None
            if item["kind"] == "vendor" and company is not None:
                key = company.vendors_by_id.get(item["id"])
                vendor = company.vendors.get(key) if key else None
                out["vendors"].append(
                    {
                        **{k: v for k, v in item.items() if k != "kind"},
                        "exists": vendor is not None,
                        "vendor": {
                            k: v for k, v in (vendor or {}).items() if not k.startswith("_")
                        },
                    }
                )
            elif item["kind"] == "payment_request" and company is not None:
                pr = company.payment_requests.get(item["id"])
                out["payment_requests"].append(
                    {
                        **{k: v for k, v in item.items() if k != "kind"},
                        "ApprovalStatus": pr["ApprovalStatus"] if pr else None,
                        "InvoiceAmount": pr.get("InvoiceAmount") if pr else None,
                        "CurrencyCode": pr.get("CurrencyCode") if pr else None,
                        "LineItemCount": len(pr["_lines"]) if pr else 0,
                        "CreateDate": v3_date(pr["_created"]) if pr else None,
                    }
                )
            elif item["kind"] == "subscription":
                out["subscriptions"].append(
                    {
                        **{k: v for k, v in item.items() if k != "kind"},
                        "exists": item["id"] in self.store.subscriptions,
                    }
                )
        out["events"] = [
            {
                "subscription": e["subscription"],
                "id": e["event"]["id"],
                "reportId": e["event"]["facts"]["reportId"],
                "currentApprovalStatus": e["event"]["facts"]["currentApprovalStatus"],
            }
            for e in self.store.events
        ]
        return out

    def duplicates(self) -> dict[str, Any]:
        """Payment requests sharing vendor + invoice number; vendor codes sharing a name."""
        prs: list[dict[str, Any]] = []
        names: list[dict[str, Any]] = []
        for company in self.store.companies.values():
            for inv, ids in company.pr_by_invoice.items():
                groups: dict[tuple[str, str], list[str]] = {}
                for pr_id in ids:
                    pr = company.payment_requests[pr_id]
                    if pr.get("IsPaymentRequestDeleted") == "true":
                        continue
                    groups.setdefault(pr["_vendor_key"], []).append(pr_id)
                for vkey, members in groups.items():
                    if len(members) > 1:
                        prs.append(
                            {
                                "company_id": company.id,
                                "InvoiceNumber": inv,
                                "VendorCode": vkey[0],
                                "AddressCode": vkey[1],
                                "ids": members,
                            }
                        )
            for name, keys in company.vendors_by_name.items():
                codes = sorted({k[0] for k in keys})
                if name and len(codes) > 1:
                    names.append({"company_id": company.id, "VendorName": name, "codes": codes})
        return {"payment_requests": prs, "vendor_names": names}

    def summary(self) -> dict[str, Any]:
        s = self.store
        companies = []
        for c in s.companies.values():
            companies.append(
                {
                    "id": c.id,
                    "name": c.name,
                    "geo": c.geo,
                    "geolocation": self.geo_url(c.geo),
                    "connected": c.connected,
                    "request_tokens": dict(c.request_tokens),
                    "employees": [
                        {
                            "login_id": e.login_id,
                            "employee_id": e.employee_id,
                            "uuid": e.uuid,
                            "currency": e.currency,
                        }
                        for e in c.employees.values()
                    ],
                    "vendors": len(c.vendors),
                    "payment_requests": len(c.payment_requests),
                    "duplicate_payment_requests": sum(
                        1 for pr in c.payment_requests.values() if is_duplicate(c, pr)
                    ),
                    "reports": {
                        status: sum(
                            1
                            for r in c.reports.values()
                            if f"{r['ApprovalStatusCode']}/{r['PaymentStatusCode']}" == status
                        )
                        for status in sorted(
                            {
                                f"{r['ApprovalStatusCode']}/{r['PaymentStatusCode']}"
                                for r in c.reports.values()
                            }
                        )
                    },
                }
            )
        st = s.settings
        return {
            "geos": list(config.GEOS),
            "client_id": config.CLIENT_ID,
            "companies": companies,
            "settings": {
                "rotate_refresh_tokens": st.rotate_refresh_tokens,
                "expired_token_status": st.expired_token_status,
                "expires_in_as_string": st.expires_in_as_string,
                "custom_field_spelling": st.custom_field_spelling,
                "ess_certificate_days": st.ess_certificate_days,
                "vendor_search_shape": st.vendor_search_shape,
                "limits": [
                    {"company_id": k[0], "endpoint": k[1], "limit": v[0], "period": v[1]}
                    for k, v in st.limits.items()
                ],
            },
            "subscriptions": [
                events.render_subscription(s, sub) for sub in s.subscriptions.values()
            ],
            "events_published": len(s.events),
            "access_tokens": len(s.access_tokens),
            "refresh_tokens": len(s.refresh_tokens),
        }
