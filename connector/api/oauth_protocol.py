"""The OAuth 2 protocol through requests-oauthlib and oauthlib, sent through our own transport.

Why a library: the authorization URL, the token-request bodies of each grant and the reading
of a token response are RFC 6749 mechanics that requests-oauthlib (``OAuth2Session``) and the
oauthlib clients under it (``WebApplicationClient``, ``LegacyApplicationClient``,
``BackendApplicationClient``) implement and test; hand-writing them was code we had to keep
right ourselves. Why not the library's transport: ``OAuth2Session.fetch_token`` sends with
plain ``requests``, so our timeouts, redirect refusal, correlation ids, error translation,
rate limiter and audit hook (``ApiClient``) would be bypassed, and it refuses ``http://``
outright while the sandbox (and only it, see ``connector.hosts``) speaks plain HTTP on
loopback. So the library *prepares* (URL, form body) and *parses* (token response), and
:class:`~connector.api.base.ApiClient` *sends*.

What stays with the callers (``connector/<vendor>/auth.py``, ``connector.api.oauth``): which
host to talk to (allow-list, data centres, geolocation), vendor fields of the token answer,
the state (ours is signed and browser-bound: ``connector.oauth_state``), locking and storing.

Errors: oauthlib raises its own exceptions (``MissingTokenError``, ``OAuth2Error`` for an
``error`` field, ``ValueError`` for an unreadable ``expires_in``, ``Warning`` for a changed
scope). None of them leaves this module: the vendor's ``translate_oauth`` (in
``connector/<vendor>/errors.py``, the one place per vendor that reads answers) turns each into
a ``connector.errors`` class.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from oauthlib.common import urldecode
from oauthlib.oauth2 import Client, OAuth2Error
from requests_oauthlib import OAuth2Session

from connector.api.base import ApiClient
from connector.errors import ConnectorError

#: What a vendor's ``translate_oauth`` accepts: anything oauthlib raises while parsing.
OAUTHLIB_ERRORS: tuple[type[BaseException], ...] = (OAuth2Error, Warning, ValueError, TypeError)

#: Turns an oauthlib exception into one of ours (``connector/<vendor>/errors.py``).
OAuthTranslator = Callable[[BaseException], ConnectorError]

#: oauthlib's documented switch for its https-only check (read on every call).
_INSECURE_TRANSPORT = "OAUTHLIB_INSECURE_TRANSPORT"
_transport_lock = threading.Lock()


@contextmanager
def _allow_listed_transport(url: str) -> Iterator[None]:
    """Let oauthlib build an ``http://`` URL that ``connector.hosts`` has already allowed.

    oauthlib refuses every ``http://`` URL unless an environment variable says otherwise; our
    allow-list is stricter (plain HTTP only for the sandbox and loopback) and is checked by the
    caller first. The variable is set only around the pure URL computation, under a lock so
    two threads cannot restore each other's value, and never around network I/O.
    """
    if url.lower().startswith("https://"):
        yield
        return
    with _transport_lock:
        previous = os.environ.get(_INSECURE_TRANSPORT)
        os.environ[_INSECURE_TRANSPORT] = "1"
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(_INSECURE_TRANSPORT, None)
            else:
                os.environ[_INSECURE_TRANSPORT] = previous


def authorization_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    **extra: str,
) -> str:
    """The consent URL (authorization-code grant) built by ``OAuth2Session``.

    Args:
        endpoint: the vendor's authorization endpoint, already allow-listed by the caller.
        scope: sent as given (Zoho wants its scopes comma-separated, not space-separated).
        state: ours, not the library's random one: it is signed, single-use and bound to the
            operator's browser (``connector.oauth_state``).
        extra: vendor parameters (Zoho: ``access_type``, ``prompt``).
    """
    session = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=scope)
    try:
        with _allow_listed_transport(endpoint):
            url, _state = session.authorization_url(endpoint, state=state, **extra)
    finally:
        session.close()
    return str(url)


def token_request(
    api: ApiClient,
    path: str,
    client: Client,
    body: str,
    translate_oauth: OAuthTranslator,
) -> dict[str, Any]:
    """POST a token request prepared by ``client`` and return the token oauthlib parsed.

    ``body`` comes from the client's ``prepare_request_body`` / ``prepare_refresh_body``. It is
    sent as a form through ``api`` (which raises our translated errors for refusals, Zoho's
    200-with-``error`` included, and for a non-JSON answer); the JSON answer is then read by
    ``client.parse_request_body_response``. The result keeps the vendor's extra fields
    (``api_domain``, ``geolocation``, ``refresh_expires_in``) for the caller to read.

    Raises:
        ConnectorError: from ``api``, or ``translate_oauth`` of what oauthlib raised.
    """
    answer = api.request("POST", path, data=dict(urldecode(body)))
    return parse_token(client, answer, translate_oauth)


def parse_token(client: Client, answer: object, translate_oauth: OAuthTranslator) -> dict[str, Any]:
    """Let oauthlib read and validate a token answer; translate whatever it raises.

    ``answer`` is the JSON our transport already parsed (oauthlib's parser wants text, so it
    is serialised back; a non-object reads as an empty answer: no access token).
    """
    text = json.dumps(answer if isinstance(answer, Mapping) else {})
    try:
        token = client.parse_request_body_response(text)
    except OAUTHLIB_ERRORS as exc:
        # ``from None``: oauthlib's exceptions can carry the parsed token (``Warning.token``).
        raise translate_oauth(exc) from None
    return dict(token)


def expires_in(token: Mapping[str, Any], default: float = 3600.0) -> float:
    """Seconds the access token lives (missing, unreadable or 0: ``default``).

    We keep the duration rather than oauthlib's ``expires_at``: the token manager stamps the
    expiry with its own clock, inside the transaction that stores the token. oauthlib 4 hands
    back an int; older releases leave the vendor's string (Concur documents ``"3600"``).
    """
    try:
        seconds = float(str(token.get("expires_in") or 0))
    except ValueError:
        return default
    return seconds if seconds > 0 else default
