"""Zoho-specific control endpoints under ``/_admin/zoho`` (loopback only)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.wrappers import Response

from sandbox.zoho import operations
from sandbox.zoho.dc import DATA_CENTRES, accounts_server, api_domain
from sandbox.zoho.errors import ZohoError
from sandbox.zoho.store import SANDBOX_CLIENT_ID, TAG_OPTIONS_KEYS

#: Zoho Books' rule for a webhook secret (Books API v3, Webhooks: alphanumeric, 12-50).
WEBHOOK_SECRET_RULE = re.compile(r"[A-Za-z0-9]{12,50}")

if TYPE_CHECKING:
    from sandbox.state import SandboxState
    from sandbox.zoho.store import Org, ZohoStore

bp = Blueprint("zoho_admin", __name__, url_prefix="/_admin/zoho")


def _state() -> SandboxState:
    return current_app.extensions["sandbox"]  # type: ignore[no-any-return]


@bp.before_request
def _loopback() -> Response | None:
    from sandbox.admin import require_loopback

    return require_loopback()


def _bad(message: str, status: int = 400) -> tuple[Response, int]:
    return jsonify({"error": message}), status


@bp.errorhandler(operations.OperationError)
def _op_error(exc: operations.OperationError) -> tuple[Response, int]:
    return _bad(str(exc))


@bp.errorhandler(ZohoError)
def _zoho_error(exc: ZohoError) -> tuple[Response, int]:
    return jsonify({"error": exc.message, "code": exc.code}), 400


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _org(org_id: str) -> tuple[ZohoStore, Org]:
    store = _state().zoho
    org = store.orgs.get(org_id)
    if org is None:
        raise operations.OperationError(f"unknown organization {org_id!r}")
    return store, org


@bp.get("/orgs")
def list_orgs() -> Response:
    store = _state().zoho
    with store.state.lock:
        users = {u.email: u.org_ids for u in store.users.values()}
        out = [
            {
                "organization_id": org.organization_id,
                "name": org.data.get("name"),
                "dc": org.dc,
                "base_currency": org.base_currency()["currency_code"],
                "users": [e for e, ids in users.items() if org.organization_id in ids],
                "counts": {
                    r: len(org.collection(r)) for r in ("contacts", "bills", "invoices", "journals")
                },
                "webhook": bool(store.webhooks.get(org.organization_id)),
            }
            for org in store.orgs.values()
        ]
    return jsonify(
        {
            "organizations": out,
            "users": [
                {"email": u.email, "dc": u.dc, "organization_ids": u.org_ids}
                for u in store.users.values()
            ],
        }
    )


@bp.route("/orgs/<org_id>/webhook", methods=["GET", "PUT", "POST", "DELETE"])
def webhook(org_id: str) -> Response | tuple[Response, int]:
    store = _state().zoho
    with store.state.lock:
        if request.method == "GET":
            return jsonify({"webhook": store.webhooks.get(org_id)})
        if request.method == "DELETE":
            store.webhooks.pop(org_id, None)
            return jsonify({"webhook": None})
        body = _body()
        if not body.get("url"):
            return _bad("url is required")
        secret = body.get("secret") or ""
        if secret and not (isinstance(secret, str) and WEBHOOK_SECRET_RULE.fullmatch(secret)):
            # Books API v3 (Webhooks): "secret" is alphanumeric, 12-50 characters.
            return _bad("secret must be 12-50 characters, letters and digits only")
        fmt = body.get("format", "json")
        if fmt not in ("json", "form"):
            return _bad("format must be json or form")
        config = {
            "url": body["url"],
            "secret": secret,
            "format": fmt,
            "entities": list(body.get("entities") or ("bill", "invoice", "vendor")),
            "attempts": int(body.get("attempts") or store.settings["webhook_attempts"]),
            "headers": dict(body.get("headers") or {}),
        }
        store.webhooks[org_id] = config
        return jsonify({"webhook": config})


def _doc_routes(kind: str) -> None:
    plural = f"{kind}s"

    def create(org_id: str) -> tuple[Response, int]:
        store, org = _org(org_id)
        with store.state.lock:
            data = operations.create_document(store, org, kind, _body(), via="admin")
        return jsonify({kind: data}), 201

    def edit(org_id: str, record_id: str) -> Response | tuple[Response, int]:
        store, org = _org(org_id)
        with store.state.lock:
            try:
                data = operations.edit_document(store, org, kind, record_id, _body(), via="admin")
            except KeyError:
                return _bad(f"{kind} {record_id} does not exist", 404)
        return jsonify({kind: data})

    bp.add_url_rule(f"/orgs/<org_id>/{plural}", f"create_{kind}", create, methods=["POST"])
    bp.add_url_rule(
        f"/orgs/<org_id>/{plural}/<record_id>",
        f"edit_{kind}",
        edit,
        methods=["PATCH", "PUT", "POST"],
    )


_doc_routes("bill")
_doc_routes("invoice")


@bp.post("/orgs/<org_id>/vendors")
def create_vendor(org_id: str) -> tuple[Response, int]:
    store, org = _org(org_id)
    with store.state.lock:
        data = operations.create_vendor(store, org, _body(), via="admin")
    return jsonify({"contact": data}), 201


@bp.route("/orgs/<org_id>/vendors/<contact_id>", methods=["PATCH", "PUT", "POST"])
def edit_vendor(org_id: str, contact_id: str) -> Response | tuple[Response, int]:
    store, org = _org(org_id)
    with store.state.lock:
        try:
            data = operations.edit_vendor(store, org, contact_id, _body(), via="admin")
        except KeyError:
            return _bad(f"vendor {contact_id} does not exist", 404)
    return jsonify({"contact": data})


@bp.route("/limits", methods=["GET", "POST"])
def limits() -> Response | tuple[Response, int]:
    """Set the per-minute limit (global or one org) and the daily quota (global or one org)."""
    store = _state().zoho
    with store.state.lock:
        if request.method == "POST":
            body = _body()
            org_id = body.get("organization_id")
            org = store.orgs.get(org_id) if org_id else None
            if org_id and org is None:
                return _bad(f"unknown organization {org_id!r}")
            if "per_minute" in body:
                store.minute_window.set_limit(
                    int(body["per_minute"]), body.get("period"), key=org_id or None
                )
            elif "period" in body:
                store.minute_window.set_limit(store.minute_window.limit, float(body["period"]))
            if "daily" in body:
                daily = None if body["daily"] is None else int(body["daily"])
                if org is not None:
                    org.daily_limit = daily
                else:
                    store.settings["daily_quota"] = daily
            if "concurrent" in body:
                cap = None if body["concurrent"] is None else int(body["concurrent"])
                if cap is not None and cap < 1:
                    return _bad("concurrent must be a positive number of calls, or null")
                if org is not None:
                    org.concurrent_limit = cap
                else:
                    store.settings["concurrent"] = cap
            if "latency" in body:
                latency = float(body["latency"] or 0.0)
                if not 0 <= latency <= 30:
                    return _bad("latency must be between 0 and 30 seconds")
                store.settings["latency"] = latency
            if body.get("reset_windows"):
                store.minute_window.reset()
                store.reset_concurrency_stats()
        return jsonify(
            {
                "per_minute": store.minute_window.limit,
                "period": store.minute_window.period,
                "daily_default": store.settings["daily_quota"],
                "concurrent_default": store.settings["concurrent"],
                "latency": store.settings["latency"],
                "orgs": {
                    o.organization_id: {
                        "per_minute": store.minute_window.limit_for(o.organization_id),
                        "daily": store.daily_quota(o),
                        "daily_used": o.daily_used,
                        "concurrent": store.concurrency_limit(o),
                        "in_flight": store.in_flight.get(o.organization_id, 0),
                        "max_in_flight": store.max_in_flight.get(o.organization_id, 0),
                        "concurrency_refused": store.concurrency_refused.get(o.organization_id, 0),
                    }
                    for o in store.orgs.values()
                },
            }
        )


@bp.route("/settings", methods=["GET", "POST"])
def settings() -> Response | tuple[Response, int]:
    store = _state().zoho
    with store.state.lock:
        if request.method == "POST":
            body = _body()
            unknown = set(body) - set(store.settings)
            if unknown:
                return _bad(f"unknown settings {sorted(unknown)}")
            if "token_error_status" in body and int(body["token_error_status"]) not in (200, 400):
                return _bad("token_error_status must be 200 or 400")
            if body.get("webhook_signature_encoding", "hex") not in ("hex", "base64"):
                return _bad("webhook_signature_encoding must be hex or base64")
            if body.get("tag_options_key", "results") not in TAG_OPTIONS_KEYS:
                return _bad(f"tag_options_key must be one of {', '.join(TAG_OPTIONS_KEYS)}")
            store.settings.update(body)
        return jsonify(store.settings)


@bp.get("/tokens")
def tokens() -> Response:
    store = _state().zoho
    with store.state.lock:
        now = store.now()
        out = [
            {
                "id": rt.id,
                "user": store.users[rt.user_id].email if rt.user_id in store.users else None,
                "client_id": rt.client_id,
                "dc": rt.dc,
                "scope": rt.scope,
                "revoked": rt.revoked,
                "created_at": rt.created_at,
                "live_access_tokens": sum(
                    1
                    for t in rt.access_tokens
                    if (at := store.access_tokens.get(t)) and not at.revoked and at.expires_at > now
                ),
                "refreshes": store.state.stats.refreshes.get(rt.id, 0),
            }
            for rt in store.refresh_by_id.values()
        ]
    return jsonify({"refresh_tokens": out})


@bp.post("/tokens/revoke")
def revoke_token() -> Response | tuple[Response, int]:
    store = _state().zoho
    body = _body()
    token = body.get("token")
    if body.get("id"):
        rt = store.refresh_by_id.get(body["id"])
        token = rt.token if rt else None
    if not token or not store.revoke(token):
        return _bad("no such live token", 404)
    return jsonify({"revoked": True})


@bp.post("/self-client")
def self_client() -> tuple[Response, int] | Response:
    """A grant code as the API console's Self Client would show it (always offline access)."""
    store = _state().zoho
    body = _body()
    with store.state.lock:
        email = body.get("user")
        user = store.user_by_email(email) if email else store.default_user()
        if user is None:
            return _bad("no such user (is the sandbox seeded?)")
        client_id = body.get("client_id") or SANDBOX_CLIENT_ID
        if client_id not in store.clients:
            return _bad("unknown client_id")
        ttl = float(body.get("expires_in") or 600)
        grant = store.issue_grant(
            client_id=client_id,
            user=user,
            scope=body.get("scope") or "ZohoBooks.fullaccess.all",
            access_type="offline",
            prompt="consent",
            ttl=ttl,
        )
    base = request.host_url.rstrip("/")
    return jsonify(
        {
            "code": grant.code,
            "client_id": client_id,
            "scope": grant.scope,
            "expires_in": ttl,
            "location": user.dc,
            "accounts_server": accounts_server(base, user.dc),
            "api_domain": api_domain(base, user.dc),
            "organization_ids": user.org_ids,
        }
    )


@bp.get("/datacentres")
def datacentres() -> Response:
    base = request.host_url.rstrip("/")
    return jsonify(
        {
            dc: {
                "accounts_server": accounts_server(base, dc),
                "api_domain": api_domain(base, dc),
                "real": list(real),
            }
            for dc, real in DATA_CENTRES.items()
        }
    )
