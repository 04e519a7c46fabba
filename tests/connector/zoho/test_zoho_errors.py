"""Zoho translation table: status and envelope code to error class, message and wait."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from freezegun import freeze_time

from connector.api.base import ApiClient
from connector.errors import (
    ApiError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitedError,
    ReauthRequired,
    RetryableError,
    TokenExpiredError,
)
from connector.zoho.errors import translate


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
    response.request = requests.Request(method, "https://www.zohoapis.com/books/v3/bills").prepare()
    return response


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "message"),
    [
        pytest.param(
            401,
            {"code": 57, "message": "You are not authorized to perform this operation"},
            TokenExpiredError,
            57,
            "You are not authorized to perform this operation",
            id="401-code-57",
        ),
        pytest.param(
            401,
            {"code": 14, "message": "Invalid OAuth token"},
            TokenExpiredError,
            14,
            "Invalid OAuth token",
            id="401-code-14",
        ),
        pytest.param(401, None, TokenExpiredError, None, "HTTP 401", id="401-no-body"),
        pytest.param(
            400,
            {"code": 4, "message": "Invalid value passed for JSONString"},
            InvalidRequestError,
            4,
            "Invalid value passed for JSONString",
            id="400-with-code",
        ),
        pytest.param(
            400,
            {"code": 1002, "message": "Vendor does not exist"},
            NotFoundError,
            1002,
            "Vendor does not exist",
            id="400-code-1002",
        ),
        pytest.param(
            404,
            {"code": 1002, "message": "Bill does not exist"},
            NotFoundError,
            1002,
            "Bill does not exist",
            id="404",
        ),
        pytest.param(404, None, NotFoundError, None, "HTTP 404", id="404-url-not-found"),
        pytest.param(
            403,
            {"code": 57, "message": "Forbidden"},
            PermissionDeniedError,
            57,
            "Forbidden",
            id="403",
        ),
        pytest.param(
            405,
            {"code": 37, "message": "Method not allowed"},
            InvalidRequestError,
            37,
            "Method not allowed",
            id="405",
        ),
        pytest.param(
            200,
            {"code": 9, "message": "Bill number already exists"},
            InvalidRequestError,
            9,
            "Bill number already exists",
            id="200-with-nonzero-code",
        ),
        pytest.param(
            500,
            {"code": 1000, "message": "Internal error"},
            RetryableError,
            1000,
            "Internal error",
            id="500",
        ),
        pytest.param(
            400,
            {"code": 1000, "message": "Internal error"},
            RetryableError,
            1000,
            "Internal error",
            id="400-code-1000",
        ),
        pytest.param(503, None, RetryableError, None, "HTTP 503", id="503-no-body"),
        pytest.param(408, None, RetryableError, None, "HTTP 408", id="408"),
    ],
)
def test_translation_table(
    status: int, body: Any, cls: type[ApiError], code: int | None, message: str
) -> None:
    error = translate(make_response(status, body))
    assert type(error) is cls
    assert error.system == "zoho"
    assert error.status == status
    assert error.code == code
    assert error.message.startswith(message)
    assert error.request_id is None  # Zoho sends no request id


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"code": 0, "message": "success", "bills": []}, id="code-0"),
        pytest.param({"bills": []}, id="no-code"),
        pytest.param(None, id="empty"),
        pytest.param(["a"], id="list"),
    ],
)
def test_success(body: Any) -> None:
    assert translate(make_response(200, body)) is None


def test_5xx_ambiguity_follows_the_method() -> None:
    post = translate(make_response(500, {"code": 1000}, method="POST"))
    get = translate(make_response(500, {"code": 1000}, method="GET"))
    assert isinstance(post, RetryableError) and post.ambiguous is True
    assert isinstance(get, RetryableError) and get.ambiguous is False


# --------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"code": 44, "message": "API usage limit exceeded"}, id="code-44"),
        pytest.param({"code": 45, "message": "API usage limit exceeded"}, id="code-45"),
        pytest.param({"code": 1070, "message": "Rate Limit Exceeded"}, id="other-code"),
        pytest.param(None, id="no-body"),
    ],
)
def test_429_waits_one_minute_window(body: Any) -> None:
    error = translate(make_response(429, body))
    assert type(error) is RateLimitedError
    assert error.retry_after == 60.0
    assert error.ambiguous is False


def test_rate_limit_code_on_another_status_is_still_a_rate_limit() -> None:
    error = translate(make_response(400, {"code": 45, "message": "too many requests"}))
    assert type(error) is RateLimitedError


def test_minute_window_is_configurable() -> None:
    error = translate(make_response(429, None), minute_window=30)
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 30.0


def test_spent_daily_quota_is_quota_exhausted_with_reset_wait() -> None:
    headers = {
        "X-Rate-Limit-Limit": "5000",
        "X-Rate-Limit-Remaining": "0",
        "X-Rate-Limit-Reset": "3600",
    }
    error = translate(make_response(429, {"code": 45, "message": "limit"}, headers=headers))
    assert type(error) is QuotaExhaustedError
    assert error.retry_after == 3600.0
    assert "daily API quota" in error.message


@freeze_time("2025-01-15T12:00:00Z", tick=False)
def test_epoch_reset_header_is_converted_to_seconds() -> None:
    reset = str(1736942400 + 900)  # 2025-01-15T12:15:00Z
    headers = {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": reset}
    error = translate(make_response(429, None, headers=headers))
    assert isinstance(error, QuotaExhaustedError)
    assert error.retry_after == 900.0


def test_remaining_quota_means_minute_limit_not_daily() -> None:
    headers = {"X-Rate-Limit-Remaining": "12", "X-Rate-Limit-Reset": "3600"}
    error = translate(make_response(429, None, headers=headers))
    assert type(error) is RateLimitedError


def test_quota_headers_on_a_success_are_not_an_error() -> None:
    headers = {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "3600"}
    assert translate(make_response(200, {"code": 0}, headers=headers)) is None


# --------------------------------------------------------------------------- Zoho Accounts


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(200, {"error": "invalid_code"}, id="invalid-code-200"),
        pytest.param(400, {"error": "invalid_client"}, id="invalid-client"),
        pytest.param(200, {"error": "invalid_client_secret"}, id="invalid-secret"),
        pytest.param(200, {"error": "invalid_token"}, id="invalid-token"),
    ],
)
def test_dead_refresh_token_or_client_is_reauth(status: int, body: Any) -> None:
    error = translate(make_response(status, body, method="POST"))
    assert type(error) is ReauthRequired
    assert error.code == body["error"]
    assert body["error"] in error.message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {
                "error": "Access Denied",
                "error_description": "Token creation throttle limit reached. Please reuse the "
                "valid tokens you currently have.",
            },
            id="access-denied-new-text",
        ),
        pytest.param(
            {
                "error_description": "You have made too many requests continuously. Please "
                "try again after some time.",
                "error": "Access Denied",
                "status": "failure",
            },
            id="access-denied-old-text",
        ),
        pytest.param({"error": "Access Denied"}, id="access-denied-bare"),
    ],
)
def test_token_throttle_is_rate_limited_for_the_window(body: Any) -> None:
    error = translate(make_response(400, body, method="POST"))
    assert type(error) is RateLimitedError
    assert error.retry_after == 600.0


# --------------------------------------------------------------------------- through the client


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def test_client_stamps_zoho_errors(http: responses.RequestsMock) -> None:
    base = "https://www.zohoapis.com/books/v3"
    http.post(f"{base}/bills", status=400, json={"code": 4, "message": "Invalid vendor_id"})
    client = ApiClient(base, "zoho", translator=translate)

    with pytest.raises(InvalidRequestError) as caught:
        client.request("POST", "/bills", params={"organization_id": "1"}, json={})

    error = caught.value
    assert str(error) == "zoho POST /bills -> 400: Invalid vendor_id"
    assert error.context["vendor_message"] == "Invalid vendor_id"
    assert error.context["correlation_id"]
    assert '"Invalid vendor_id"' in (error.body_excerpt or "")
