"""Concur translation table across its OAuth, v3, v4 and platform error dialects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from connector.api.base import ApiClient
from connector.concur.errors import translate
from connector.errors import (
    ApiError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ReauthRequired,
    RetryableError,
    TokenExpiredError,
)


def make_response(
    status: int,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = b"" if body is None else json.dumps(body).encode()
    response.headers.update(headers or {})
    url = "https://us2.api.concursolutions.com/api/v3.0/expense/reports"
    response.request = requests.Request(method, url).prepare()
    return response


V3_ERROR = {
    "Error": {"Message": "Invalid report ID", "Server-Time": "2025-01-15T12:00:00", "Id": "guid-1"}
}
V3_ERROR_ALT = {"Error": {"Message": "Bad vendor", "Server": "srv", "RequestId": "req-2"}}
V4_EXPENSE = {
    "errorId": "EXP-400",
    "errorMessage": "Validation failed",
    "httpStatus": "400 Bad Request",
    "path": "/expensereports/v4/users/u/context/TRAVELER/reports/r",
    "timestamp": "2025-01-15T12:00:00Z",
    "validationErrors": [{"id": "v1", "message": "must not be null", "source": "expenseTypeId"}],
}
V4_PLATFORM = {
    "timestamp": "2025-01-15T12:00:00Z",
    "httpStatus": "400 - Bad Request",
    "error": {"id": "validation.size", "message": "size must be between 1 and 250"},
    "path": "/list/v4/items",
}


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "message", "request_id"),
    [
        pytest.param(
            400, V3_ERROR, InvalidRequestError, None, "Invalid report ID", "guid-1", id="v3-400"
        ),
        pytest.param(
            400, V3_ERROR_ALT, InvalidRequestError, None, "Bad vendor", "req-2", id="v3-400-alt"
        ),
        pytest.param(
            400,
            {"Message": "Missing LoginID"},
            InvalidRequestError,
            None,
            "Missing LoginID",
            "hdr",
            id="v3-bare",
        ),
        pytest.param(
            400,
            V4_EXPENSE,
            InvalidRequestError,
            "EXP-400",
            "Validation failed (expenseTypeId: must not be null)",
            "hdr",
            id="v4-expense",
        ),
        pytest.param(
            400,
            V4_PLATFORM,
            InvalidRequestError,
            "validation.size",
            "size must be between 1 and 250",
            "hdr",
            id="v4-platform",
        ),
        pytest.param(
            409,
            {"Message": "job already running"},
            InvalidRequestError,
            None,
            "job already running",
            "hdr",
            id="409",
        ),
        pytest.param(401, None, TokenExpiredError, None, "HTTP 401", "hdr", id="401"),
        pytest.param(
            403,
            {"Error": {"Message": "Forbidden Request"}},
            TokenExpiredError,
            None,
            "Forbidden Request",
            "hdr",
            id="403",
        ),
        pytest.param(
            404, {"Message": "Not found"}, NotFoundError, None, "Not found", "hdr", id="404"
        ),
        pytest.param(
            500,
            {"Message": "Unable to calculate an exchange rate"},
            RetryableError,
            None,
            "Unable to calculate",
            "hdr",
            id="500",
        ),
        pytest.param(503, None, RetryableError, None, "HTTP 503", "hdr", id="503"),
        pytest.param(
            400,
            {"Message": "Transaction deadlock, resend"},
            RetryableError,
            None,
            "Transaction deadlock",
            "hdr",
            id="400-deadlock",
        ),
        pytest.param(
            400,
            {"Message": "The number of requests received exceed the request limit"},
            RateLimitedError,
            None,
            "The number of requests",
            "hdr",
            id="400-request-limit",
        ),
    ],
)
def test_translation_table(
    status: int, body: Any, cls: type[ApiError], code: Any, message: str, request_id: str
) -> None:
    error = translate(make_response(status, body, headers={"concur-correlationid": "hdr"}))
    assert type(error) is cls
    assert error.system == "concur"
    assert error.status == status
    assert error.code == code
    assert error.message.startswith(message)
    assert error.request_id == request_id


def test_success_and_batch_status_list_are_not_errors() -> None:
    batch = {"Vendor": [{"VendorCode": "V1", "StatusList": [{"Code": "E1", "Type": "ERROR"}]}]}
    assert translate(make_response(200, batch)) is None
    assert translate(make_response(204)) is None


def test_5xx_ambiguity_follows_the_method() -> None:
    post = translate(make_response(502, None, method="POST"))
    get = translate(make_response(502, None, method="GET"))
    assert isinstance(post, RetryableError) and post.ambiguous is True
    assert isinstance(get, RetryableError) and get.ambiguous is False


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        pytest.param({"retry-after": "0"}, 0.0, id="zero-means-backoff"),
        pytest.param({"Retry-After": "12"}, 12.0, id="hint"),
        pytest.param({}, 0.0, id="missing"),
    ],
)
def test_429_keeps_the_header_value(headers: dict[str, str], retry_after: float) -> None:
    body = {
        "timestamp": "2025-01-15T12:00:00Z",
        "httpStatus": "429 - Too Many Requests",
        "error": {"id": "security.rate.limit.reached", "message": "Too many requests"},
        "path": "/list/v4/items",
    }
    error = translate(make_response(429, body, headers=headers))
    assert type(error) is RateLimitedError
    assert error.retry_after == retry_after
    assert error.code == "security.rate.limit.reached"
    assert error.message == "Too many requests"


# --------------------------------------------------------------------------- OAuth


@pytest.mark.parametrize("code", [5, 19, 53, 54, 59, 64, 106, 107, 108, 120, 136])
def test_dead_credential_codes_are_reauth(code: int) -> None:
    body = {"code": code, "error": "invalid_grant", "error_description": "Bad refresh token"}
    error = translate(make_response(400, body, method="POST"))
    assert type(error) is ReauthRequired
    assert error.code == code
    assert "Bad refresh token" in error.message


def test_lives_elsewhere_exposes_geolocation() -> None:
    body = {
        "code": 16,
        "error": "invalid_request",
        "error_description": "user lives elsewhere",
        "geolocation": "https://eu2.api.concursolutions.com",
    }
    error = translate(make_response(400, body, method="POST"))
    assert type(error) is ReauthRequired
    assert error.code == 16
    assert error.context["geolocation"] == "https://eu2.api.concursolutions.com"


def test_maintenance_is_retryable() -> None:
    body = {"code": 134, "error": "invalid_request", "error_description": "maintenance"}
    error = translate(make_response(400, body, method="POST"))
    assert type(error) is RetryableError
    assert error.ambiguous is False


def test_oauth_error_name_without_code_is_reauth() -> None:
    error = translate(make_response(401, {"error": "invalid_client"}, method="POST"))
    assert type(error) is ReauthRequired


def test_unknown_oauth_shape_falls_back_to_status() -> None:
    body = {"code": 999, "error": "invalid_token", "error_description": "expired"}
    assert type(translate(make_response(401, body))) is TokenExpiredError


# --------------------------------------------------------------------------- through the client


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def test_client_stamps_concur_errors(http: responses.RequestsMock) -> None:
    base = "https://us2.api.concursolutions.com"
    http.get(f"{base}/api/v3.1/invoice/vendors", status=400, json=V3_ERROR_ALT)
    client = ApiClient(
        base, "concur", translator=translate, correlation_header="Concur-Correlationid"
    )

    with pytest.raises(InvalidRequestError) as caught:
        client.request("GET", "/api/v3.1/invoice/vendors", params={"limit": 1000})

    assert str(caught.value) == "concur GET /api/v3.1/invoice/vendors -> 400: Bad vendor"
    assert caught.value.request_id == "req-2"
    sent = http.calls[0].request.headers["Concur-Correlationid"]
    assert caught.value.context["correlation_id"] == sent
