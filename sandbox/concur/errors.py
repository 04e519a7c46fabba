"""Concur's four error dialects, rendered from one exception type.

Concur answers errors differently per API generation (see the notes, section 7): OAuth
(``{code, error, error_description[, geolocation]}``), v3 REST (``{"Error": {Message, Server-Time,
Id}}``), Expense v4 (``ErrorMessage``) and the platform/security layer (``{timestamp, httpStatus,
error: {id, message}, path}``, also used for 429). Business logic raises ``ConcurError`` without
caring which; the view layer picks the dialect from the URL, as the real gateway effectively does.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from flask import Response

OAUTH = "oauth"
V3 = "v3"
V4 = "v4"
PLATFORM = "platform"


class ConcurError(Exception):
    """An error answer; ``family`` forces a dialect, otherwise the path decides."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        family: str | None = None,
        error_id: str | None = None,
        oauth_code: int | None = None,
        oauth_error: str | None = None,
        geolocation: str | None = None,
        validation_errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.family = family
        self.error_id = error_id
        self.oauth_code = oauth_code
        self.oauth_error = oauth_error
        self.geolocation = geolocation
        self.validation_errors = validation_errors
        self.headers = headers or {}


def oauth_error(
    status: int, code: int, error: str, description: str, geolocation: str | None = None
) -> ConcurError:
    return ConcurError(
        status,
        description,
        family=OAUTH,
        oauth_code=code,
        oauth_error=error,
        geolocation=geolocation,
    )


def family_for_path(path: str) -> str:
    """Which dialect the real service behind this path speaks."""
    if "/oauth2/" in path:
        return OAUTH
    if "/expensereports/v4/" in path:
        return V4
    if "/events/v4/" in path:
        return PLATFORM
    return V3


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(err: ConcurError, path: str, correlation_id: str) -> dict[str, Any]:
    family = err.family or family_for_path(path)
    if family == OAUTH:
        body: dict[str, Any] = {
            "error": err.oauth_error or "invalid_request",
            "concur-correlationid": correlation_id,
            "error_description": err.message,
            "code": err.oauth_code,
        }
        if err.geolocation:
            body["geolocation"] = err.geolocation
        return body
    if family == V4:
        body = {
            "timestamp": _now_iso(),
            "httpStatus": f"{err.status} {_phrase(err.status)}",
            "errorMessage": err.message,
            "errorId": err.error_id or str(uuid.uuid4()),
            "path": path,
        }
        if err.validation_errors:
            body["validationErrors"] = err.validation_errors
        return body
    if family == PLATFORM:
        return {
            "timestamp": _now_iso(),
            "httpStatus": f"{err.status} - {_phrase(err.status)}",
            "error": {"id": err.error_id or "error", "message": err.message},
            "path": path,
        }
    return {
        "Error": {
            "Message": err.message,
            "Server-Time": _now_iso(),
            "Id": str(uuid.uuid4()).upper(),
        }
    }


def render(err: ConcurError, path: str, correlation_id: str) -> Response:
    resp = Response(
        json.dumps(error_body(err, path, correlation_id)),
        status=err.status,
        mimetype="application/json",
    )
    for k, v in err.headers.items():
        resp.headers[k] = v
    return resp


def rate_limited() -> ConcurError:
    """The only documented Concur 429 (List Item Bulk v4): ``retry-after: 0`` + platform body."""
    return ConcurError(
        429,
        "Too many requests",
        family=PLATFORM,
        error_id="security.rate.limit.reached",
        headers={"retry-after": "0"},
    )
