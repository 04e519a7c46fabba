"""The OAuth library prepares and parses; our transport sends; no oauthlib exception escapes."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from oauthlib.oauth2 import MissingTokenError, OAuth2Error, WebApplicationClient

from connector.api import oauth_protocol
from connector.api.base import ApiClient, CallRecord
from connector.concur import errors as concur_errors
from connector.errors import ConnectorError, ReauthRequired
from connector.zoho import errors as zoho_errors

ACCOUNTS = "https://accounts.zoho.eu"


def test_authorization_url_keeps_our_state_scope_separator_and_vendor_parameters() -> None:
    url = oauth_protocol.authorization_url(
        f"{ACCOUNTS}/oauth/v2/auth", client_id="cid", redirect_uri="https://c.example/cb",
        scope="A.READ,B.CREATE", state="signed-state", access_type="offline", prompt="consent",
    )  # fmt: skip
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{ACCOUNTS}/oauth/v2/auth"
    assert query == {
        "response_type": "code", "client_id": "cid", "redirect_uri": "https://c.example/cb",
        "scope": "A.READ,B.CREATE", "state": "signed-state", "access_type": "offline",
        "prompt": "consent",
    }  # fmt: skip


def test_plain_http_is_allowed_only_for_the_call_and_the_variable_is_restored() -> None:
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    url = oauth_protocol.authorization_url(
        "http://127.0.0.1:8090/zoho/us/accounts/oauth/v2/auth", client_id="cid",
        redirect_uri="http://127.0.0.1:5999/cb", scope="A.READ", state="s",
    )  # fmt: skip
    assert url.startswith("http://127.0.0.1:8090/zoho/us/accounts/oauth/v2/auth?")
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ


@responses.activate
def test_token_request_goes_through_our_client_and_its_observer() -> None:
    seen: list[CallRecord] = []
    token_call = responses.post(
        f"{ACCOUNTS}/oauth/v2/token",
        json={"access_token": "a", "expires_in": "7200", "api_domain": "https://x"},
    )
    client = WebApplicationClient("cid")
    body = client.prepare_refresh_body(refresh_token="r", client_id="cid", client_secret="s")
    api = ApiClient(ACCOUNTS, "zoho", translator=zoho_errors.translate, on_response=seen.append)
    token = oauth_protocol.token_request(
        api, "/oauth/v2/token", client, body, zoho_errors.translate_oauth
    )
    assert token["access_token"] == "a" and token["api_domain"] == "https://x"
    assert oauth_protocol.expires_in(token) == 7200.0
    assert dict(parse_qsl(str(token_call.calls[0].request.body))) == {
        "grant_type": "refresh_token", "refresh_token": "r", "client_id": "cid",
        "client_secret": "s",
    }  # fmt: skip
    assert [(r.method, r.path, r.status) for r in seen] == [("POST", "/oauth/v2/token", 200)]


@responses.activate
def test_zoho_refusal_in_a_200_is_ours_before_oauthlib_reads_it() -> None:
    responses.post(f"{ACCOUNTS}/oauth/v2/token", json={"error": "invalid_code"})
    client = WebApplicationClient("cid")
    api = ApiClient(ACCOUNTS, "zoho", translator=zoho_errors.translate)
    with pytest.raises(ReauthRequired, match="invalid_code"):
        oauth_protocol.token_request(
            api, "/oauth/v2/token", client, client.prepare_refresh_body(refresh_token="r"),
            zoho_errors.translate_oauth,
        )  # fmt: skip


@pytest.mark.parametrize(
    "answer", [None, [], {}, {"token_type": "Bearer"}, {"access_token": "a", "expires_in": "x"}]
)
@pytest.mark.parametrize(
    "translate_oauth", [zoho_errors.translate_oauth, concur_errors.translate_oauth]
)
def test_what_oauthlib_cannot_read_becomes_a_connector_error(
    answer: Any, translate_oauth: oauth_protocol.OAuthTranslator
) -> None:
    with pytest.raises(ConnectorError) as caught:
        oauth_protocol.parse_token(WebApplicationClient("cid"), answer, translate_oauth)
    assert not isinstance(caught.value, OAuth2Error | ValueError | Warning)
    assert caught.value.__cause__ is None


def test_an_error_oauthlib_finds_is_read_like_the_vendors_oauth_dialect() -> None:
    for translate_oauth in (zoho_errors.translate_oauth, concur_errors.translate_oauth):
        error = translate_oauth(OAuth2Error(description="gone", status_code=400))
        assert isinstance(error, ConnectorError)
    refused = concur_errors.translate_oauth(_error("invalid_grant"))
    assert isinstance(refused, ReauthRequired) and refused.system == "concur"
    assert isinstance(zoho_errors.translate_oauth(_error("invalid_client")), ReauthRequired)
    missing = zoho_errors.translate_oauth(MissingTokenError())
    assert str(missing) == "Zoho answered the token request without an access token"


def _error(code: str) -> OAuth2Error:
    error = OAuth2Error(description="refused")
    error.error = code
    return error
