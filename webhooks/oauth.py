"""The Zoho Books web authorization: start, callback, and the organization choice page.

Thin views over ``connector.authorize`` and ``connector.oauth_state``: the ``state`` is signed,
expires after 10 minutes, works once and is bound to the browser that started (an HttpOnly,
SameSite=Lax cookie whose hash is in the state row); the code is exchanged at the accounts
server Zoho's redirect names (only a known Zoho accounts host or a trusted one); a user who sees
several organizations is asked which one to use. Re-authorizing a connection resumes its parked
records.

Takeover guard (issue #12, docs/security.md): starting needs the operator's login (the same
check as ``/ops``); a login that would move the connection to another organization is held and
shown as "old -> new" on a confirmation page whose POST again needs the operator and the
browser-bound single-use state; nothing is stored and nothing revoked before that. Every page
here carries the ``/ops`` security headers.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, g, redirect, render_template_string, request
from werkzeug.wrappers import Response

from connector import authorize, oauth_state
from connector.config import Settings
from connector.db import Database
from connector.errors import ApiError, ConnectorError, UntrustedHostError, WebhookError
from connector.zoho import auth as zoho_auth
from webhooks.ops import operator_check, security_headers
from webhooks.senders import sender

log = logging.getLogger(__name__)

bp = Blueprint("oauth", __name__, url_prefix="/oauth")

#: The browser-binding cookie (its value's hash is in the state row).
COOKIE = "connector_oauth_browser"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}
label{display:block;margin:.5rem 0}button{margin-top:1rem;padding:.4rem 1rem}
.error{color:#a00}</style></head><body>
<h1>{{ title }}</h1>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
{% if message %}<p>{{ message }}</p>{% endif %}
{% if organizations %}
<form method="post" action="{{ action }}">
  <input type="hidden" name="state" value="{{ state }}">
  <p>Your Zoho user can see several Books organizations. Which one does connection
  <strong>{{ connection_id }}</strong> keep in lockstep with SAP Concur?</p>
  {% for org in organizations %}
  <label><input type="radio" name="organization_id" value="{{ org.organization_id }}" required>
    {{ org.name }} <small>({{ org.organization_id }})</small></label>
  {% endfor %}
  <button type="submit">Use this organization</button>
</form>
{% endif %}
{% if change %}
<form method="post" action="{{ action }}">
  <input type="hidden" name="state" value="{{ state }}">
  <p class="error">This login would move connection <strong>{{ connection_id }}</strong> to
  another Zoho Books organization. Its payables and expenses would go to the new books.</p>
  <p>Now: <strong>{{ change.old_name }}</strong> <small>({{ change.old_organization_id }})</small></p>
  <p>New:</p>
  {% for org in change.organizations %}
  <label><input type="radio" name="organization_id" value="{{ org.organization_id }}" required>
    {{ org.name }} <small>({{ org.organization_id }})</small></label>
  {% endfor %}
  <button type="submit" name="action" value="confirm">Confirm: move {{ change.old_organization_id }} to the selected organization</button>
  <button type="submit" name="action" value="cancel" formnovalidate>Cancel (keep {{ change.old_organization_id }})</button>
</form>
{% endif %}
</body></html>
"""


def _settings() -> Settings:
    return current_app.config["CONNECTOR_SETTINGS"]  # type: ignore[no-any-return]


def _db() -> Database:
    return current_app.config["CONNECTOR_DB"]  # type: ignore[no-any-return]


def _page(title: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template_string(PAGE, title=title, **context), status


@bp.after_request
def _headers(response: Response) -> Response:
    return security_headers(response)


def _browser() -> str | None:
    return request.cookies.get(COOKIE) or None


def _failure(exc: ConnectorError) -> tuple[str, int]:
    """An error page carrying the one line a person needs; never a stack trace."""
    if isinstance(exc, WebhookError):
        status = exc.status
    elif isinstance(exc, UntrustedHostError):
        status = 400
    elif isinstance(exc, ApiError):
        status = 502
    else:
        status = 400
    message = exc.context.get("vendor_message") if isinstance(exc, ApiError) else None
    log.warning("Zoho authorization failed: %s: %s", type(exc).__name__, exc)
    return _page("Zoho Books authorization failed", status, error=message or str(exc))


def _enqueue(resumed: list[tuple[int, str]]) -> None:
    """Put resumed records back on the queues; the sweeper re-drives any this misses."""
    if not resumed:
        return
    enqueue = sender("ENQUEUE_RECORD")
    for record_id, step in resumed:
        try:
            enqueue(record_id, step)
        except Exception as exc:
            log.warning(
                "could not enqueue resumed record %s (%s); the sweeper will re-drive it",
                record_id,
                exc,
            )


def _redirect_uri() -> str:
    """Built from ``CONNECTOR_PUBLIC_URL`` (required in production), never from ``Host``."""
    from connector import connections

    return f"{connections.public_base_url(_settings())}/oauth/zoho/callback"


@bp.get("/zoho/start")
def zoho_start() -> Response | tuple[str, int]:
    """Operator only: send the browser to Zoho's consent page with a browser-bound state."""
    denied = operator_check()
    if denied is not None:
        return denied
    raw = request.args.get("connection", "")
    browser = oauth_state.browser_nonce()
    try:
        from connector import connections

        ref = connections.resolve(_db(), raw)
        redirect_uri = _redirect_uri()
        state = oauth_state.issue(
            _db(),
            _settings(),
            ref.id,
            oauth_state.AUTHORIZE,
            data={"redirect_uri": redirect_uri},
            browser=browser,
        )
        url = zoho_auth.authorization_url(_settings(), redirect_uri=redirect_uri, state=state)
    except ConnectorError as exc:
        return _failure(exc)
    response = redirect(url, code=302)
    response.set_cookie(
        COOKIE,
        browser,
        max_age=int(oauth_state.STATE_TTL_SECONDS) * 2,
        path="/oauth/",
        httponly=True,
        samesite="Lax",  # Zoho's redirect back is a top-level GET: Lax sends it, a POST from
        # another site does not.
        secure=redirect_uri.startswith("https://") or request.is_secure,
    )
    return response  # type: ignore[return-value]


@bp.get("/zoho/callback")
def zoho_callback() -> tuple[str, int]:
    """Zoho's redirect: check state + browser, exchange the code where Zoho says, settle the org."""
    args = request.args
    settings = _settings()
    try:
        state = oauth_state.consume(
            _db(),
            settings,
            args.get("state"),
            oauth_state.AUTHORIZE,
            browser=_browser(),
            require_browser=True,
        )
        if args.get("error"):
            raise ConnectorError(f"Zoho did not grant access: {args['error'][:100]}")
        code, raw_accounts = args.get("code"), args.get("accounts-server")
        if not code:
            raise ConnectorError("Zoho's redirect carries no code")
        # Without multi-DC the redirect may omit accounts-server: the start server issued it.
        accounts_server = zoho_auth.check_accounts_server(
            raw_accounts if raw_accounts is not None else settings.zoho_accounts_url, settings
        )
        result = authorize.complete_zoho_web(
            _db(),
            settings,
            state.connection_id,
            code=code,
            accounts_server=accounts_server,
            # Zoho's redirect names the data centre; data_centre() keeps only known codes and
            # prefers the hosts, so a forged value cannot mislabel the connection.
            location=args.get("location") or zoho_auth.location_of(accounts_server),
            redirect_uri=str(state.data.get("redirect_uri") or _redirect_uri()),
        )
    except ConnectorError as exc:
        return _failure(exc)
    if result.pending is not None:
        confirm = oauth_state.issue(
            _db(),
            settings,
            result.connection_id,
            oauth_state.CONFIRM_CHANGE,
            data=result.pending.as_data(),
            browser=_browser(),
        )
        return _page(
            "Confirm the change of Zoho Books organization",
            409,
            change=result.pending,
            state=confirm,
            action="/oauth/zoho/confirm",
            connection_id=result.connection_id,
        )
    if result.organization_id is None:
        choice = oauth_state.issue(
            _db(),
            settings,
            result.connection_id,
            oauth_state.CHOOSE_ORGANIZATION,
            data={"organizations": authorize.organizations_as_data(result.organizations)},
            browser=_browser(),
        )
        return _page(
            "Choose the Zoho Books organization",
            organizations=result.organizations,
            state=choice,
            action="/oauth/zoho/organization",
            connection_id=result.connection_id,
        )
    _enqueue(result.resumed)
    return _connected(result.connection_id, result.organization_id, result.organizations)


@bp.post("/zoho/confirm")
def zoho_confirm() -> Response | tuple[str, int]:
    """The operator confirms (or cancels) moving a connection to another organization.

    Needs the operator's login, the browser cookie and the single-use confirmation state (the
    form's CSRF token: unguessable, bound to this browser, and the SameSite=Lax cookie is not
    sent on a cross-site POST). Only then is the new grant stored and the old token revoked.
    """
    denied = operator_check()
    if denied is not None:
        return denied
    try:
        state = oauth_state.consume(
            _db(),
            _settings(),
            request.form.get("state"),
            oauth_state.CONFIRM_CHANGE,
            browser=_browser(),
            require_browser=True,
        )
        pending = authorize.pending_from_data(state.connection_id, state.data)
        if request.form.get("action") != "confirm":
            authorize.discard_zoho_change(_settings(), pending)
            return _page(
                "Zoho Books change cancelled",
                message=(
                    f"Connection {state.connection_id} keeps organization "
                    f"{pending.old_organization_id}; the new login was revoked."
                ),
            )
        chosen = request.form.get("organization_id", "")
        resumed = authorize.confirm_zoho_change(
            _db(), _settings(), pending, chosen, confirmed_by=f"ops:{g.ops_user}"
        )
    except ConnectorError as exc:
        return _failure(exc)
    _enqueue(resumed)
    return _connected(state.connection_id, chosen, pending.organizations)


@bp.post("/zoho/organization")
def zoho_organization() -> tuple[str, int]:
    """The choice page's answer."""
    try:
        state = oauth_state.consume(
            _db(),
            _settings(),
            request.form.get("state"),
            oauth_state.CHOOSE_ORGANIZATION,
            browser=_browser(),
            require_browser=True,
        )
        organizations = [
            authorize.Organization(str(o["organization_id"]), str(o["name"]))
            for o in state.data.get("organizations") or []
        ]
        chosen = request.form.get("organization_id", "")
        resumed = authorize.choose_zoho_organization(
            _db(), state.connection_id, chosen, organizations
        )
    except ConnectorError as exc:
        return _failure(exc)
    _enqueue(resumed)
    return _connected(state.connection_id, chosen, organizations)


def _connected(
    connection_id: int, organization_id: str, organizations: list[authorize.Organization]
) -> tuple[str, int]:
    name = next((o.name for o in organizations if o.organization_id == organization_id), "")
    return _page(
        "Zoho Books connected",
        message=(
            f"Connection {connection_id} now uses Zoho Books organization {name} "
            f"({organization_id}). Check it with `connector ping {connection_id}`."
        ),
    )
