"""The one place where Zoho Books and Zoho Accounts answers become ``connector.errors`` classes.

Readings chosen where the reference notes (``zoho-books.md`` §2, §5, §6) are unconfirmed:

- The 429 body ``code`` is 44 or 45 depending on the source; HTTP 429 alone decides, and either
  code on any status is read as a rate limit too.
- Zoho sends no ``Retry-After``; a per-minute 429 waits one full window (60 s), an upper bound
  whichever way the window slides.
- ``X-Rate-Limit-Remaining: 0`` with ``X-Rate-Limit-Reset`` means the *daily* quota is spent:
  ``QuotaExhaustedError`` waits the reset seconds (an epoch value is converted, defensively).
- Zoho's concurrency refusal (too many calls in flight for the organization) is unconfirmed in
  shape; read as a 429 (or code 44/45) whose message mentions "concurren": a
  ``RateLimitedError`` with a short wait (:data:`CONCURRENCY_RETRY_SECONDS`), since a slot frees
  when any call in flight ends, not after a minute.
- Every Zoho 401 (code 57 "not authorized", 14 or any other) is ``TokenExpiredError``: the
  client refreshes once and retries; a second 401 (scope, org, revoked) becomes
  ``ReauthRequired``.
- Zoho Accounts answers token requests with HTTP 200 and ``{"error": "..."}``. "Access Denied"
  is the token-creation throttle; every other error there means the refresh token or client
  is dead (``invalid_code``, ``invalid_client``, …), which a person must fix.
- oauthlib reads token answers after :func:`translate` found no error in them; what it still
  raises (no access token, an unreadable ``expires_in``) is turned into ours by
  :func:`translate_oauth`, so no oauthlib exception reaches a caller.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from oauthlib.oauth2 import MissingTokenError, OAuth2Error

from connector.api.base import default_translate, json_body, server_error
from connector.errors import (
    ApiError,
    ConnectorError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitedError,
    ReauthRequired,
    TokenExpiredError,
)

SYSTEM = "zoho"

#: Zoho's rate-limit body codes seen in the wild (44 and 45: unconfirmed which).
RATE_LIMIT_CODES = frozenset({44, 45})
#: "<Entity> does not exist".
NOT_FOUND_CODES = frozenset({1002})
#: "Internal error" reported inside a 4xx/2xx envelope.
INTERNAL_ERROR_CODES = frozenset({1000})

#: Per-organization limit: 100 requests per minute.
MINUTE_WINDOW_SECONDS = 60.0
#: A concurrency refusal clears as soon as one call in flight ends.
CONCURRENCY_RETRY_SECONDS = 2.0
#: Zoho Accounts blocks token creation for the rest of a 10-minute window.
TOKEN_THROTTLE_SECONDS = 600.0


def translate(
    response: requests.Response, *, minute_window: float = MINUTE_WINDOW_SECONDS
) -> ApiError | None:
    """Return the error a Zoho response stands for, or ``None`` for a success.

    Checks the envelope as well as the status: Zoho reports some failures with a 2xx and a
    non-zero ``code``, and Zoho Accounts reports every token failure with a 200.
    """
    status = response.status_code
    body = json_body(response)
    envelope: dict[str, Any] = body if isinstance(body, dict) else {}

    if isinstance(envelope.get("error"), str):
        return _oauth_error(envelope, status)

    code = _int_or_none(envelope.get("code"))
    message = str(envelope.get("message") or f"HTTP {status} {response.reason or ''}").strip()
    kw: dict[str, Any] = {"system": SYSTEM, "status": status, "code": code}

    if status == 429 or code in RATE_LIMIT_CODES:
        reset = _daily_reset_seconds(response)
        if reset is not None:
            return QuotaExhaustedError(f"daily API quota spent: {message}", retry_after=reset, **kw)
        if "concurren" in message.lower():
            return RateLimitedError(
                f"too many calls in flight: {message}", retry_after=CONCURRENCY_RETRY_SECONDS, **kw
            )
        return RateLimitedError(message, retry_after=minute_window, **kw)
    if status < 400 and code in (None, 0):
        return None
    if status == 401:
        return TokenExpiredError(message, **kw)
    if status in (404, 410) or code in NOT_FOUND_CODES:
        return NotFoundError(message, **kw)
    if status == 403:
        return PermissionDeniedError(message, **kw)
    if status >= 500 or code in INTERNAL_ERROR_CODES:
        return server_error(response, message, system=SYSTEM, code=code)
    if status == 408:
        fallback = default_translate(response)
        if fallback is not None:
            fallback.system = SYSTEM
            return fallback
    # 400, 405, 406, 409, 422 and 2xx answers carrying a non-zero code: Zoho refused the payload.
    return InvalidRequestError(message, **kw)


def _oauth_error(body: dict[str, Any], status: int) -> ApiError:
    error = str(body["error"])
    description = str(body.get("error_description") or "")
    text = f"{error}: {description}" if description else error
    lowered = f"{error} {description}".lower()
    if error.lower() == "access denied" or "too many requests" in lowered or "throttle" in lowered:
        return RateLimitedError(
            f"token creation throttled: {text}",
            retry_after=TOKEN_THROTTLE_SECONDS,
            system=SYSTEM,
            status=status,
            code=error,
        )
    return ReauthRequired(
        f"Zoho refused the credential: {text}", system=SYSTEM, status=status, code=error
    )


def translate_oauth(exc: BaseException) -> ConnectorError:
    """Return our error for what oauthlib raised while reading a Zoho Accounts token answer.

    Refusals normally never get here (:func:`translate` reads Zoho's 200-with-``error`` before
    oauthlib sees the answer); an ``error`` oauthlib found anyway is read the same way.
    """
    if isinstance(exc, MissingTokenError):
        return ConnectorError("Zoho answered the token request without an access token")
    if isinstance(exc, OAuth2Error) and exc.error:
        return _oauth_error({"error": exc.error, "error_description": exc.description or ""}, 200)
    detail = getattr(exc, "description", None) or str(exc)
    return ConnectorError(f"Zoho's token answer could not be read: {type(exc).__name__}: {detail}")


def _daily_reset_seconds(response: requests.Response) -> float | None:
    """Return seconds until the daily quota resets, if the headers say it is spent."""
    remaining = response.headers.get("X-Rate-Limit-Remaining")
    reset = response.headers.get("X-Rate-Limit-Reset")
    if remaining is None or reset is None or remaining.strip() != "0":
        return None
    try:
        seconds = float(reset)
    except ValueError:
        return None
    if seconds > 1_000_000_000:  # an epoch timestamp rather than a countdown
        seconds -= time.time()
    return max(0.0, seconds)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
