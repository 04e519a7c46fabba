"""The allow-list for hosts named by token responses and OAuth redirects."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from connector.config import Settings
from connector.errors import UntrustedHostError
from connector.hosts import check_api_host

BASE = Settings(
    database_url="sqlite://", redis_url=None, secret_keys=("k",), embedded=True, var_dir=Path("var")
)


@pytest.mark.parametrize(
    ("url", "system"),
    [
        pytest.param("https://www.zohoapis.com", "zoho", id="zoho-us-api"),
        pytest.param("https://accounts.zoho.eu/", "zoho", id="zoho-eu-accounts"),
        pytest.param("https://accounts.zohocloud.ca", "zoho", id="zoho-ca-accounts"),
        pytest.param("https://www.zohoapis.com.cn", "zoho", id="zoho-cn-api"),
        pytest.param("https://www.zohoapis.sa", "zoho", id="zoho-sa-api"),
        pytest.param("https://us2.api.concursolutions.com", "concur", id="concur-us2"),
        pytest.param("https://emea-impl.api.concursolutions.com", "concur", id="concur-impl"),
        pytest.param("https://www-us.api.concursolutions.com", None, id="any-vendor"),
    ],
)
def test_vendor_hosts_are_allowed(url: str, system: str | None) -> None:
    assert check_api_host(url, BASE, system) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "system", "why"),
    [
        pytest.param("https://evil.example", "zoho", "not a Zoho domain", id="other-host"),
        pytest.param(
            "https://zohoapis.com.evil.example", "zoho", "not a Zoho domain", id="suffix-trick"
        ),
        pytest.param("https://notzoho.com", "zoho", "not a Zoho domain", id="no-dot-boundary"),
        pytest.param("http://www.zohoapis.com", "zoho", "must use https", id="plain-http"),
        pytest.param("https://www.zohoapis.com:8443", "zoho", "must use https", id="odd-port"),
        pytest.param(
            "https://us2.api.concursolutions.com", "zoho", "not a Zoho domain", id="wrong-vendor"
        ),
        pytest.param("https://u:p@www.zohoapis.com", "zoho", "credentials", id="userinfo"),
        pytest.param("https://www.zohoapis.com?x=1", "zoho", "query", id="query"),
        pytest.param("ftp://www.zohoapis.com", "zoho", "http", id="scheme"),
        pytest.param(
            "http://127.0.0.1:8090/zoho/us/api", "zoho", "sandbox mode is off", id="sandbox-off"
        ),
    ],
)
def test_other_hosts_are_refused_with_a_reason(url: str, system: str, why: str) -> None:
    with pytest.raises(UntrustedHostError, match=why):
        check_api_host(url, BASE, system)


def test_sandbox_hosts_only_in_sandbox_mode() -> None:
    sandbox = replace(BASE, sandbox_url="http://127.0.0.1:8090")
    assert check_api_host("http://127.0.0.1:8090/zoho/eu/api", sandbox, "zoho").endswith("/eu/api")
    with pytest.raises(UntrustedHostError):
        check_api_host("http://127.0.0.1:8091/zoho/eu/api", sandbox, "zoho")


def test_trusted_hosts() -> None:
    trusted = replace(BASE, trusted_hosts=("books.proxy.example", "localhost:9000", "[::1]:7000"))
    assert check_api_host("https://books.proxy.example/api", trusted, "zoho")
    assert check_api_host("http://localhost:9000", trusted, "concur")
    assert check_api_host("http://[::1]:7000/x", trusted, "concur")
    with pytest.raises(UntrustedHostError, match="only for loopback"):
        check_api_host("http://books.proxy.example", trusted, "zoho")
    with pytest.raises(UntrustedHostError):
        check_api_host("http://localhost:9001", trusted, "zoho")
