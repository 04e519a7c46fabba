"""Admin routes for the Concur half, under ``/_admin/concur`` (loopback clients only).

These do what in reality happens in the Concur UI or at SAP (approving a report, issuing a
company request token, revoking a refresh token) plus the sandbox's own knobs (limits, rotation,
401-vs-403) and read-back. A small HTML page lets a person approve reports by hand.
"""

from __future__ import annotations

import html
import json
import random
import secrets
import uuid
from typing import Any

from flask import Blueprint, Response, redirect, request

from sandbox.admin import require_loopback
from sandbox.concur import config, invoice, seed, signing
from sandbox.concur.errors import ConcurError
from sandbox.concur.service import ConcurService


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _payload() -> dict[str, Any]:
    if request.is_json:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}
    return request.form.to_dict(flat=True)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def make_admin_blueprint(svc: ConcurService) -> Blueprint:
    bp = Blueprint("concur_admin", __name__, url_prefix="/_admin/concur")
    state = svc.state
    store = svc.store

    bp.before_request(require_loopback)

    @bp.errorhandler(ConcurError)
    def _error(err: ConcurError) -> Response:
        return _json({"error": err.message}, err.status)

    def company_arg(data: dict[str, Any]) -> str:
        cid = data.get("company_id") or request.args.get("company_id") or config.SEED_US_COMPANY_ID
        if store.company(cid) is None:
            raise ConcurError(404, f"unknown company {cid}")
        return str(cid)

    @bp.get("")
    @bp.get("/")
    def summary() -> Response:
        with state.lock:
            return _json(svc.summary())

    @bp.get("/public-key.pem")
    def public_key() -> Response:
        return Response(signing.public_key_pem(), mimetype="application/x-pem-file")

    @bp.get("/webhook-certificate.pem")
    def webhook_certificate() -> Response:
        """The ESS key inside a certificate with an end date, as SAP publishes it yearly."""
        with state.lock:
            days = store.settings.ess_certificate_days
        return Response(signing.certificate_pem(days), mimetype="application/x-pem-file")

    # -- companies and request tokens ------------------------------------------------------
    @bp.post("/companies")
    def create_company() -> Response:
        data = _payload()
        geo = data.get("geo", "us2")
        if geo not in config.GEOS:
            raise ConcurError(400, f"unknown geo {geo!r}; known: {list(config.GEOS)}")
        with state.lock:
            cid = str(data.get("company_id") or uuid.uuid4())
            if store.company(cid) is not None:
                raise ConcurError(409, f"company {cid} already exists")
            token = secrets.token_urlsafe(24)
            now = state.clock.now()
            company = seed.make_company(
                store,
                cid,
                str(data.get("name") or f"Company {cid[:8]}"),
                geo,
                token,
                now,
                source="admin",
                connected=False,
            )
            seed.add_employees(
                company,
                [
                    (
                        "wsadmin@" + cid[:8] + ".example",
                        "ADM001",
                        "Web Services",
                        "Admin",
                        "USD",
                        "US",
                    )
                ],
                random.Random(cid),
            )
            return _json(
                {
                    "company_id": cid,
                    "geo": geo,
                    "geolocation": svc.geo_url(geo),
                    "request_token": token,
                    "request_token_expires_at": now + config.REQUEST_TOKEN_TTL,
                },
                201,
            )

    @bp.post("/companies/<company_id>/request-token")
    def new_request_token(company_id: str) -> Response:
        with state.lock:
            company = store.company(company_id)
            if company is None:
                raise ConcurError(404, f"unknown company {company_id}")
            token = secrets.token_urlsafe(24)
            expires = state.clock.now() + config.REQUEST_TOKEN_TTL
            company.request_tokens[token] = expires
            return _json(
                {
                    "company_id": company_id,
                    "request_token": token,
                    "request_token_expires_at": expires,
                }
            )

    # -- reports ------------------------------------------------------------------------------
    @bp.post("/reports/<report_id>/<action>")
    def report_action(report_id: str, action: str) -> Response:
        with state.lock:
            cid = svc.find_report(report_id)
            if cid is None:
                raise ConcurError(404, f"report {report_id} not found")
            result = svc.transition(cid, report_id, action)
        if not request.is_json and request.form:
            return redirect("/_admin/concur/ui", code=303)  # type: ignore[return-value]
        return _json(result)

    @bp.get("/ui")
    def ui() -> Response:
        with state.lock:
            return Response(render_ui(svc), mimetype="text/html")

    # -- vendors --------------------------------------------------------------------------------
    def vendor_write(create: bool) -> Response:
        data = _payload()
        with state.lock:
            company = store.company(company_arg(data))
            assert company is not None
            batch = (
                data
                if ("Vendor" in data or "Items" in data)
                else {"Vendor": [data.get("vendor", data)]}
            )
            result = invoice.vendors_batch(
                store,
                company,
                batch,
                create=create,
                now=state.clock.now(),
                base=svc.geo_url(company.geo),
                source="admin",
            )
            return _json(result)

    @bp.post("/vendors")
    def admin_vendor_create() -> Response:
        return vendor_write(True)

    @bp.put("/vendors")
    def admin_vendor_update() -> Response:
        return vendor_write(False)

    # -- payment requests -----------------------------------------------------------------------
    @bp.post("/payment-requests/<path:pr_id>/advance")
    def advance(pr_id: str) -> Response:
        data = _payload()
        with state.lock:
            for company in store.companies.values():
                if pr_id in company.payment_requests:
                    pr = invoice.advance_payment_request(
                        company,
                        pr_id,
                        str(data.get("approval_status") or "A_APPR"),
                        data.get("payment_status"),
                        state.clock.now(),
                    )
                    return _json(
                        {
                            "id": pr_id,
                            "ApprovalStatus": pr["ApprovalStatus"],
                            "PaymentStatus": pr["PaymentStatus"],
                        }
                    )
        raise ConcurError(404, f"payment request {pr_id} not found")

    # -- knobs ----------------------------------------------------------------------------------
    @bp.post("/limits")
    def set_limit() -> Response:
        data = _payload()
        with state.lock:
            svc.set_limit(
                str(data.get("endpoint")),
                int(data.get("limit", 1)),
                float(data.get("period", 60)),
                str(data.get("company_id") or "*"),
            )
            return _json(svc.summary()["settings"])

    @bp.delete("/limits")
    def clear_limits() -> Response:
        with state.lock:
            svc.clear_limits()
            return _json(svc.summary()["settings"])

    @bp.post("/settings")
    def settings() -> Response:
        data = _payload()
        with state.lock:
            st = store.settings
            if "rotate_refresh_tokens" in data:
                st.rotate_refresh_tokens = _bool(data["rotate_refresh_tokens"])
            if "expired_token_status" in data:
                mode = str(data["expired_token_status"])
                if mode not in ("401", "403", "alternate"):
                    raise ConcurError(400, "expired_token_status must be 401, 403 or alternate")
                st.expired_token_status = mode
            if "expires_in_as_string" in data:
                st.expires_in_as_string = _bool(data["expires_in_as_string"])
            if "custom_field_spelling" in data:
                spelling = str(data["custom_field_spelling"])
                if spelling not in config.CUSTOM_FIELD_SPELLINGS:
                    raise ConcurError(
                        400,
                        "custom_field_spelling must be one of "
                        + ", ".join(config.CUSTOM_FIELD_SPELLINGS),
                    )
                st.custom_field_spelling = spelling
            if "ess_certificate_days" in data:
                try:
                    days = int(data["ess_certificate_days"])
                except (TypeError, ValueError):
                    days = 0
                if days < 1:
                    raise ConcurError(400, "ess_certificate_days must be a whole number >= 1")
                st.ess_certificate_days = days
            if "vendor_search_shape" in data:
                shape = str(data["vendor_search_shape"])
                if shape not in config.VENDOR_SEARCH_SHAPES:
                    raise ConcurError(
                        400,
                        "vendor_search_shape must be one of "
                        + ", ".join(config.VENDOR_SEARCH_SHAPES),
                    )
                st.vendor_search_shape = shape
            return _json(svc.summary()["settings"])

    @bp.post("/refresh-tokens/revoke")
    def revoke() -> Response:
        data = _payload()
        revoked = 0
        with state.lock:
            for rec in store.refresh_tokens.values():
                if (data.get("refresh_token") and rec.token == data["refresh_token"]) or (
                    data.get("company_id") and rec.company_id == data["company_id"]
                ):
                    rec.revoked = True
                    revoked += 1
        if not revoked:
            raise ConcurError(404, "no matching refresh token")
        return _json({"revoked": revoked})

    # -- read-back ------------------------------------------------------------------------------
    @bp.get("/created")
    def created() -> Response:
        with state.lock:
            return _json(svc.created())

    @bp.get("/duplicates")
    def duplicates() -> Response:
        with state.lock:
            return _json(svc.duplicates())

    @bp.get("/events")
    def published() -> Response:
        with state.lock:
            published = [dict(e) for e in store.events]
        deliveries = [d for d in state.deliverer.entries() if d.get("vendor") == "concur"]
        return _json({"events": published, "deliveries": deliveries})

    return bp


def render_ui(svc: ConcurService) -> str:
    """A bare page listing reports with buttons for the workflow actions."""
    rows = []
    for company in svc.store.companies.values():
        for r in company.reports.values():
            buttons = "".join(
                f'<form method="post" action="/_admin/concur/reports/{html.escape(r["ID"])}/{a}" '
                f'style="display:inline"><button name="via" value="ui">{a}</button></form>'
                for a in ("submit", "approve", "pay", "sendback")
            )
            rows.append(
                "<tr>"
                f"<td>{html.escape(company.geo)}</td><td>{html.escape(company.name)}</td>"
                f"<td><code>{html.escape(r['ID'])}</code></td><td>{html.escape(r['Name'])}</td>"
                f"<td>{html.escape(r['_owner'])}</td>"
                f"<td>{html.escape(str(r['_total']))} {html.escape(r['CurrencyCode'])}</td>"
                f"<td>{html.escape(r['ApprovalStatusCode'])}/{html.escape(r['PaymentStatusCode'])}</td>"
                f"<td>{buttons}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sandbox SAP Concur</title>"
        "</head><body><h1>Sandbox SAP Concur: expense reports</h1>"
        "<p>Approving a report publishes a signed <code>statusChanged</code> event to every "
        "matching subscription. Public key: <a href='/_admin/concur/public-key.pem'>"
        "public-key.pem</a></p>"
        "<table border='1' cellpadding='4'><tr><th>geo</th><th>company</th><th>ID</th>"
        "<th>name</th><th>owner</th><th>total</th><th>status</th><th>actions</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
