"""Zoho Accounts under ``{base}/zoho/<dc>/accounts``: consent page, token, revoke, serverinfo.

The consent page approves at once (there is no one to click), then redirects like Zoho's
multi-DC flow: ``code``, ``location``, ``accounts-server`` and ``state``.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import Blueprint, current_app, g, redirect, request
from werkzeug.wrappers import Response

from sandbox.zoho.dc import DATA_CENTRES, accounts_server
from sandbox.zoho.store import OAuthError

if TYPE_CHECKING:
    from sandbox.state import SandboxState

bp = Blueprint("zoho_accounts", __name__, url_prefix="/zoho/<dc>/accounts")


def _state() -> SandboxState:
    return current_app.extensions["sandbox"]  # type: ignore[no-any-return]


def public_base() -> str:
    """The base URL the caller used, so redirects and api_domain point back at this server."""
    return request.host_url.rstrip("/") or _state().base_url


@bp.url_value_preprocessor
def _pop_dc(endpoint: str | None, values: dict[str, Any] | None) -> None:
    g.zoho_dc = (values or {}).pop("dc", None)


@bp.before_request
def _known_dc() -> Response | None:
    if g.zoho_dc not in DATA_CENTRES:
        return Response("Not Found", status=404, mimetype="text/plain")
    return None


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _oauth_error(exc: OAuthError) -> Response:
    body: dict[str, Any] = {"error": exc.error}
    if exc.description:
        body["error_description"] = exc.description
        body["status"] = "failure"
    status = int(_state().zoho.settings.get("token_error_status", 200))
    return _json(body, status)


def _param(name: str) -> str | None:
    """Zoho's docs put token parameters in the query string of the POST; forms work too."""
    value = request.form.get(name)
    return value if value is not None else request.args.get(name)


def _error_page(title: str, detail: str, status: int = 400) -> Response:
    page = (
        f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(detail)}</p>"
    )
    return Response(page, status=status, mimetype="text/html")


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@bp.get("/oauth/v2/auth")
def authorize() -> Response:
    store = _state().zoho
    args = request.args
    client_id = args.get("client_id")
    if not client_id or client_id not in store.clients:
        return _error_page("Invalid Client", "The client_id is not registered.")
    redirect_uri = args.get("redirect_uri")
    if not redirect_uri:
        return _error_page("Invalid Redirect Uri", "redirect_uri is required.")
    state = args.get("state")
    extra = {"state": state} if state is not None else {}
    if args.get("response_type", "code") != "code":
        return redirect(_with_query(redirect_uri, {"error": "unsupported_response_type", **extra}))
    if not args.get("scope"):
        return redirect(_with_query(redirect_uri, {"error": "invalid_scope", **extra}))
    if args.get("sandbox_deny"):
        return redirect(_with_query(redirect_uri, {"error": "access_denied", **extra}))
    with store.state.lock:
        email = args.get("sandbox_user") or args.get("login_hint")
        user = store.user_by_email(email) if email else store.default_user()
        if user is None:
            return _error_page("Unknown user", f"No sandbox user {email!r}; seed the sandbox.")
        grant = store.issue_grant(
            client_id=client_id,
            user=user,
            scope=args["scope"],
            access_type=args.get("access_type", "online"),
            redirect_uri=redirect_uri,
            prompt=args.get("prompt"),
        )
    # Multi-DC: whichever accounts server the user started on, Zoho sends them back with
    # their home data centre; the code only works there.
    params = {
        "code": grant.code,
        "location": user.dc,
        "accounts-server": accounts_server(public_base(), user.dc),
        **extra,
    }
    return redirect(_with_query(redirect_uri, params))


@bp.post("/oauth/v2/token")
def token() -> Response:
    state = _state()
    store = state.zoho
    grant_type = _param("grant_type")
    try:
        if grant_type == "authorization_code":
            out = store.exchange_code(
                g.zoho_dc,
                _param("client_id"),
                _param("client_secret"),
                _param("code"),
                public_base(),
            )
        elif grant_type == "refresh_token":
            out = store.refresh(
                g.zoho_dc,
                _param("client_id"),
                _param("client_secret"),
                _param("refresh_token"),
                public_base(),
            )
        else:
            raise OAuthError("unsupported_grant_type")
    except OAuthError as exc:
        return _oauth_error(exc)
    return _json(out)


@bp.post("/oauth/v2/token/revoke")
def revoke() -> Response:
    store = _state().zoho
    if store.revoke(_param("token"), g.zoho_dc):
        return _json({"status": "success"})
    return _oauth_error(OAuthError("invalid_code"))


@bp.get("/oauth/serverinfo")
def serverinfo() -> Response:
    base = public_base()
    return _json(
        {"result": "success", "locations": {dc: accounts_server(base, dc) for dc in DATA_CENTRES}}
    )
