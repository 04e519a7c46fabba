"""A tiny HTML page to create and edit Zoho records by hand (and so fire webhooks).

Demo aid: someone showing the connector clicks "new bill" and watches it reach Concur.
Loopback only, like the admin API it stands next to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from sandbox.admin import require_loopback
from sandbox.zoho import operations
from sandbox.zoho.errors import ZohoError

if TYPE_CHECKING:
    from sandbox.state import SandboxState

bp = Blueprint("sandbox_ui", __name__)
bp.before_request(require_loopback)

LIMIT = 25


def _state() -> SandboxState:
    return current_app.extensions["sandbox"]  # type: ignore[no-any-return]


def _recent(coll: dict[str, Any], n: int = LIMIT) -> list[dict[str, Any]]:
    recs = sorted(coll.values(), key=lambda r: (r.mtime, r.ctime), reverse=True)[:n]
    return [r.data for r in recs]


@bp.get("/")
@bp.get("/_admin/ui")
def index() -> str:
    state = _state()
    store = state.zoho
    with state.lock:
        orgs = list(store.orgs.values())
        org_id = request.args.get("org") or (orgs[0].organization_id if orgs else None)
        org = store.orgs.get(org_id or "")
        ctx: dict[str, Any] = {
            "orgs": [{"id": o.organization_id, "name": o.data["name"], "dc": o.dc} for o in orgs],
            "org": org.data if org else None,
            "org_id": org_id,
            "message": request.args.get("message"),
            "webhook": store.webhooks.get(org_id or ""),
            "base": request.host_url.rstrip("/"),
        }
        if org is not None:
            vendors = [r.data for r in org.contacts.values() if r.data["contact_type"] == "vendor"]
            ctx.update(
                vendors=sorted(vendors, key=lambda v: v["contact_name"].lower())[:100],
                bills=_recent(org.bills),
                invoices=_recent(org.invoices),
                counts={
                    "bills": len(org.bills),
                    "invoices": len(org.invoices),
                    "vendors": len(vendors),
                    "journals": len(org.journals),
                },
                journals=_recent(org.journals, 10),
                currencies=[c["currency_code"] for c in org.currencies.values()],
            )
        sections = [fn() for fn in state.ui_sections]
    return render_template("sandbox_index.html", sections=sections, **ctx)


def _back(org_id: str, message: str) -> Response:
    return redirect(url_for("sandbox_ui.index", org=org_id, message=message))


@bp.post("/_admin/ui/<org_id>/<kind>")
def create(org_id: str, kind: str) -> Response:
    state = _state()
    store = state.zoho
    form = {k: v for k, v in request.form.items() if v != ""}
    with state.lock:
        org = store.orgs.get(org_id)
        if org is None or kind not in ("bill", "invoice", "vendor"):
            return _back(org_id, "unknown organization or record kind")
        try:
            if kind == "vendor":
                data = operations.create_vendor(store, org, form, via="ui")
                return _back(org_id, f"created vendor {data['contact_name']}")
            data = operations.create_document(store, org, kind, form, via="ui")
        except (operations.OperationError, ZohoError) as exc:
            return _back(org_id, f"error: {exc}")
    return _back(org_id, f"created {kind} {data[f'{kind}_number']}")


@bp.post("/_admin/ui/<org_id>/<kind>/<record_id>")
def edit(org_id: str, kind: str, record_id: str) -> Response:
    state = _state()
    store = state.zoho
    form = {k: v for k, v in request.form.items() if v != ""}
    with state.lock:
        org = store.orgs.get(org_id)
        if org is None or kind not in ("bill", "invoice", "vendor"):
            return _back(org_id, "unknown organization or record kind")
        try:
            if kind == "vendor":
                operations.edit_vendor(store, org, record_id, form, via="ui")
            else:
                operations.edit_document(store, org, kind, record_id, form, via="ui")
        except KeyError:
            return _back(org_id, f"{kind} {record_id} does not exist")
        except (operations.OperationError, ZohoError) as exc:
            return _back(org_id, f"error: {exc}")
    return _back(org_id, f"edited {kind} {record_id}")


def register(app: Flask, state: SandboxState) -> None:
    app.register_blueprint(bp)
