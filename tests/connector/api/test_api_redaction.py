"""Redaction: every secret form we know, in strings, headers and log records."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from connector.api.redaction import (
    REDACTED,
    RedactingFilter,
    clear_secrets,
    excerpt,
    install,
    redact,
    redact_headers,
    register_secret,
)

ZOHO_TOKEN = "1000.0123456789abcdef0123456789abcdef.fedcba9876543210fedcba9876543210"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjb21wYW55In0.c2lnbmF0dXJl"


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        pytest.param(
            "Authorization: Bearer abcdefgh12345678", "abcdefgh12345678", id="header-bearer"
        ),
        pytest.param(f"authorization: Zoho-oauthtoken {ZOHO_TOKEN}", ZOHO_TOKEN, id="header-zoho"),
        pytest.param("Authorization: s3cr3t-opaque-value", "s3cr3t-opaque-value", id="header-raw"),
        pytest.param("{'Authorization': 'Bearer tok-in-repr-1'}", "tok-in-repr-1", id="repr-dict"),
        pytest.param('{"Authorization": "Basic dXNlcjpwYXNz"}', "dXNlcjpwYXNz", id="json-basic"),
        pytest.param("sent Bearer abcdefgh12345678 upstream", "abcdefgh12345678", id="bare-bearer"),
        pytest.param(f"Zoho-oauthtoken {ZOHO_TOKEN}", ZOHO_TOKEN, id="bare-zoho-scheme"),
        pytest.param(f"token {ZOHO_TOKEN} expired", ZOHO_TOKEN, id="bare-zoho-token"),
        pytest.param(f"id token {JWT}", JWT, id="bare-jwt"),
        pytest.param('{"access_token": "at-123456789"}', "at-123456789", id="json-access"),
        pytest.param('{"refresh_token":"rt-123456789"}', "rt-123456789", id="json-refresh"),
        pytest.param('{"id_token": "it-123456789"}', "it-123456789", id="json-id-token"),
        pytest.param('{"client_secret": "cs-123456789"}', "cs-123456789", id="json-secret"),
        pytest.param('{"password": "pw-123456789"}', "pw-123456789", id="json-password"),
        pytest.param('{"code": "1000.grant.code"}', "1000.grant.code", id="json-oauth-code"),
        pytest.param('{"refresh_token": "truncated-rt', "truncated-rt", id="json-truncated"),
        pytest.param(
            "grant_type=refresh_token&refresh_token=rt-form-1&client_id=x",
            "rt-form-1",
            id="form-refresh",
        ),
        pytest.param("client_secret=cs-form-1&x=1", "cs-form-1", id="form-secret"),
        pytest.param(
            "grant_type=authorization_code&code=1000.grant&redirect_uri=x",
            "1000.grant",
            id="form-code",
        ),
        pytest.param(
            "grant_type=password&password=request-token-1&credtype=authtoken",
            "request-token-1",
            id="form-request-token",
        ),
        pytest.param("/oauth/v2/token/revoke?token=rt-revoke-1", "rt-revoke-1", id="query-token"),
        pytest.param("/x?access_token=at-query-1#frag", "at-query-1", id="query-access"),
        pytest.param("password: hunter2hunter2", "hunter2hunter2", id="loose-password"),
    ],
)
def test_redact_scrubs_every_known_form(text: str, secret: str) -> None:
    scrubbed = redact(text)
    assert secret not in scrubbed
    assert REDACTED in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"code": 57, "message": "You are not authorized"}', id="zoho-code"),
        pytest.param("status 401, code 57", id="prose-code"),
        pytest.param("grant_type=refresh_token", id="grant-type-value"),
        pytest.param("the Basic plan; Bearer token expired", id="scheme-words"),
        pytest.param("error_code=45", id="suffix-key"),
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def test_registered_secret_is_scrubbed_in_any_shape() -> None:
    register_secret("opaque-concur-refresh-77")
    text = "refresh failed for opaque-concur-refresh-77/with/slashes"
    assert redact(text) == f"refresh failed for {REDACTED}/with/slashes"


def test_registered_secret_longest_match_wins_and_short_values_are_ignored() -> None:
    register_secret("abcdefgh")
    register_secret("abcdefgh-longer")
    register_secret("short")
    assert redact("abcdefgh-longer abcdefgh short") == f"{REDACTED} {REDACTED} short"


def test_redact_accepts_non_strings() -> None:
    register_secret("in-an-exception-1")
    assert redact(ValueError("bad in-an-exception-1")) == f"bad {REDACTED}"


def test_redact_headers() -> None:
    headers = {
        "Authorization": "Bearer x",
        "Cookie": "session=1",
        "X-Zoho-Token": "t",
        "Accept": "application/json",
        "X-Note": "see Bearer abcdefgh12345678",
    }
    assert redact_headers(headers) == {
        "Authorization": REDACTED,
        "Cookie": REDACTED,
        "X-Zoho-Token": REDACTED,
        "Accept": "application/json",
        "X-Note": f"see Bearer {REDACTED}",
    }


def test_excerpt_redacts_before_truncating() -> None:
    body = ("x" * 495) + '{"access_token": "' + "s" * 40 + '"}'
    short = excerpt(body, limit=500)
    assert "sssss" not in short
    assert len(short) <= 501
    assert excerpt(None) == ""
    assert excerpt(b'{"password": "pw-bytes-1"}') == f'{{"password": "{REDACTED}"}}'


# --------------------------------------------------------------------------- logging


def test_filter_scrubs_message_and_args(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RedactingFilter())
    log = logging.getLogger("connector.test.redaction")
    caplog.set_level(logging.DEBUG)

    log.debug(
        "calling with %s and %r",
        f"Authorization: Zoho-oauthtoken {ZOHO_TOKEN}",
        {"refresh_token": "rt-arg-1"},
    )

    assert ZOHO_TOKEN not in caplog.text
    assert "rt-arg-1" not in caplog.text
    assert caplog.records[0].getMessage().startswith("calling with Authorization: [REDACTED]")


def test_filter_scrubs_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RedactingFilter())
    register_secret("held-access-token-9")
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("connector.test.redaction")

    try:
        raise RuntimeError("upstream rejected held-access-token-9")
    except RuntimeError:
        log.exception("refresh failed")

    assert "held-access-token-9" not in caplog.text
    assert "RuntimeError" in caplog.text


def test_filter_survives_bad_format_args(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RedactingFilter())
    caplog.set_level(logging.DEBUG)
    logging.getLogger("connector.test.redaction").debug("%d items", "password=pw-bad-args-1")
    assert "pw-bad-args-1" not in caplog.text


def test_install_covers_records_from_child_loggers() -> None:
    parent = logging.getLogger("redaction-install-test")
    parent.propagate = False
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler()
    parent.addHandler(handler)
    try:
        install(parent)
        install(parent)  # idempotent per handler
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        logging.getLogger("redaction-install-test.child").warning("token=child-secret-1")
    finally:
        parent.removeHandler(handler)
    assert lines == [f"token={REDACTED}"]
