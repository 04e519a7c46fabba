"""Control and inspection API under ``/_admin`` (loopback only) and a client for it.

Tests, benchmarks and the docs' demo script use this to reset and seed, move the clock, arm
faults and read back what a connector did (requests, 429s, refreshes, duplicates).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

import requests
from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from sandbox.state import SandboxState

bp = Blueprint("sandbox_admin", __name__, url_prefix="/_admin")


def _state() -> SandboxState:
    return current_app.extensions["sandbox"]  # type: ignore[no-any-return]


def is_loopback(addr: str | None) -> bool:
    if not addr:
        return False
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def require_loopback() -> Response | None:
    """before_request hook for every control surface; forwarded-for headers are not trusted."""
    if not is_loopback(request.remote_addr):
        resp = jsonify({"error": "the sandbox admin API only answers loopback clients"})
        resp.status_code = 403
        return resp
    return None


bp.before_request(require_loopback)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


@bp.get("/")
def index() -> Response:
    return jsonify(
        {
            "endpoints": sorted(
                f"{','.join(sorted(r.methods - {'HEAD', 'OPTIONS'}))} {r.rule}"  # type: ignore[operator]
                for r in current_app.url_map.iter_rules()
                if r.rule.startswith("/_admin")
            ),
            "generators": _state().generators(),
            "base_url": _state().base_url,
        }
    )


@bp.post("/reset")
def reset() -> Response:
    _state().reset()
    return jsonify({"reset": True})


@bp.post("/seed")
def seed() -> Response:
    state = _state()
    state.seed()
    return jsonify({"seeded": True})


@bp.post("/generate")
def generate() -> Response | tuple[Response, int]:
    body = _body()
    kind = body.pop("kind", None)
    n = body.pop("n", None)
    if not kind or n is None:
        return jsonify({"error": "kind and n are required"}), 400
    try:
        return jsonify(_state().generate(str(kind), int(n), **body))
    except (KeyError, ValueError, TypeError) as exc:
        return jsonify({"error": str(exc)}), 400


@bp.get("/clock")
def clock() -> Response:
    c = _state().clock
    return jsonify({"now": c.now(), "offset": c.offset})


@bp.post("/clock/advance")
def advance() -> Response | tuple[Response, int]:
    try:
        seconds = float(_body().get("seconds", 0))
        offset = _state().clock.advance(seconds)
    except (TypeError, ValueError) as exc:
        return jsonify({"error": str(exc)}), 400
    return jsonify({"now": _state().clock.now(), "offset": offset})


@bp.route("/faults", methods=["GET", "POST", "DELETE"])
def faults() -> Response | tuple[Response, int]:
    registry = _state().faults
    if request.method == "DELETE":
        registry.clear()
        return jsonify({"faults": []})
    if request.method == "POST":
        body = _body()
        try:
            fault = registry.add(
                body.get("method", "*"),
                body.get("path", "*"),
                body.get("kind", ""),
                count=int(body.get("count", 1)),
                delay=float(body.get("delay", 0.0)),
            )
        except (TypeError, ValueError) as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"fault": fault.as_dict()}), 201
    return jsonify({"faults": registry.list(), "history": list(registry.history)})


@bp.get("/stats")
def stats() -> Response:
    return jsonify(_state().stats.snapshot())


@bp.get("/snapshot")
def snapshot() -> Response:
    """Whether this sandbox keeps its state on disk and whether it started from a snapshot."""
    keeper = _state().snapshot
    return jsonify({"enabled": keeper is not None, **(keeper.info() if keeper else {})})


@bp.get("/created")
def created() -> Response:
    return jsonify(_state().created())


@bp.get("/duplicates")
def duplicates() -> Response:
    return jsonify(_state().duplicates())


@bp.get("/deliveries")
def deliveries() -> Response:
    d = _state().deliverer
    return jsonify(
        {
            "pending": d.pending(),
            "attempts": d.entries(),
            "config": {"base_delay": d.base_delay, "factor": d.factor, "timeout": d.timeout},
        }
    )


@bp.post("/deliveries/config")
def deliveries_config() -> Response:
    body = _body()
    d = _state().deliverer
    d.configure(body.get("base_delay"), body.get("factor"), body.get("timeout"))
    return jsonify({"base_delay": d.base_delay, "factor": d.factor, "timeout": d.timeout})


@bp.post("/deliveries/flush")
def deliveries_flush() -> Response:
    ok = _state().deliverer.flush(float(_body().get("timeout", 10)))
    return jsonify({"flushed": ok, "pending": _state().deliverer.pending()})


def register(app: Flask, state: SandboxState) -> None:
    app.register_blueprint(bp)


class AdminClient:
    """Thin client for the admin API; raises for HTTP errors so tests fail loudly."""

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = session or requests.Session()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        resp = self.http.request(method, f"{self.base_url}/_admin{path}", json=json, timeout=30)
        resp.raise_for_status()
        return resp.json()

    # generic
    def reset(self) -> Any:
        return self._call("POST", "/reset")

    def seed(self) -> Any:
        return self._call("POST", "/seed")

    def generate(self, kind: str, n: int, **options: Any) -> Any:
        return self._call("POST", "/generate", {"kind": kind, "n": n, **options})

    def advance_clock(self, seconds: float) -> Any:
        return self._call("POST", "/clock/advance", {"seconds": seconds})

    def add_fault(
        self, method: str, path: str, kind: str | int, count: int = 1, delay: float = 0.0
    ) -> Any:
        body = {"method": method, "path": path, "kind": str(kind), "count": count, "delay": delay}
        return self._call("POST", "/faults", body)["fault"]

    def faults(self) -> Any:
        return self._call("GET", "/faults")

    def clear_faults(self) -> Any:
        return self._call("DELETE", "/faults")

    def stats(self) -> Any:
        return self._call("GET", "/stats")

    def created(self) -> Any:
        return self._call("GET", "/created")

    def duplicates(self) -> Any:
        return self._call("GET", "/duplicates")

    def deliveries(self) -> Any:
        return self._call("GET", "/deliveries")

    def configure_deliveries(self, **config: float) -> Any:
        return self._call("POST", "/deliveries/config", config)

    def flush_deliveries(self, timeout: float = 10.0) -> Any:
        return self._call("POST", "/deliveries/flush", {"timeout": timeout})

    # zoho
    def zoho_orgs(self) -> Any:
        return self._call("GET", "/zoho/orgs")

    def zoho_set_webhook(self, org_id: str, url: str, secret: str = "", **options: Any) -> Any:
        body = {"url": url, "secret": secret, **options}
        return self._call("PUT", f"/zoho/orgs/{org_id}/webhook", body)["webhook"]

    def zoho_create(self, org_id: str, kind: str, **fields: Any) -> Any:
        """kind: "bill", "invoice" or "vendor"."""
        key = "contact" if kind == "vendor" else kind
        return self._call("POST", f"/zoho/orgs/{org_id}/{kind}s", fields)[key]

    def zoho_edit(self, org_id: str, kind: str, record_id: str, **changes: Any) -> Any:
        key = "contact" if kind == "vendor" else kind
        return self._call("PATCH", f"/zoho/orgs/{org_id}/{kind}s/{record_id}", changes)[key]

    def zoho_limits(self, **limits: Any) -> Any:
        return self._call("POST", "/zoho/limits", limits)

    def zoho_settings(self, **settings: Any) -> Any:
        return self._call("POST", "/zoho/settings", settings)

    def zoho_tokens(self) -> Any:
        return self._call("GET", "/zoho/tokens")["refresh_tokens"]

    def zoho_revoke(self, token: str | None = None, id: str | None = None) -> Any:
        return self._call("POST", "/zoho/tokens/revoke", {"token": token, "id": id})

    def zoho_self_client_code(self, scope: str = "ZohoBooks.fullaccess.all", **options: Any) -> Any:
        return self._call("POST", "/zoho/self-client", {"scope": scope, **options})
