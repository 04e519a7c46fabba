"""Flask blueprint serving every Concur data centre at ``/concur/<geo>``.

The views are thin: authenticate, apply the per-endpoint limit, call the logic module, render.
Everything runs under the sandbox lock so a multi-step write (a vendor batch, a payment request
with its indexes) is atomic with respect to other requests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, request

from sandbox.concur import auth, config, events, expense, invoice
from sandbox.concur.errors import ConcurError, render
from sandbox.concur.service import ConcurService
from sandbox.concur.store import Company

V4_CONTEXTS = ("TRAVELER", "MANAGER", "PROCESSOR", "PROXY")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def make_blueprint(svc: ConcurService) -> Blueprint:
    bp = Blueprint("concur", __name__, url_prefix="/concur/<geo>")
    state = svc.state
    store = svc.store

    @bp.url_value_preprocessor
    def _pull_geo(endpoint: str | None, values: dict[str, Any] | None) -> None:
        g.concur_geo = (values or {}).pop("geo", None)

    @bp.url_defaults
    def _push_geo(endpoint: str, values: dict[str, Any]) -> None:
        values.setdefault("geo", getattr(g, "concur_geo", None))

    @bp.before_request
    def _before() -> Response | None:
        g.concur_correlation = request.headers.get("concur-correlationid") or uuid.uuid4().hex
        if g.concur_geo not in config.GEOS:
            return render(ConcurError(404, "Not Found"), request.path, g.concur_correlation)
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # Documented: Concur does not support chunked transfer encoding (400).
            return render(
                ConcurError(400, "Chunked transfer encoding is not supported"),
                request.path,
                g.concur_correlation,
            )
        return None

    @bp.after_request
    def _after(resp: Response) -> Response:
        resp.headers["concur-correlationid"] = getattr(g, "concur_correlation", uuid.uuid4().hex)
        return resp

    @bp.errorhandler(ConcurError)
    def _error(err: ConcurError) -> Response:
        return render(err, request.path, getattr(g, "concur_correlation", ""))

    def company_call(endpoint: str) -> Company:
        now = state.clock.now()
        tok = auth.authenticate(
            store, now, g.concur_geo, request.headers.get("Authorization"), "company"
        )
        g.sandbox_tenant = f"concur:{tok.company_id}"
        company = store.company(tok.company_id or "")
        if company is None:
            raise ConcurError(401, "Invalid token")
        svc.check_limit(company.id, endpoint)
        return company

    def app_call() -> None:
        now = state.clock.now()
        auth.authenticate(store, now, g.concur_geo, request.headers.get("Authorization"), "app")
        g.sandbox_tenant = f"concur:app:{config.APP_ID}"
        svc.check_limit(config.APP_ID, "events")

    def body() -> Any:
        raw = request.get_data(cache=True)
        if not raw:
            raise ConcurError(400, "The request body is empty.")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ConcurError(400, "The request body is not valid JSON.") from exc

    def geo_url() -> str:
        return svc.geo_url(g.concur_geo)

    def args() -> dict[str, str]:
        return request.args.to_dict(flat=True)

    def locked(fn: Callable[..., Response]) -> Callable[..., Response]:
        def wrapper(*a: Any, **kw: Any) -> Response:
            with state.lock:
                return fn(*a, **kw)

        wrapper.__name__ = fn.__name__
        return wrapper

    # -- OAuth2 ------------------------------------------------------------------------------------
    @bp.post("/oauth2/v0/token")
    @locked
    def token() -> Response:
        form = request.form.to_dict(flat=True)
        result, company_id = auth.token_grant(
            store,
            state.clock.now(),
            g.concur_geo,
            form,
            svc.geo_url,
            on_refresh=lambda cid: state.stats.record_refresh(f"concur:{cid}"),
        )
        g.sandbox_tenant = f"concur:{company_id}" if company_id else f"concur:app:{config.APP_ID}"
        resp = _json(result)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    # -- Invoice: payment requests -------------------------------------------------------------
    @bp.post("/api/v3.0/invoice/paymentrequest")
    @locked
    def pr_create() -> Response:
        company = company_call("paymentrequest")
        pr = invoice.create_payment_request(store, company, body(), state.clock.now())
        return _json(
            {"ID": pr["ID"], "URI": f"{geo_url()}/api/v3.0/invoice/paymentrequest/{pr['ID']}"}
        )

    @bp.put("/api/v3.0/invoice/paymentrequest")
    @locked
    def pr_update() -> Response:
        company = company_call("paymentrequest")
        pr = invoice.update_payment_request(
            company, body(), state.clock.now(), store.settings.custom_field_spelling
        )
        return _json(
            {"ID": pr["ID"], "URI": f"{geo_url()}/api/v3.0/invoice/paymentrequest/{pr['ID']}"}
        )

    @bp.get("/api/v3.0/invoice/paymentrequest/<path:pr_id>")
    @locked
    def pr_get(pr_id: str) -> Response:
        company = company_call("paymentrequest")
        pr = company.payment_requests.get(pr_id)
        if pr is None:
            raise ConcurError(404, f"Payment request {pr_id} was not found.")
        return _json(invoice.render_payment_request(company, pr, geo_url()))

    @bp.get("/api/v3.0/invoice/paymentrequestdigests")
    @locked
    def pr_digests() -> Response:
        company = company_call("paymentrequestdigests")
        return _json(invoice.search_digests(company, args(), geo_url(), request.base_url))

    @bp.get("/api/v3.0/invoice/paymentrequestdigests/<path:pr_id>")
    @locked
    def pr_digest(pr_id: str) -> Response:
        company = company_call("paymentrequestdigests")
        pr = company.payment_requests.get(pr_id)
        if pr is None:
            raise ConcurError(404, f"Payment request {pr_id} was not found.")
        return _json(invoice.render_digest(company, pr, geo_url()))

    # -- Invoice: vendors v3.1 -----------------------------------------------------------------
    @bp.get("/api/v3.1/invoice/vendors")
    @locked
    def vendors_search() -> Response:
        company = company_call("vendors")
        return _json(
            invoice.search_vendors(
                company,
                args(),
                geo_url(),
                request.base_url,
                shape=store.settings.vendor_search_shape,
            )
        )

    @bp.post("/api/v3.1/invoice/vendors")
    @locked
    def vendors_create() -> Response:
        company = company_call("vendors")
        return _json(
            invoice.vendors_batch(
                store, company, body(), create=True, now=state.clock.now(), base=geo_url()
            )
        )

    @bp.put("/api/v3.1/invoice/vendors")
    @locked
    def vendors_update() -> Response:
        company = company_call("vendors")
        return _json(
            invoice.vendors_batch(
                store, company, body(), create=False, now=state.clock.now(), base=geo_url()
            )
        )

    @bp.delete("/api/v3.1/invoice/vendors")
    @locked
    def vendors_delete() -> Response:
        company = company_call("vendors")
        return _json(invoice.delete_vendor(company, args(), geo_url()))

    # -- Expense v3 ----------------------------------------------------------------------------
    @bp.get("/api/v3.0/expense/reports")
    @locked
    def reports() -> Response:
        company = company_call("reports")
        return _json(expense.list_reports(company, args(), geo_url(), request.base_url))

    @bp.get("/api/v3.0/expense/reports/<report_id>")
    @locked
    def report(report_id: str) -> Response:
        company = company_call("reports")
        r = company.reports.get(report_id)
        if r is None:
            raise ConcurError(404, f"Report {report_id} was not found.")
        if request.args.get("user", "").upper() == "ALL":
            raise ConcurError(400, "user=ALL is not allowed when retrieving a single report")
        return _json(expense.render_report(company, r, geo_url()))

    @bp.get("/api/v3.0/expense/entries")
    @locked
    def entries() -> Response:
        company = company_call("entries")
        return _json(expense.list_entries(company, args(), geo_url(), request.base_url))

    @bp.get("/api/v3.0/expense/entries/<path:entry_id>")
    @locked
    def entry(entry_id: str) -> Response:
        company = company_call("entries")
        e = company.entries.get(entry_id)
        if e is None:
            raise ConcurError(404, f"Entry {entry_id} was not found.")
        return _json(expense.render_entry(company, e, geo_url()))

    @bp.get("/api/v3.0/expense/allocations")
    @locked
    def allocations() -> Response:
        company = company_call("allocations")
        return _json(expense.list_allocations(company, args(), geo_url(), request.base_url))

    @bp.get("/api/v3.0/expense/allocations/<path:alloc_id>")
    @locked
    def allocation(alloc_id: str) -> Response:
        company = company_call("allocations")
        a = company.allocations.get(alloc_id)
        if a is None:
            raise ConcurError(404, f"Allocation {alloc_id} was not found.")
        return _json(expense.render_allocation(a, geo_url()))

    # -- Expense v4 ----------------------------------------------------------------------------
    def v4_report_for(
        company: Company, user_id: str, context: str, report_id: str
    ) -> dict[str, Any]:
        if context not in V4_CONTEXTS:
            raise ConcurError(400, f"Specified context not supported: {context}")
        r = company.reports.get(report_id)
        if r is None:
            raise ConcurError(404, "reportId not found")
        owner = company.employees[r["_owner"].lower()]
        if context == "TRAVELER" and user_id != owner.uuid:
            raise ConcurError(403, "User is not allowed to access this report")
        if context != "TRAVELER" and user_id not in company.employees_by_uuid:
            raise ConcurError(403, "User is not allowed to access this report")
        return r

    v4_base = "/expensereports/v4/users/<user_id>/context/<context>/reports/<report_id>"

    @bp.get(v4_base)
    @locked
    def v4_report(user_id: str, context: str, report_id: str) -> Response:
        company = company_call("expensereports_v4")
        r = v4_report_for(company, user_id, context, report_id)
        return _json(expense.v4_report(company, r, geo_url(), context))

    @bp.get(v4_base + "/expenses")
    @locked
    def v4_expenses(user_id: str, context: str, report_id: str) -> Response:
        company = company_call("expensereports_v4")
        r = v4_report_for(company, user_id, context, report_id)
        self_base = request.base_url.rsplit("/expenses", 1)[0]
        return _json(
            [
                expense.v4_expense(company, company.entries[i], geo_url(), self_base)
                for i in company.entries_by_report.get(r["ID"], ())
            ]
        )

    def v4_entry(company: Company, r: dict[str, Any], expense_id: str) -> dict[str, Any]:
        entry_id = company.entry_by_expense_id.get(expense_id)
        e = company.entries.get(entry_id or "")
        if e is None or e["ReportID"] != r["ID"]:
            raise ConcurError(404, "expenseId not found")
        return e

    @bp.get(v4_base + "/expenses/<expense_id>")
    @locked
    def v4_expense(user_id: str, context: str, report_id: str, expense_id: str) -> Response:
        company = company_call("expensereports_v4")
        r = v4_report_for(company, user_id, context, report_id)
        e = v4_entry(company, r, expense_id)
        self_base = request.base_url.rsplit("/expenses", 1)[0]
        return _json(expense.v4_expense(company, e, geo_url(), self_base))

    @bp.get(v4_base + "/expenses/<expense_id>/allocations")
    @locked
    def v4_allocations(user_id: str, context: str, report_id: str, expense_id: str) -> Response:
        company = company_call("expensereports_v4")
        r = v4_report_for(company, user_id, context, report_id)
        e = v4_entry(company, r, expense_id)
        return _json(
            [
                expense.v4_allocation(company, company.allocations[a])
                for a in company.allocs_by_entry.get(e["ID"], ())
            ]
        )

    # -- Event Subscription Service v4 --------------------------------------------------------
    @bp.get("/events/v4/topics")
    @locked
    def ess_topics() -> Response:
        app_call()
        return _json(list(events.KNOWN_TOPICS))

    @bp.get("/events/v4/subscriptions")
    @locked
    def ess_list() -> Response:
        app_call()
        return _json([events.render_subscription(store, s) for s in store.subscriptions.values()])

    @bp.put("/events/v4/subscriptions/webhook")
    @locked
    def ess_put() -> Response:
        app_call()
        return _json(events.put_subscription(store, body(), state.clock.now()))

    @bp.get("/events/v4/subscriptions/<sub_id>")
    @locked
    def ess_get(sub_id: str) -> Response:
        app_call()
        return _json(events.get_subscription(store, sub_id))

    @bp.delete("/events/v4/subscriptions/<sub_id>")
    @locked
    def ess_delete(sub_id: str) -> Response:
        app_call()
        return _json(events.delete_subscription(store, sub_id))

    return bp
