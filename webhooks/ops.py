"""``/ops``: the operator's page. Connections, counts, problems grouped with a fix hint, replay.

Server-rendered Jinja (``webhooks/templates/ops/``), no front-end build. Behind HTTP basic auth
from ``OPS_BASIC_AUTH`` (user:password); without it the page is open only to loopback requests
on a web process bound to loopback (``WEB_BIND``) and answers 503 otherwise. Every POST carries a CSRF token: an HMAC of the user name and a
timestamp under a key derived from ``CONNECTOR_SECRET_KEY``, valid 12 hours, so no session
store is needed.

Replay buttons call ``connector.operations.replay`` (the same functions as ``connector replay``) with
``tasks.pipeline.enqueue``, or the ``OPS_ENQUEUE`` callable from the app config (tests; see
``webhooks.senders``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from connector import inbox, operations
from connector.config import Settings
from connector.db import Database
from connector.errors import ConnectorError
from connector.operations import problems as operations_problems
from connector.operations import records as operations_records
from connector.operations import replay as operations_replay
from flows import FLOWS
from webhooks.senders import sender

bp = Blueprint("ops", __name__, url_prefix="/ops", template_folder="templates")

CSRF_MAX_AGE = 12 * 3600
REALM = 'Basic realm="connector ops", charset="UTF-8"'


def _settings() -> Settings:
    return current_app.config["CONNECTOR_SETTINGS"]  # type: ignore[no-any-return]


def _db() -> Database:
    return current_app.config["CONNECTOR_DB"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- auth + csrf


def _local_request() -> bool:
    """True when this request comes straight from this machine (no proxy in between)."""
    from connector.config import is_loopback_host

    proxied = any(h in request.headers for h in ("X-Forwarded-For", "Forwarded", "X-Real-Ip"))
    return not proxied and is_loopback_host(request.remote_addr or "")


def operator_check() -> Response | None:
    """The operator's login, shared by ``/ops`` and the OAuth start and confirmation views.

    Open without a password only when the web process is declared bound to loopback
    (``WEB_BIND``, set by ``connector run``) *and* the request itself comes from loopback with
    no proxy header. Anything else needs ``OPS_BASIC_AUTH``; without it the answer is 503
    naming the setting. The database URL plays no part (issue #12 item 4). Sets ``g.ops_user``.
    """
    settings = _settings()
    expected = settings.ops_basic_auth
    if not expected:
        if settings.web_on_loopback and _local_request():
            g.ops_user = "local"
            return None
        return Response(
            "The operator pages are disabled: this web process is not bound to loopback only "
            "(WEB_BIND), so they need a password. Set OPS_BASIC_AUTH=user:password.\n",
            503,
            mimetype="text/plain",
        )
    user, _, password = expected.partition(":")
    auth = request.authorization
    ok = (
        auth is not None
        and auth.type == "basic"
        and hmac.compare_digest((auth.username or "").encode(), user.encode())
        & hmac.compare_digest((auth.password or "").encode(), password.encode())
    )
    if not ok:
        return Response(
            "Authentication required.\n",
            401,
            {"WWW-Authenticate": REALM},
            mimetype="text/plain",
        )
    g.ops_user = user
    return None


@bp.before_request
def _require_auth() -> Response | None:
    return operator_check()


@bp.after_request
def _headers(response: BaseResponse) -> BaseResponse:
    return security_headers(response)


def security_headers(response: BaseResponse) -> BaseResponse:
    """The operator pages' headers: no caching, no framing, no sniffing, no referrer, tight CSP."""
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    )
    return response


def _csrf_key() -> bytes:
    return hmac.new(_settings().secret_keys[0].encode(), b"ops-csrf", hashlib.sha256).digest()


def csrf_token(user: str, *, now: float | None = None) -> str:
    stamp = str(int(now if now is not None else time.time()))
    sig = hmac.new(_csrf_key(), f"{user}:{stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{sig}"


def check_csrf() -> bool:
    """True when the form's ``csrf_token`` was made for this operator within 12 hours."""
    token = request.form.get("csrf_token", "")
    stamp, _, sig = token.partition(".")
    if not stamp.isdigit() or not sig:
        return False
    expected = hmac.new(_csrf_key(), f"{g.ops_user}:{stamp}".encode(), hashlib.sha256).hexdigest()
    fresh = 0 <= time.time() - int(stamp) <= CSRF_MAX_AGE
    return fresh and hmac.compare_digest(expected, sig)


@bp.app_template_global("ops_csrf_token")
def _template_csrf() -> str:
    return csrf_token(g.get("ops_user", ""))


@bp.app_template_filter("pretty_json")
def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


# --------------------------------------------------------------------------- pages


@bp.get("/")
def index() -> str:
    db = _db()
    counts = operations_problems.counts_by_flow_state(db)
    states = [s for s in operations.PROBLEM_STATES]
    groups = operations_problems.problem_groups(db)
    overview = operations_problems.connections_overview(db)
    failed_events = inbox.list_failed(db, limit=100)
    return render_template(
        "ops/index.html",
        connections=overview,
        zoho_quotas=_zoho_quotas(overview),
        counts=counts,
        all_states=_state_columns(counts),
        groups=groups,
        failed_events=failed_events,
        problem_states=[str(s) for s in states],
        replayable={str(s) for s in operations.REPLAYABLE_STATES},
        message=request.args.get("message"),
        user=g.ops_user,
    )


def _zoho_quotas(overview: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each Zoho organization's remaining daily quota (``connector.limits.quota``), as last read."""
    from connector import connections
    from connector.limits import quota

    settings = _settings()
    orgs = [c["zoho_organization_id"] for c in overview if c.get("zoho_organization_id")]
    if not orgs:
        return []
    try:
        store = connections.quota_store(settings)
        return quota.overview(store, orgs, settings.zoho_daily_reserve)
    except Exception as exc:  # the page must render even when Redis is down
        return [
            {"organization_id": o, "status": f"unavailable ({type(exc).__name__})"} for o in orgs
        ]


def _state_columns(counts: dict[str, dict[str, int]]) -> list[str]:
    order = operations.STATE_ORDER
    present = {s for per in counts.values() for s in per}
    return [s for s in order if s in present] + sorted(present - set(order))


@bp.get("/records")
def records() -> str:
    state = request.args.getlist("state") or None
    try:
        rows = operations_records.list_records(
            _db(),
            connection=request.args.get("connection") or None,
            flow=request.args.get("flow") or None,
            state=state,
            limit=min(int(request.args.get("limit", 100) or 100), 1000),
        )
    except (ConnectorError, ValueError) as exc:
        return render_template("ops/error.html", message=str(exc)), 400  # type: ignore[return-value]
    return render_template(
        "ops/records.html",
        rows=rows,
        filters=request.args,
        message=request.args.get("message"),
        replayable={str(s) for s in operations.REPLAYABLE_STATES},
        user=g.ops_user,
    )


@bp.get("/records/<int:record_id>")
def record(record_id: int) -> Any:
    try:
        info = operations_records.show_record(_db(), record_id, sandbox_url=_settings().sandbox_url)
    except operations.OperationError as exc:
        return render_template("ops/error.html", message=str(exc), user=g.ops_user), 404
    return render_template(
        "ops/record.html",
        r=info,
        message=request.args.get("message"),
        user=g.ops_user,
    )


# --------------------------------------------------------------------------- actions


def _back(default: str, message: str) -> Response:
    target = request.form.get("next") or default
    if not target.startswith("/ops") or target.startswith("//"):
        target = default
    target = target.split("?", 1)[0]
    return redirect(f"{target}?{urlencode({'message': message})}", code=303)


def _summary(report: operations_replay.ReplayReport) -> str:
    details = "; ".join(f"#{o.record_id}: {o.detail}" for o in report.outcomes[:5])
    return f"replay: {report.counts_text() or 'nothing to do'}" + (
        f" ({details})" if details else ""
    )


def _csrf_refused() -> tuple[str, int] | None:
    """The error page every POST answers when its form fails ``check_csrf``; None when it passes."""
    if check_csrf():
        return None
    return render_template(
        "ops/error.html",
        message="The form expired or did not come from this page (CSRF check failed). "
        "Reload the page and try again.",
        user=g.ops_user,
    ), 400


def _form_ids(field: str) -> list[int]:
    return [int(v) for v in request.form.getlist(field) if v.strip().isdigit()]


@bp.post("/replay")
def replay() -> Any:
    if (refused := _csrf_refused()) is not None:
        return refused
    who = f"ops:{g.ops_user}"
    try:
        if request.form.get("group"):
            report = operations_problems.replay_group(
                _db(), request.form["group"], requested_by=who, enqueue=sender("OPS_ENQUEUE")
            )
        else:
            ids = _form_ids("record_id")
            if not ids:
                return _back(url_for("ops.index"), "nothing selected")
            report = operations_replay.replay(
                _db(),
                ids,
                requested_by=who,
                enqueue=sender("OPS_ENQUEUE"),
                verify=request.form.get("verify") == "1",
                registry=FLOWS,
            )
    except ConnectorError as exc:
        return _back(url_for("ops.index"), f"replay refused: {exc}")
    return _back(url_for("ops.index"), _summary(report))


@bp.post("/events/replay")
def replay_events() -> Any:
    """Replay failed webhook events: back to ``received`` with a fresh attempt count, enqueued."""
    if (refused := _csrf_refused()) is not None:
        return refused
    ids = _form_ids("event_id")
    every = request.form.get("all") == "1"
    if not ids and not every:
        return _back(url_for("ops.index"), "nothing selected")
    done = inbox.replay_failed(
        _db(),
        None if every else ids,
        requested_by=f"ops:{g.ops_user}",
        enqueue_event=sender("OPS_ENQUEUE_EVENT"),
    )
    shown = ", ".join(f"#{i}" for i in done[:10])
    return _back(url_for("ops.index"), f"replayed {len(done)} webhook event(s) {shown}".strip())
