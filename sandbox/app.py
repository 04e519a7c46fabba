"""Flask application factory: one app, one port, path-prefixed data centres for both vendors."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import TYPE_CHECKING

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from sandbox.faults import FaultMiddleware
from sandbox.state import SandboxState

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from werkzeug.wrappers import Response

log = logging.getLogger(__name__)


def _endpoint_and_tenant(app: Flask):  # type: ignore[no-untyped-def]
    """Resolve (endpoint, tenant) for requests the fault middleware answers before Flask runs."""

    def resolve(environ: WSGIEnvironment) -> tuple[str, str | None]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            rule, _ = app.url_map.bind_to_environ(environ).match(
                environ.get("PATH_INFO", ""), method=method, return_rule=True
            )
            endpoint = f"{method} {rule.rule}"
        except HTTPException:
            endpoint = f"{method} <unmatched>"
        tenant = None
        path = environ.get("PATH_INFO", "")
        if path.startswith("/zoho/"):
            from urllib.parse import parse_qs

            org = parse_qs(environ.get("QUERY_STRING", "")).get("organization_id")
            if org:
                tenant = f"zoho:{org[0]}"
        return endpoint, tenant

    return resolve


def create_app(state: SandboxState | None = None) -> Flask:
    """Build the sandbox app around ``state`` (a fresh, unseeded one if omitted)."""
    state = state or SandboxState()
    app = Flask(__name__, template_folder="templates")
    app.config["SANDBOX_STATE"] = state
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["sandbox"] = state

    @app.after_request
    def _count(response: Response) -> Response:
        rule = request.url_rule
        endpoint = f"{request.method} {rule.rule if rule is not None else '<unmatched>'}"
        if not request.path.startswith("/_admin"):
            state.stats.record(endpoint, getattr(g, "sandbox_tenant", None), response.status_code)
        return response

    def _routing_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        # Routing errors happen before any blueprint is chosen, so vendors register their 404/405
        # shapes per path prefix: app.extensions["sandbox_http_errors"][prefix] = fn(exc).
        handlers = {
            **app.extensions.get("sandbox_404", {}),  # 404-only registrations, same contract
            **app.extensions.get("sandbox_http_errors", {}),
        }
        for prefix in sorted(handlers, key=len, reverse=True):
            if request.path.startswith(prefix):
                return handlers[prefix](exc)
        return {"error": exc.name, "path": request.path}, exc.code

    app.register_error_handler(NotFound, _routing_error)
    app.register_error_handler(MethodNotAllowed, _routing_error)

    from sandbox import admin, ui
    from sandbox.zoho import register as register_zoho

    register_zoho(app, state)
    admin.register(app, state)
    ui.register(app, state)

    if importlib.util.find_spec("sandbox.concur") is not None:
        concur = importlib.import_module("sandbox.concur")
        register = getattr(concur, "register", None)
        if register is not None:
            register(app, state)

    app.wsgi_app = FaultMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, state.faults, state.stats, _endpoint_and_tenant(app)
    )
    return app
