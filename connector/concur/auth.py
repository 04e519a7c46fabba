"""SAP Concur tokens: the company bootstrap, the refresh grant, rotation, and the app token.

Facts this follows (sap-concur.md §1):

- A company token comes only from the password grant with ``credtype=authtoken``: ``username``
  is the company UUID, ``password`` the company request token (valid 24 hours).
- Error code 16 ("lives elsewhere") names the right host in ``geolocation``; we retry there once.
- Every token response may carry a new refresh token and a new ``geolocation``: both are stored
  after *every* response, in the same commit as the access token (``connector.api.oauth``).
  ``refresh_expires_in`` is an epoch (not a duration), optional.
- The refresh token lives six months and refreshing keeps it alive; when a refresh does not move
  its expiry and fewer than :data:`REFRESH_WARNING_DAYS` days are left, the connection carries a
  warning (log line, status reason, one audit row).
- The Event Subscription Service wants an *app* token: ``client_credentials``, no refresh token.

oauthlib prepares each grant's form (``LegacyApplicationClient`` for the password grant and its
refresh, ``BackendApplicationClient`` for the app token) and reads the answers, through
``connector.api.oauth_protocol``; the code-16 retry, geolocation, ``refresh_expires_in`` as an
epoch and the expiry warning are Concur's and stay here.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import requests
from oauthlib.oauth2 import BackendApplicationClient, Client, LegacyApplicationClient
from sqlalchemy.orm import Session

from connector import ledger
from connector.api import oauth_protocol
from connector.api.base import ApiClient
from connector.api.oauth import CredentialView, TokenGrant
from connector.api.redaction import register_secret
from connector.concur.errors import (
    CORRELATION_HEADER,
    LIVES_ELSEWHERE,
    translate,
    translate_oauth,
)
from connector.config import Settings
from connector.db import utcnow
from connector.errors import ConfigurationError, ConnectorError, ReauthRequired
from connector.hosts import check_api_host
from connector.models import Connection, Credential

log = logging.getLogger(__name__)

SYSTEM = "concur"
TOKEN_PATH = "/oauth2/v0/token"
#: Warn when a refresh token that refreshing did not extend has fewer days than this left.
REFRESH_WARNING_DAYS = 30
#: Documented refresh-token lifetime, used only to describe an unknown expiry.
REFRESH_TOKEN_LIFETIME = dt.timedelta(days=182)


def client_credentials(settings: Settings) -> tuple[str, str]:
    if not settings.concur_client_id or not settings.concur_client_secret:
        raise ConfigurationError("CONCUR_CLIENT_ID and CONCUR_CLIENT_SECRET are required")
    register_secret(settings.concur_client_secret)
    return settings.concur_client_id, settings.concur_client_secret


#: Prepares one grant's token-request body with oauthlib, given our client id and secret.
Prepare = Callable[[str, str], tuple[Client, str]]


def _post_token(
    settings: Settings, base_url: str, prepare: Prepare, session: requests.Session | None
) -> tuple[dict[str, Any], str]:
    """Send the token request ``prepare`` builds; follow one code-16 redirect to the named host.

    oauthlib prepares the body (client id and secret in the form, as Concur wants) and parses
    the answer; our ``ApiClient`` sends it. Returns the parsed token and the host that answered.
    """
    client_id, client_secret = client_credentials(settings)
    client, body = prepare(client_id, client_secret)
    url = check_api_host(base_url, settings, SYSTEM)
    for attempt in (1, 2):
        api = ApiClient(
            url,
            SYSTEM,
            translator=translate,
            session=session,
            correlation_header=CORRELATION_HEADER,
        )
        try:
            token = oauth_protocol.token_request(api, TOKEN_PATH, client, body, translate_oauth)
        except ReauthRequired as exc:
            elsewhere = exc.context.get("geolocation")
            if exc.code == LIVES_ELSEWHERE and elsewhere and attempt == 1:
                new_url = check_api_host(str(elsewhere), settings, SYSTEM)
                log.info("Concur says the company lives at %s (code 16); retrying there", new_url)
                url = new_url
                continue
            raise
        finally:
            api.close()
        return token, url
    raise AssertionError("unreachable")  # pragma: no cover


def _grant(token: dict[str, Any], settings: Settings, answered_at: str) -> TokenGrant:
    """Our :class:`TokenGrant` from the token oauthlib parsed, plus Concur's own fields."""
    access = str(token.get("access_token") or "")
    if not access:
        raise ConnectorError("Concur answered the token request without an access token")
    register_secret(access)
    register_secret(token.get("id_token"))
    refresh = str(token["refresh_token"]) if token.get("refresh_token") else None
    register_secret(refresh)
    geolocation = token.get("geolocation")
    base = check_api_host(str(geolocation), settings, SYSTEM) if geolocation else answered_at
    expires_at: dt.datetime | None = None
    raw_expiry = token.get("refresh_expires_in")
    if raw_expiry not in (None, ""):
        try:
            expires_at = dt.datetime.fromtimestamp(float(str(raw_expiry)), dt.UTC)
        except (TypeError, ValueError, OverflowError):
            log.warning("Concur sent an unreadable refresh_expires_in; keeping the stored expiry")
    return TokenGrant(
        access_token=access,
        # "3600" in the main doc, 3600 in others: oauthlib reads both.
        expires_in=oauth_protocol.expires_in(token),
        refresh_token=refresh,
        api_base_url=base,
        auth_base_url=base,
        refresh_expires_at=expires_at,
        region=region_of(base),
    )


def region_of(base_url: str) -> str:
    """A short label for the data centre: ``us2`` from ``https://us2.api.concursolutions.com``."""
    host = base_url.split("://", 1)[-1].split("/", 1)[0]
    if host.endswith(".concursolutions.com") or host.endswith(".concurcdc.cn"):
        return host.split(".", 1)[0]
    return base_url.rstrip("/").rsplit("/", 1)[-1][:32]


def bootstrap(
    settings: Settings,
    *,
    company_id: str,
    request_token: str,
    auth_url: str | None = None,
    session: requests.Session | None = None,
) -> TokenGrant:
    """Exchange a company request token for the company's first tokens.

    Raises:
        ReauthRequired: Concur refused (wrong or expired request token, code 5/136, …).
        UntrustedHostError: the auth URL or a returned geolocation is not allowed.
    """
    register_secret(request_token)

    def prepare(client_id: str, client_secret: str) -> tuple[Client, str]:
        # The password grant, with Concur's ``credtype`` saying the password is a request token.
        client = LegacyApplicationClient(client_id)
        return client, client.prepare_request_body(
            username=company_id,
            password=request_token,
            include_client_id=True,
            client_secret=client_secret,
            credtype="authtoken",
        )

    token, answered_at = _post_token(
        settings, auth_url or settings.concur_auth_url, prepare, session
    )
    grant = _grant(token, settings, answered_at)
    if not grant.refresh_token:
        raise ConnectorError("Concur's company bootstrap returned no refresh token")
    return grant


def app_token(
    settings: Settings, base_url: str | None = None, *, session: requests.Session | None = None
) -> tuple[str, str]:
    """An application JWT (``client_credentials``) for the Event Subscription Service.

    Returns the token and the geolocation to call with it. Not stored: it lives an hour and
    ``connector concur …`` commands ask for a fresh one each time.
    """

    def prepare(client_id: str, client_secret: str) -> tuple[Client, str]:
        client = BackendApplicationClient(client_id)
        return client, client.prepare_request_body(
            include_client_id=True, client_secret=client_secret
        )

    token, answered_at = _post_token(
        settings, base_url or settings.concur_auth_url, prepare, session
    )
    grant = _grant(token, settings, answered_at)
    return grant.access_token, grant.api_base_url or answered_at


class ConcurRefresher:
    """The refresh grant at the credential's geolocation."""

    system = SYSTEM

    def __init__(self, settings: Settings, *, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session

    def refresh(self, credential: CredentialView) -> TokenGrant:
        base = credential.auth_base_url or credential.api_base_url
        if not credential.refresh_token or not base:
            raise ConnectorError(f"Concur credential {credential.id} has no refresh token")
        refresh_token = credential.refresh_token

        def prepare(client_id: str, client_secret: str) -> tuple[Client, str]:
            # Any oauthlib client prepares the refresh grant; the company token came from the
            # password grant, so that client it is.
            client = LegacyApplicationClient(client_id)
            return client, client.prepare_refresh_body(
                refresh_token=refresh_token, client_id=client_id, client_secret=client_secret
            )

        token, answered_at = _post_token(self.settings, base, prepare, self.session)
        return _grant(token, self.settings, answered_at)


def refresh_warning(
    previous_expiry: dt.datetime | None, new_expiry: dt.datetime | None, now: dt.datetime
) -> str | None:
    """The warning to raise after a refresh, or ``None`` when the refresh token is healthy."""
    expiry = new_expiry or previous_expiry
    if expiry is None:
        return None
    extended = previous_expiry is None or (new_expiry is not None and new_expiry > previous_expiry)
    left = expiry - now
    if extended or left > dt.timedelta(days=REFRESH_WARNING_DAYS):
        return None
    days = max(0, left.days)
    return (
        f"Concur refresh token expires {expiry:%Y-%m-%d} ({days} day(s) left) and refreshing "
        "did not extend it; re-authorize with a new company request token before then"
    )


def after_refresh(
    session: Session, row: Credential, previous: CredentialView, grant: TokenGrant
) -> None:
    """Warn (log, connection status reason, one audit row) when the refresh token is lapsing."""
    warning = refresh_warning(previous.refresh_expires_at, grant.refresh_expires_at, utcnow())
    connection = session.get(Connection, row.connection_id)
    if connection is None:
        return
    if warning is None:
        if connection.status_reason and connection.status_reason.startswith("Concur refresh"):
            connection.status_reason = None
        return
    log.warning("connection %s: %s", row.connection_id, warning)
    if connection.status_reason != warning:
        connection.status_reason = warning
        ledger.audit(
            session,
            None,
            connection_id=row.connection_id,
            step="connection",
            outcome="refresh_expiring",
            message=warning,
        )
