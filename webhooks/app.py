"""Flask application factory (flaskr pattern): tests pass their own settings and database."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, abort, jsonify, request
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DataError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from connector.config import Settings, get_settings
from connector.db import Database, get_database
from connector.errors import ConnectorError, WebhookError

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    config: dict[str, Any] | None = None,
) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        CONNECTOR_SETTINGS=settings,
        CONNECTOR_DB=db or get_database(settings.database_url),
    )
    if config:
        app.config.update(config)

    if "ENQUEUE_EVENT" not in app.config:
        from tasks.intake import enqueue_event

        app.config["ENQUEUE_EVENT"] = enqueue_event

    from webhooks import concur, health, oauth, zoho

    app.register_blueprint(health.bp)
    app.register_blueprint(zoho.bp)
    app.register_blueprint(concur.bp)
    app.register_blueprint(oauth.bp)
    from webhooks import ops

    app.register_blueprint(ops.bp)
    _register_error_handlers(app)

    @app.before_request
    def _refuse_oversized() -> None:
        # Refuse on the declared length before any view reads a byte; werkzeug's own limit only
        # trips when a view reads the body, which a 404 or 405 never does.
        length = request.content_length
        if length is not None and length > app.config["MAX_CONTENT_LENGTH"]:
            abort(413)

    return app


def _register_error_handlers(app: Flask) -> None:
    """Every error is a small JSON body; never an HTML page, never a stack trace."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        message = {
            413: f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes",
        }.get(status, exc.description or exc.name)
        return jsonify(error=exc.name.lower().replace(" ", "_"), message=message), status

    @app.errorhandler(WebhookError)
    def _webhook_error(exc: WebhookError) -> Any:
        return jsonify(error=type(exc).__name__, message=str(exc)), exc.status

    @app.errorhandler(DataError)
    def _unstorable(exc: DataError) -> Any:
        # The request carried a value the database refuses (too long, out of range): retrying
        # the same request cannot help, so not 503.
        log.warning("request holds a value the database refuses: %s", type(exc.orig).__name__)
        return jsonify(
            error="unstorable", message="a value in the request cannot be stored (too long?)"
        ), 400

    @app.errorhandler(SQLAlchemyError)
    def _database_down(exc: SQLAlchemyError) -> Any:
        # 503, not 500: the sender retries later and nothing it sent is lost.
        log.error("database unavailable: %s", type(exc).__name__)
        return jsonify(error="unavailable", message="database unavailable; retry later"), 503

    @app.errorhandler(KombuOperationalError)
    @app.errorhandler(RedisConnectionError)
    def _broker_down(exc: Exception) -> Any:
        log.error("broker unavailable: %s", type(exc).__name__)
        return jsonify(error="unavailable", message="queue unavailable; retry later"), 503

    @app.errorhandler(ConnectorError)
    def _connector_error(exc: ConnectorError) -> Any:
        log.error("request failed: %s: %s", type(exc).__name__, exc)
        return jsonify(error=type(exc).__name__, message=str(exc)), 500

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        # Logged with its traceback (redacted by the log filter); the sender sees no internals.
        log.exception("unhandled error in request")
        return jsonify(
            error="internal_error", message="internal error; see the connector's log"
        ), 500
