"""Every Zoho-shaped error the sandbox can send, in one table.

Zoho documents only a few codes (0 success, 57 not authorized, 1000 internal error, 1002 "does not
exist"); the rest of its catalogue is not public. Codes marked "sandbox" below are the sandbox's
own picks: a connector must treat *any* non-zero ``code`` as failure and show ``message``, never
branch on these numbers. docs/sandbox.md lists them.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

SUCCESS = 0
INVALID_PARAM = 2  # Kalki guide: "invalid ID/value" (3rd-party, low authority)
INVALID_URL = 5  # sandbox: "Invalid URL Passed"
RATE_LIMITED = 45  # Kalki guide says 45; Zoho's own body code is UNCONFIRMED (44 or 45)
NOT_AUTHORIZED = 57  # widely observed: bad token, missing scope, org not visible
METHOD_NOT_ALLOWED = 37  # sandbox
INTERNAL_ERROR = 1000  # official errors page
DOES_NOT_EXIST = 1002  # official errors page: "<Entity> does not exist."

# Validation errors: sandbox codes in a 4000 range, one per rule so tests can tell them apart.
MISSING_FIELD = 4001
INVALID_VALUE = 4002
AMOUNT_NOT_POSITIVE = 4003
NOT_BALANCED = 4004
ACCOUNT_NOT_FOUND = 4005
ACCOUNT_INACTIVE = 4006
INVALID_TAG = 4007
CURRENCY_NOT_FOUND = 4008
EXCHANGE_RATE_REQUIRED = 4009
TOO_FEW_LINES = 4010
CONTACT_NOT_FOUND = 4011
INVALID_BODY = 4012

NOT_AUTHORIZED_MESSAGE = "You are not authorized to perform this operation"
RATE_LIMITED_MESSAGE = (
    "You have made too many requests continuously. Please try again after some time."
)
#: Zoho's wording and code for its concurrency refusal are UNCONFIRMED: the sandbox answers 429
#: with the rate-limit code and this message (the connector reads "concurrent" in it).
CONCURRENCY_MESSAGE = (
    "You have exceeded the maximum number of concurrent API requests allowed for your "
    "organization. Please try again after some time."
)
DAILY_LIMIT_MESSAGE = (
    "You have reached the maximum number of API calls allowed per day for your organization."
)


class ZohoError(Exception):
    """Raised inside Books views; rendered as ``{"code": ..., "message": ...}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def zoho_json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")),
        status=status,
        content_type="application/json;charset=UTF-8",
    )


def error_response(status: int, code: int, message: str) -> Response:
    return zoho_json({"code": code, "message": message}, status)


def not_authorized() -> ZohoError:
    return ZohoError(401, NOT_AUTHORIZED, NOT_AUTHORIZED_MESSAGE)


def invalid_param(name: str) -> ZohoError:
    return ZohoError(400, INVALID_PARAM, f"Invalid value passed for {name}")


def invalid_value(name: str, why: str = "") -> ZohoError:
    msg = f"Invalid value passed for {name}" + (f": {why}" if why else "")
    return ZohoError(400, INVALID_VALUE, msg)


def missing(name: str) -> ZohoError:
    return ZohoError(400, MISSING_FIELD, f"{name} is required")


def does_not_exist(entity: str) -> ZohoError:
    return ZohoError(404, DOES_NOT_EXIST, f"{entity} does not exist.")


def injected_fault_body(status: int, path: str) -> tuple[Any, dict[str, str]]:
    """Bodies for injected faults on /zoho/ paths.

    429 and 500 come from the Books application and carry the JSON envelope; 502/503 come from
    Zoho's front-end proxies in real life, so the sandbox sends an HTML page to make sure a client
    copes with a non-JSON error body.
    """
    if "/accounts/" in path:
        if status == 429:
            return {"error": "Access Denied", "error_description": RATE_LIMITED_MESSAGE}, {}
        if status == 500:
            return {"error": "general_error"}, {}
    elif status == 429:
        return {"code": RATE_LIMITED, "message": RATE_LIMITED_MESSAGE}, {}
    elif status == 500:
        return {"code": INTERNAL_ERROR, "message": "Internal error"}, {}
    title = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}.get(
        status, f"{status} Error"
    )
    html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return html, {"Content-Type": "text/html; charset=UTF-8"}
