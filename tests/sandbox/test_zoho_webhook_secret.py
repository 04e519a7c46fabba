"""The sandbox refuses a webhook secret Zoho Books refuses (12-50 letters and digits, #14.1),
and signs over every query parameter of the configured URL, hex or base64 (#14.2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

import pytest
import requests

from sandbox.zoho.seed import MAIN_ORG_ID as MAIN_ORG

if TYPE_CHECKING:
    from sandbox.admin import AdminClient
    from tests.sandbox.conftest import Receiver


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("abc-DEF_ghi-JKL_mno", id="urlsafe-punctuation"),
        pytest.param("Short12345a", id="11-chars"),
        pytest.param("a" * 51, id="51-chars"),
        pytest.param("spaces are not ok 123", id="space"),
        pytest.param("ünïcödeLetters123", id="non-ascii"),
    ],
)
def test_secret_outside_zohos_rule_is_refused(admin: AdminClient, secret: str) -> None:
    response = requests.put(
        f"{admin.base_url}/_admin/zoho/orgs/{MAIN_ORG}/webhook",
        json={"url": "http://127.0.0.1:9/hook", "secret": secret},
        timeout=10,
    )
    assert response.status_code == 400
    assert "12-50 characters, letters and digits" in response.text
    got = requests.get(f"{admin.base_url}/_admin/zoho/orgs/{MAIN_ORG}/webhook", timeout=10)
    assert got.json()["webhook"] is None


@pytest.mark.parametrize("secret", ["A" * 12, "Zz09" * 12 + "ab", ""])
def test_secret_inside_the_rule_or_none_is_accepted(admin: AdminClient, secret: str) -> None:
    config = admin.zoho_set_webhook(MAIN_ORG, "http://127.0.0.1:9/hook", secret)
    assert config["secret"] == secret


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_signature_covers_the_token_parameter(
    admin: AdminClient, receiver: Receiver, encoding: str
) -> None:
    secret = "S1gn1ngSecretForTheSandbox0123456789"
    requests.post(f"{admin.base_url}/_admin/zoho/settings",
                  json={"webhook_signature_encoding": encoding}, timeout=10).raise_for_status()  # fmt: skip
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook?token=tok123&b=2", secret)
    admin.zoho_create(MAIN_ORG, "bill", amount=10.0, bill_number="TOK-1")
    got = receiver.get()
    canonical = b"b2tokentok123" + got.body
    digest = hmac.new(secret.encode(), canonical, hashlib.sha256)
    want = digest.hexdigest() if encoding == "hex" else base64.b64encode(digest.digest()).decode()
    assert got.headers["X-Zoho-Webhook-Signature"] == want
