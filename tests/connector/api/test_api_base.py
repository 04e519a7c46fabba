"""ApiClient: one attempt per call, one forced refresh, honest ambiguity, ids, no leaked secrets."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
import urllib3.exceptions
from freezegun import freeze_time

from connector.api.base import (
    ApiClient,
    CallRecord,
    default_translate,
    parse_retry_after,
)
from connector.api.correlation import use_correlation_id
from connector.api.redaction import clear_secrets, register_secret
from connector.concur.errors import translate as concur_translate
from connector.errors import (
    ApiError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ReauthRequired,
    RetryableError,
    TokenExpiredError,
    UntrustedHostError,
)
from connector.zoho.errors import translate as zoho_translate

BASE = "https://api.example.test/books/v3"
TOKEN_1 = "1000.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
TOKEN_2 = "1000.cccccccccccccccccccccccccccccccc.dddddddddddddddddddddddddddddddd"


class FakeAuth:
    """AuthProvider double: hands out TOKEN_1, then TOKEN_2 after a forced refresh."""

    def __init__(self, retry_makes_sense: bool = True) -> None:
        self.token = TOKEN_1
        self.refreshes = 0
        self.retry_makes_sense = retry_makes_sense

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Zoho-oauthtoken {self.token}"}

    def on_unauthorized(self) -> bool:
        self.refreshes += 1
        self.token = TOKEN_2
        return self.retry_makes_sense


class FakeThrottle:
    def __init__(self, error: ApiError | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.error = error

    def before_request(self, method: str, path: str) -> None:
        self.calls.append((method, path))
        if self.error is not None:
            raise self.error


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(_seconds: float) -> None:
        raise AssertionError("the client must not sleep; retries belong to the task")

    monkeypatch.setattr(time, "sleep", forbidden)


def make_client(**kw: Any) -> tuple[ApiClient, list[CallRecord]]:
    records: list[CallRecord] = []
    kw.setdefault("auth", FakeAuth())
    kw.setdefault("translator", zoho_translate)
    client = ApiClient(BASE, "zoho", on_response=records.append, **kw)
    return client, records


# --------------------------------------------------------------------------- success path


def test_returns_parsed_json_and_sends_auth_accept_timeout(http: responses.RequestsMock) -> None:
    http.get(f"{BASE}/bills", json={"code": 0, "bills": [{"bill_id": "1"}]})
    client, records = make_client(timeout=(3.0, 20.0))

    body = client.request("GET", "/bills", params={"organization_id": "42"})

    assert body == {"code": 0, "bills": [{"bill_id": "1"}]}
    sent = http.calls[0].request
    assert sent.headers["Authorization"] == f"Zoho-oauthtoken {TOKEN_1}"
    assert sent.headers["Accept"] == "application/json"
    assert sent.req_kwargs["timeout"] == (3.0, 20.0)
    assert sent.url.endswith("/bills?organization_id=42")
    assert records == [
        CallRecord(
            system="zoho",
            method="GET",
            path="/bills",
            status=200,
            duration_ms=records[0].duration_ms,
            correlation_id=records[0].correlation_id,
            request_id=None,
            error=None,
            attempt=1,
        )
    ]


def test_empty_body_returns_none_and_raw_response_on_request(http: responses.RequestsMock) -> None:
    http.delete(f"{BASE}/bills/1", status=204)
    http.get(f"{BASE}/bills/1/attachment", body=b"%PDF-1.4", content_type="application/pdf")
    client, _ = make_client()

    assert client.request("DELETE", "bills/1") is None
    raw = client.request("GET", "/bills/1/attachment", expect_json=False)
    assert isinstance(raw, requests.Response)
    assert raw.content == b"%PDF-1.4"


def test_non_json_success_on_post_is_ambiguous(http: responses.RequestsMock) -> None:
    http.post(f"{BASE}/bills", body="<html>proxy says hi</html>", status=200)
    client, _ = make_client()

    with pytest.raises(RetryableError) as caught:
        client.request("POST", "/bills", json={})
    assert caught.value.ambiguous is True
    assert "proxy says hi" in (caught.value.body_excerpt or "")


# --------------------------------------------------------------------------- correlation ids


def test_fresh_correlation_id_per_call_when_none_is_set(http: responses.RequestsMock) -> None:
    http.get(f"{BASE}/a", json={})
    http.get(f"{BASE}/a", json={})
    client, records = make_client()

    client.request("GET", "/a")
    client.request("GET", "/a")

    sent = [c.request.headers["X-Correlation-Id"] for c in http.calls]
    assert all(len(cid) == 32 and int(cid, 16) >= 0 for cid in sent)
    assert sent[0] != sent[1]
    assert [r.correlation_id for r in records] == sent


def test_context_correlation_id_reaches_header_record_and_error(
    http: responses.RequestsMock,
) -> None:
    http.get(f"{BASE}/ok", json={})
    http.get(f"{BASE}/missing", status=404, json={"code": 1002, "message": "Bill does not exist"})
    client, records = make_client()

    with use_correlation_id("record-17"):
        client.request("GET", "/ok")
        with pytest.raises(NotFoundError) as caught:
            client.request("GET", "/missing")

    assert [c.request.headers["X-Correlation-Id"] for c in http.calls] == ["record-17"] * 2
    assert [r.correlation_id for r in records] == ["record-17"] * 2
    assert caught.value.context["correlation_id"] == "record-17"


def test_concur_header_name_and_vendor_request_id(http: responses.RequestsMock) -> None:
    url = "https://us2.api.concursolutions.com/api/v3.0/expense/reports"
    http.get(url, json={"Items": []}, headers={"concur-correlationid": "vendor-1"})
    http.get(
        url,
        status=400,
        json={"Message": "Bad filter"},
        headers={"concur-correlationid": "vendor-2"},
    )
    records: list[CallRecord] = []
    client = ApiClient(
        "https://us2.api.concursolutions.com",
        "concur",
        translator=concur_translate,
        correlation_header="Concur-Correlationid",
        request_id_header="concur-correlationid",
        on_response=records.append,
    )

    with use_correlation_id("ours-1"):
        client.request("GET", "/api/v3.0/expense/reports")
        with pytest.raises(InvalidRequestError) as caught:
            client.request("GET", "/api/v3.0/expense/reports")

    assert http.calls[0].request.headers["Concur-Correlationid"] == "ours-1"
    assert "X-Correlation-Id" not in http.calls[0].request.headers
    assert [r.request_id for r in records] == ["vendor-1", "vendor-2"]
    assert caught.value.request_id == "vendor-2"
    assert caught.value.system == "concur"


def test_caller_supplied_correlation_header_wins(http: responses.RequestsMock) -> None:
    http.get(f"{BASE}/a", json={})
    client, records = make_client()

    client.request("GET", "/a", headers={"X-Correlation-Id": "from-webhook"})

    assert http.calls[0].request.headers["X-Correlation-Id"] == "from-webhook"
    assert records[0].correlation_id == "from-webhook"


# --------------------------------------------------------------------------- 401 handling


def test_one_forced_refresh_then_retry_succeeds(http: responses.RequestsMock) -> None:
    http.get(f"{BASE}/bills", status=401, json={"code": 57, "message": "not authorized"})
    http.get(f"{BASE}/bills", json={"code": 0, "bills": []})
    auth = FakeAuth()
    client, records = make_client(auth=auth)

    assert client.request("GET", "/bills") == {"code": 0, "bills": []}

    assert auth.refreshes == 1
    tokens = [c.request.headers["Authorization"] for c in http.calls]
    assert tokens == [f"Zoho-oauthtoken {TOKEN_1}", f"Zoho-oauthtoken {TOKEN_2}"]
    assert [(r.attempt, r.status, r.error) for r in records] == [
        (1, 401, "TokenExpiredError"),
        (2, 200, None),
    ]
    assert records[0].correlation_id == records[1].correlation_id


def test_second_401_after_refresh_raises_reauth_required(http: responses.RequestsMock) -> None:
    http.get(f"{BASE}/bills", status=401, json={"code": 57, "message": "not authorized"})
    http.get(f"{BASE}/bills", status=401, json={"code": 57, "message": "not authorized"})
    auth = FakeAuth()
    client, _ = make_client(auth=auth)

    with pytest.raises(ReauthRequired) as caught:
        client.request("GET", "/bills")

    assert auth.refreshes == 1
    assert len(http.calls) == 2
    assert caught.value.status == 401
    assert caught.value.code == 57
    assert caught.value.system == "zoho"
    assert "not authorized" in str(caught.value)


def test_refresh_that_cannot_help_raises_reauth_without_retry(
    http: responses.RequestsMock,
) -> None:
    http.get(f"{BASE}/bills", status=401)
    auth = FakeAuth(retry_makes_sense=False)
    client, _ = make_client(auth=auth)

    with pytest.raises(ReauthRequired):
        client.request("GET", "/bills")
    assert auth.refreshes == 1
    assert len(http.calls) == 1


def test_401_without_auth_provider_is_reauth(http: responses.RequestsMock) -> None:
    http.post(f"{BASE}/oauth/v2/token", status=401)
    client = ApiClient(BASE, "zoho")

    with pytest.raises(ReauthRequired):
        client.request("POST", "/oauth/v2/token")


def test_403_surviving_a_refresh_is_permission_denied(http: responses.RequestsMock) -> None:
    url = "https://us2.api.concursolutions.com/api/v3.0/expense/reports"
    http.get(url, status=403, json={"Error": {"Message": "Forbidden Request"}})
    http.get(url, status=403, json={"Error": {"Message": "Forbidden Request"}})
    auth = FakeAuth()
    client = ApiClient(
        "https://us2.api.concursolutions.com", "concur", translator=concur_translate, auth=auth
    )

    with pytest.raises(PermissionDeniedError) as caught:
        client.request("GET", "/api/v3.0/expense/reports")
    assert auth.refreshes == 1
    assert "Forbidden Request" in str(caught.value)


# --------------------------------------------------------------------------- network failures


def _refused() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


def _reset() -> requests.ConnectionError:
    cause = ConnectionResetError(104, "Connection reset by peer")
    return requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", cause))


@pytest.mark.parametrize(
    ("method", "exc", "ambiguous"),
    [
        pytest.param(
            "POST", requests.exceptions.ConnectTimeout("slow"), False, id="connect-timeout"
        ),
        pytest.param("POST", _refused(), False, id="refused-before-send"),
        pytest.param("POST", requests.exceptions.ReadTimeout("slow"), True, id="read-timeout-post"),
        pytest.param("POST", _reset(), True, id="reset-after-send-post"),
        pytest.param("PUT", requests.ConnectionError("unknown"), True, id="unknown-conn-error-put"),
        pytest.param(
            "POST", requests.exceptions.ChunkedEncodingError("cut"), True, id="cut-off-answer"
        ),
        pytest.param("GET", requests.exceptions.ReadTimeout("slow"), False, id="read-timeout-get"),
        pytest.param("GET", _reset(), False, id="reset-get"),
    ],
)
def test_network_errors_are_retryable_with_honest_ambiguity(
    http: responses.RequestsMock, no_sleep: None, method: str, exc: Exception, ambiguous: bool
) -> None:
    http.add(method, f"{BASE}/bills", body=exc)
    client, records = make_client()

    with pytest.raises(RetryableError) as caught:
        client.request(method, "/bills", json={"bill_number": "B-1"})

    assert type(caught.value) is RetryableError
    assert caught.value.ambiguous is ambiguous
    assert caught.value.status is None
    assert caught.value.system == "zoho"
    assert caught.value.path == "/bills"
    assert len(http.calls) == 1
    assert records[0].status is None
    assert records[0].error == "RetryableError"


@pytest.mark.parametrize(
    ("method", "status", "ambiguous"),
    [
        pytest.param("POST", 500, True, id="500-post"),
        pytest.param("PUT", 503, True, id="503-put"),
        pytest.param("GET", 502, False, id="502-get"),
    ],
)
def test_5xx_is_retryable_and_ambiguous_only_for_writes(
    http: responses.RequestsMock, no_sleep: None, method: str, status: int, ambiguous: bool
) -> None:
    http.add(method, f"{BASE}/bills", status=status, json={"code": 1000, "message": "oops"})
    client, _ = make_client()

    with pytest.raises(RetryableError) as caught:
        client.request(method, "/bills")

    assert caught.value.ambiguous is ambiguous
    assert caught.value.status == status
    assert len(http.calls) == 1  # no retry loop inside the client


def test_unsendable_request_is_plain_api_error(http: responses.RequestsMock) -> None:
    http.get(f"{BASE}/bills", body=requests.exceptions.InvalidHeader("bad header"))
    client, _ = make_client()

    with pytest.raises(ApiError) as caught:
        client.request("GET", "/bills")
    assert not isinstance(caught.value, RetryableError)


# --------------------------------------------------------------------------- throttle, observer


def test_throttle_is_asked_before_every_attempt(http: responses.RequestsMock) -> None:
    http.get(f"{BASE}/bills", status=401)
    http.get(f"{BASE}/bills", json={})
    throttle = FakeThrottle()
    client, _ = make_client(throttle=throttle)

    client.request("GET", "/bills?page=2")

    assert throttle.calls == [("GET", "/bills"), ("GET", "/bills")]


def test_throttle_refusal_sends_nothing(http: responses.RequestsMock) -> None:
    throttle = FakeThrottle(RateLimitedError("bucket empty", retry_after=4))
    client, records = make_client(throttle=throttle)

    with pytest.raises(RateLimitedError) as caught:
        client.request("POST", "/bills")

    assert caught.value.retry_after == 4
    assert caught.value.system == "zoho"
    assert len(http.calls) == 0
    assert records == []


def test_broken_observer_does_not_fail_the_call(http: responses.RequestsMock) -> None:
    http.post(f"{BASE}/bills", json={"bill": {"bill_id": "9"}})

    def explode(_record: CallRecord) -> None:
        raise RuntimeError("audit down")

    client = ApiClient(BASE, "zoho", on_response=explode)
    assert client.request("POST", "/bills") == {"bill": {"bill_id": "9"}}


# --------------------------------------------------------------------------- URLs


def test_absolute_url_on_the_same_host_is_followed(http: responses.RequestsMock) -> None:
    http.get(f"{BASE}/bills?page=2", json={"bills": []})
    client, records = make_client()

    client.request("GET", f"{BASE}/bills?page=2")
    assert records[0].path == "/bills"


def test_absolute_url_on_another_host_is_refused(http: responses.RequestsMock) -> None:
    client, _ = make_client()

    with pytest.raises(UntrustedHostError):
        client.request("GET", "https://evil.example.test/steal")
    assert len(http.calls) == 0


# --------------------------------------------------------------------------- messages & secrets


def test_error_message_names_the_call_and_hides_query_and_tokens(
    http: responses.RequestsMock,
) -> None:
    echoed = f'{{"code": 4, "message": "Invalid value passed for {TOKEN_1}", "x": "{"y" * 900}"}}'
    http.post(f"{BASE}/bills", status=400, body=echoed, content_type="application/json")
    client, _ = make_client()

    with pytest.raises(InvalidRequestError) as caught:
        client.request("POST", "/bills?organization_id=42&refresh_token=abc123secret")

    error = caught.value
    assert str(error).startswith("zoho POST /bills -> 400: Invalid value passed for")
    assert "organization_id" not in str(error)
    assert error.path == "/bills"
    assert error.code == 4
    body_excerpt = error.body_excerpt or ""
    assert len(body_excerpt) <= 501
    for text in (str(error), body_excerpt, error.context["vendor_message"]):
        assert TOKEN_1 not in text
        assert "abc123secret" not in text


def test_no_secret_reaches_debug_logs_or_errors(
    http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    register_secret(TOKEN_2)
    caplog.set_level(logging.DEBUG)
    http.get(f"{BASE}/bills", status=401, json={"code": 57, "message": f"bad token {TOKEN_1}"})
    http.get(
        f"{BASE}/bills",
        body=requests.exceptions.ReadTimeout(
            f"HTTPSConnectionPool: Read timed out. (url: /bills?refresh_token=r-secret-value-1"
            f"&x={TOKEN_2})"
        ),
    )
    client, _ = make_client()

    with pytest.raises(RetryableError) as caught:
        client.request("GET", "/bills", params={"refresh_token": "r-secret-value-1"})

    assert "bills" in caplog.text  # the calls were logged at all
    for secret in (TOKEN_1, TOKEN_2, "r-secret-value-1"):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
    assert caught.value.__suppress_context__ is True


# --------------------------------------------------------------------------- default translation


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(200, None, id="200"),
        pytest.param(302, None, id="302"),
        pytest.param(400, InvalidRequestError, id="400"),
        pytest.param(401, TokenExpiredError, id="401"),
        pytest.param(403, PermissionDeniedError, id="403"),
        pytest.param(404, NotFoundError, id="404"),
        pytest.param(408, RetryableError, id="408"),
        pytest.param(409, InvalidRequestError, id="409"),
        pytest.param(422, InvalidRequestError, id="422"),
        pytest.param(429, RateLimitedError, id="429"),
        pytest.param(500, RetryableError, id="500"),
    ],
)
def test_default_translate_by_status(status: int, expected: type[ApiError] | None) -> None:
    response = requests.Response()
    response.status_code = status
    response.headers["Retry-After"] = "7"
    error = default_translate(response)
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected
        assert error.status == status
    if isinstance(error, RateLimitedError):
        assert error.retry_after == 7.0


@freeze_time("2025-01-15T12:00:00Z", tick=False)
@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(None, 3.0, id="missing"),
        pytest.param("", 3.0, id="empty"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("120", 120.0, id="seconds"),
        pytest.param("Wed, 15 Jan 2025 12:01:30 GMT", 90.0, id="http-date"),
        pytest.param("Wed, 15 Jan 2025 11:00:00 GMT", 0.0, id="date-in-past"),
        pytest.param("soon", 3.0, id="garbage"),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float) -> None:
    assert parse_retry_after(value, default=3.0) == seconds


# --------------------------------------------------------------------------- issue #12


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@responses.activate
def test_a_redirect_is_an_error_and_is_never_followed(status: int) -> None:
    """A 307/308 would resend the body and the auth header to the Location: never follow."""
    responses.post(
        f"{BASE}/contacts",
        status=status,
        headers={"Location": "https://evil.example/steal?token=x"},
    )
    stolen = responses.post("https://evil.example/steal", json={"ok": True})
    client = ApiClient(BASE, "zoho", auth=FakeAuth())
    with pytest.raises(ApiError) as info:
        client.request("POST", "/contacts", data={"client_secret": "s3cr3t-value"})
    assert stolen.call_count == 0 and len(responses.calls) == 1
    message = str(info.value)
    assert f"-> {status}" in message and "redirect" in message
    assert "evil.example/steal" in message and "token=x" not in message
    assert not isinstance(info.value, RetryableError)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("../x", "..%2Fx"),
        ("a/b?c", "a%2Fb%3Fc"),
        ("x#frag", "x%23frag"),
        ("50%", "50%25"),
        ("a\\b c", "a%5Cb%20c"),
        ("gWM81vDo$oAsx", "gWM81vDo$oAsx"),  # Concur v3 ids carry '$'
    ],
)
@responses.activate
def test_payload_ids_are_escaped_as_one_path_segment(raw: str, escaped: str) -> None:
    from connector.concur.client import ConcurClient
    from connector.concur.expense import REPORTS_PATH
    from connector.zoho.client import ZohoBooksClient

    zoho_url = f"https://www.zohoapis.com/books/v3/contacts/{escaped}"
    responses.get(zoho_url, json={"code": 0, "contact": {"contact_id": raw}})
    zoho = ZohoBooksClient("https://www.zohoapis.com", "1", auth=FakeAuth())
    assert zoho.contacts.get(raw)["contact_id"] == raw
    assert responses.calls[-1].request.url.split("?")[0] == zoho_url

    concur_url = f"https://us2.api.concursolutions.com{REPORTS_PATH}/{escaped}"
    responses.get(concur_url, json={"ID": raw})
    concur = ConcurClient("https://us2.api.concursolutions.com", "co", auth=FakeAuth())
    assert concur.expense_reports.get(raw)["ID"] == raw
    assert responses.calls[-1].request.url == concur_url


@pytest.mark.parametrize("raw", ["", ".", ".."])
def test_dot_segments_and_empty_ids_are_refused(raw: str) -> None:
    from connector.zoho.client import ZohoBooksClient

    zoho = ZohoBooksClient("https://www.zohoapis.com", "1", auth=FakeAuth())
    with pytest.raises(InvalidRequestError, match="as an id in a URL path"):
        zoho.contacts.get(raw)
