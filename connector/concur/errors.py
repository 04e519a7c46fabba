"""The one place where SAP Concur answers become ``connector.errors`` classes.

Concur speaks four error dialects (``sap-concur.md`` §1.7, §6, §7), all read here:

- OAuth: ``{"code": 108, "error": "invalid_grant", "error_description": ..., "geolocation"}``
- v3: ``{"Error": {"Message", "Server-Time", "Id"}}`` (also ``Server``/``RequestId``), or a bare
  ``{"Message": ...}``
- Expense v4: ``{"errorId", "errorMessage", "httpStatus", "path", "timestamp",
  "validationErrors": [{"id", "message", "source"}]}``
- Platform v4: ``{"timestamp", "httpStatus", "error": {"id", "message"}, "path"}``

Batch answers (v3.1 vendors) report per-record ``StatusList`` failures inside a 200; those are
not HTTP errors and are left to the resource layer.

Token answers are read by oauthlib once :func:`translate` found no error in them; what oauthlib
still raises becomes ours in :func:`translate_oauth`, so no oauthlib exception reaches a caller.
"""

from __future__ import annotations

from typing import Any

import requests
from oauthlib.oauth2 import MissingTokenError, OAuth2Error

from connector.api.base import json_body, parse_retry_after, server_error
from connector.errors import (
    ApiError,
    ConnectorError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ReauthRequired,
    RetryableError,
    TokenExpiredError,
)

SYSTEM = "concur"
CORRELATION_HEADER = "Concur-Correlationid"

#: OAuth code 16: "user lives elsewhere"; the body's ``geolocation`` names the right host.
LIVES_ELSEWHERE = 16
#: OAuth codes that no retry cures: bad or expired credentials, client disabled, company not
#: enabled, scope too wide, refresh disallowed, or a refresh request we built wrong.
DEAD_CREDENTIAL_CODES = frozenset({5, 19, 53, 54, 59, 64, 106, 107, 108, 120, 136})
#: OAuth code 134: company under scheduled maintenance.
MAINTENANCE_CODES = frozenset({134})
DEAD_CREDENTIAL_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope", "access_denied"}
)
RATE_LIMIT_ERROR_IDS = frozenset({"security.rate.limit.reached"})


def translate(response: requests.Response) -> ApiError | None:
    """Return the error a Concur response stands for, or ``None`` for any status below 400.

    ``RateLimitedError.retry_after`` is the ``Retry-After`` header as sent, usually ``0``:
    0 means "no hint", and the task must use its own exponential back-off with jitter.
    """
    status = response.status_code
    if status < 400:
        return None
    body = json_body(response)
    envelope: dict[str, Any] = body if isinstance(body, dict) else {}
    header_request_id = response.headers.get(CORRELATION_HEADER) or None

    if isinstance(envelope.get("error"), str):
        oauth = _oauth_error(envelope, status, header_request_id)
        if oauth is not None:
            return oauth

    message, code, body_request_id = _read_body(envelope)
    message = message or f"HTTP {status} {response.reason or ''}".strip()
    kw: dict[str, Any] = {
        "system": SYSTEM,
        "status": status,
        "code": code,
        "request_id": body_request_id or header_request_id,
    }
    lowered = message.lower()

    if status == 429 or code in RATE_LIMIT_ERROR_IDS or "exceed the request limit" in lowered:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), default=0.0)
        return RateLimitedError(message, retry_after=retry_after, **kw)
    if status in (401, 403):
        # Concur sends 403 for expired or revoked tokens as well as for missing scopes; one
        # forced refresh tells them apart (the client turns a second 403 into a permission
        # error).
        return TokenExpiredError(message, **kw)
    if status in (404, 410):
        return NotFoundError(message, **kw)
    if status >= 500:
        kw.pop("status")
        return server_error(response, message, **kw)
    if status == 408 or "deadlock" in lowered:
        # Concur: "database deadlock (resend shortly)"; the transaction was rolled back.
        return RetryableError(message, ambiguous=False, **kw)
    return InvalidRequestError(message, **kw)


def _oauth_error(body: dict[str, Any], status: int, request_id: str | None) -> ApiError | None:
    """Translate an OAuth-shaped body; ``None`` for codes the HTTP status decides better."""
    code = _int_or_none(body.get("code"))
    error = str(body["error"])
    description = str(body.get("error_description") or "")
    text = f"{error} ({code}): {description}" if description else f"{error} ({code})"
    kw: dict[str, Any] = {
        "system": SYSTEM,
        "status": status,
        "code": code,
        "request_id": request_id,
    }
    if code == LIVES_ELSEWHERE:
        # The auth module retries once on this host and stores it; if the error escapes, a
        # person must look at the connection, so it is ReauthRequired.
        err: ApiError = ReauthRequired(f"token belongs to another data centre: {text}", **kw)
        err.context["geolocation"] = body.get("geolocation")
        return err
    if code in MAINTENANCE_CODES:
        return RetryableError(f"company under maintenance: {text}", ambiguous=False, **kw)
    if code in DEAD_CREDENTIAL_CODES or (code is None and error in DEAD_CREDENTIAL_ERRORS):
        err = ReauthRequired(f"Concur refused the credential: {text}", **kw)
        if body.get("geolocation"):
            err.context["geolocation"] = body["geolocation"]
        return err
    return None


def translate_oauth(exc: BaseException) -> ConnectorError:
    """Return our error for what oauthlib raised while reading a Concur token answer.

    HTTP refusals are read by :func:`translate` first; this covers a 2xx that oauthlib cannot
    use: no access token, an ``error`` field (read like the OAuth dialect), or an unreadable
    ``expires_in``.
    """
    if isinstance(exc, MissingTokenError):
        return ConnectorError("Concur answered the token request without an access token")
    if isinstance(exc, OAuth2Error) and exc.error:
        body = {"error": exc.error, "error_description": exc.description or ""}
        known = _oauth_error(body, 200, None)
        if known is not None:
            return known
        return ConnectorError(f"Concur's token answer carries an error: {exc.error}")
    detail = getattr(exc, "description", None) or str(exc)
    return ConnectorError(
        f"Concur's token answer could not be read: {type(exc).__name__}: {detail}"
    )


def _read_body(body: dict[str, Any]) -> tuple[str, str | int | None, str | None]:
    """Return (message, code, request id) from whichever Concur error dialect ``body`` is."""
    v3 = body.get("Error")
    if isinstance(v3, dict):
        return (
            str(v3.get("Message") or ""),
            v3.get("Code"),
            v3.get("RequestId") or v3.get("Id") or None,
        )
    if "errorMessage" in body:
        message = str(body.get("errorMessage") or "")
        problems = [
            f"{v.get('source') or v.get('id') or '?'}: {v.get('message', '')}"
            for v in body.get("validationErrors") or []
            if isinstance(v, dict)
        ]
        if problems:
            message = f"{message} ({'; '.join(problems)})"
        return message, body.get("errorId"), None
    platform = body.get("error")
    if isinstance(platform, dict):
        return str(platform.get("message") or ""), platform.get("id"), None
    if "Message" in body:
        return str(body.get("Message") or ""), body.get("Code"), None
    return "", None, None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
