"""Simulated SAP Concur: OAuth2, Invoice v3 (payment requests, vendors v3.1), Expense v3/v4 and
the Event Subscription Service, served per data centre at ``/concur/<geo>``.

``register`` is the only entry point the core app calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from sandbox.concur import seed as seed_module
from sandbox.concur.admin_views import make_admin_blueprint
from sandbox.concur.errors import ConcurError, family_for_path, render
from sandbox.concur.service import ConcurService
from sandbox.concur.views import make_blueprint

if TYPE_CHECKING:
    from sandbox.state import SandboxState

__all__ = ["ConcurService", "register"]


def _fault_body(status: int, path: str) -> Response:
    """Injected 429/5xx look like Concur's: 429 with ``retry-after: 0``, others per API family."""
    if status == 429:
        from sandbox.concur.errors import rate_limited

        err = rate_limited()
    else:
        err = ConcurError(
            status, "Internal Server Error" if status == 500 else "Service Unavailable"
        )
    return render(err, path, "")


def register(app: Flask, state: SandboxState) -> None:
    svc = ConcurService(state)
    state.extensions["concur"] = svc

    app.register_blueprint(make_blueprint(svc))
    app.register_blueprint(make_admin_blueprint(svc))

    def not_found(exc: Any) -> Response:
        return render(
            ConcurError(404, "Not Found", family=family_for_path(request.path)), request.path, ""
        )

    app.extensions.setdefault("sandbox_404", {})["/concur/"] = not_found
    state.faults.register_body_factory("/concur/", _fault_body)

    state.on_reset(svc.reset)
    state.on_seed(svc.seed)

    def gen_reports(n: int, **options: Any) -> dict[str, Any]:
        return seed_module.generate_reports(svc.store, state.clock.now(), n, **options)

    def gen_vendors(n: int, **options: Any) -> dict[str, Any]:
        return seed_module.generate_vendors(svc.store, state.clock.now(), n, **options)

    state.register_generator("reports", gen_reports)
    state.register_generator("concur_vendors", gen_vendors)
    state.register_duplicates("concur", svc.duplicates)
    state.register_created("concur", svc.created)

    register_ui = getattr(state, "register_ui", None)
    if callable(register_ui):
        register_ui(
            lambda: (
                "<h2>SAP Concur</h2><p><a href='/_admin/concur/ui'>Expense reports "
                "(approve to publish a signed statusChanged event)</a> · "
                "<a href='/_admin/concur/public-key.pem'>ESS public key</a></p>"
            )
        )
