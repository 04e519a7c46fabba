"""``/healthz`` (the process is up) and ``/readyz`` (it can do its job: database and broker)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from connector import __version__
from connector.health import check_broker, check_database

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok", version=__version__)


@bp.get("/readyz")
def readyz() -> Any:
    settings = current_app.config["CONNECTOR_SETTINGS"]
    checks = [
        check_database(current_app.config["CONNECTOR_DB"]),
        check_broker(settings.broker_url),
    ]
    ok = all(c.ok for c in checks)
    body = {
        "status": "ready" if ok else "not_ready",
        "failed": [c.name for c in checks if not c.ok],
        "checks": {c.name: {"ok": c.ok, "detail": c.detail, "ms": round(c.ms, 1)} for c in checks},
    }
    return jsonify(body), 200 if ok else 503
