"""Zoho Accounts: the consent URL, the code exchange at the user's own data centre, refresh, revoke.

Facts this follows (zoho-books.md §1.2, §2):

- The redirect names the user's data centre (``location``) and its ``accounts-server``; the code
  is exchanged *there*, and the token response's ``api_domain`` + ``/books/v3`` is the API base.
  Both hosts are allow-listed (``connector.hosts``) before a secret is sent to them.
- A refresh token is issued only with ``access_type=offline``; each consent creates a new one and
  a user keeps at most 20 per client (the 21st silently kills the oldest). So the connector asks
  for consent only when a person authorizes, refreshes with the one it holds, and revokes the one
  it replaces.
- Token creation is throttled to 10 per 10 minutes per refresh token. The connector refreshes
  roughly once an hour per credential (beat, ``CONNECTOR_REFRESH_MARGIN`` before expiry) and
  caps itself at :data:`TOKEN_CREATION_LIMIT` per credential, so it never reaches Zoho's limit.

The OAuth mechanics (the consent URL, each grant's form, reading the token answer) are
requests-oauthlib's and oauthlib's, through ``connector.api.oauth_protocol``; what is Zoho's
stays here: which accounts server, ``api_domain`` and the data centre, the creation cap, revoke
(a one-field form oauthlib's https-only revocation helper would not send to the sandbox).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import Client, WebApplicationClient

from connector.api import oauth_protocol
from connector.api.base import ApiClient
from connector.api.oauth import CredentialView, TokenGrant
from connector.api.redaction import register_secret
from connector.config import Settings
from connector.errors import (
    ConfigurationError,
    ConnectorError,
    RateLimitedError,
    UntrustedHostError,
)
from connector.hosts import check_api_host
from connector.limits.ratelimit import Limit, Limiter
from connector.zoho.errors import translate, translate_oauth

SYSTEM = "zoho"
AUTHORIZE_PATH = "/oauth/v2/auth"
TOKEN_PATH = "/oauth/v2/token"

#: Explicit per-module scopes (no full-access scope): organizations, currencies and reporting
#: tags (settings), vendors (contacts), bills and invoices to read, journals and the chart of
#: accounts (accountants).
SCOPES: tuple[str, ...] = (
    "ZohoBooks.settings.READ",
    "ZohoBooks.contacts.READ",
    "ZohoBooks.contacts.CREATE",
    "ZohoBooks.contacts.UPDATE",
    "ZohoBooks.bills.READ",
    "ZohoBooks.invoices.READ",
    "ZohoBooks.accountants.READ",
    "ZohoBooks.accountants.CREATE",
    "ZohoBooks.accountants.UPDATE",
)
SCOPE = ",".join(SCOPES)

#: Our own ceiling on access-token creation per credential: half of Zoho's 10 per 10 minutes,
#: leaving room for clock skew between our limiter and Zoho's window.
TOKEN_CREATION_LIMIT = Limit(5, 600.0)

#: Data centres: location code -> (accounts server, API domain) (zoho-books.md §1.1).
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "us": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
}


def client_credentials(
    settings: Settings, client_id: str | None = None, client_secret: str | None = None
) -> tuple[str, str]:
    """The OAuth client to use: a per-connection self client if given, else the settings'."""
    cid = client_id or settings.zoho_client_id
    secret = client_secret or settings.zoho_client_secret
    if not cid or not secret:
        raise ConfigurationError(
            "ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET are required (or pass --client-id and "
            "--client-secret for a self client)"
        )
    register_secret(secret)
    return cid, secret


def authorization_url(settings: Settings, *, redirect_uri: str, state: str) -> str:
    """Where to send the browser: offline access, our scopes, a forced consent, our state.

    ``prompt=consent`` makes Zoho issue a refresh token even if the user already granted this
    client once; without it a re-authorization would come back with no refresh token at all.
    requests-oauthlib builds the URL; the host is ours to check (the allow-list) first.
    """
    client_id, _ = client_credentials(settings)
    accounts = check_api_host(settings.zoho_accounts_url, settings, SYSTEM)
    return oauth_protocol.authorization_url(
        f"{accounts}{AUTHORIZE_PATH}",
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=SCOPE,
        state=state,
        access_type="offline",
        prompt="consent",
    )


def _accounts_client(accounts_server: str, session: requests.Session | None) -> ApiClient:
    return ApiClient(accounts_server, SYSTEM, translator=translate, session=session)


def _token(
    accounts_server: str, client: Client, body: str, session: requests.Session | None
) -> dict[str, object]:
    """Send a token request oauthlib prepared; oauthlib parses the answer, our errors only."""
    api = _accounts_client(accounts_server, session)
    try:
        return oauth_protocol.token_request(api, TOKEN_PATH, client, body, translate_oauth)
    finally:
        api.close()


def _grant(token: dict[str, object], settings: Settings, accounts_server: str) -> TokenGrant:
    """Our :class:`TokenGrant` from the token oauthlib parsed, plus Zoho's ``api_domain``."""
    access = str(token.get("access_token") or "")
    if not access:
        raise ConnectorError("Zoho answered the token request without an access token")
    register_secret(access)
    refresh = str(token["refresh_token"]) if token.get("refresh_token") else None
    register_secret(refresh)
    api_domain = token.get("api_domain")
    api_base = check_api_host(str(api_domain), settings, SYSTEM) if api_domain else None
    return TokenGrant(
        access_token=access,
        expires_in=oauth_protocol.expires_in(token),
        refresh_token=refresh,
        api_base_url=api_base,
        auth_base_url=accounts_server,
        # Every token answer (code exchange and refresh) records the data centre, so a
        # connection authorized any way, or one stored before regions were kept, gets it.
        region=data_centre(api_domain=api_base, accounts_server=accounts_server),
    )


def exchange_code(
    settings: Settings,
    *,
    accounts_server: str,
    code: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str | None = None,
    location: str | None = None,
    session: requests.Session | None = None,
) -> TokenGrant:
    """Exchange a grant code at the accounts server that issued it.

    Raises:
        UntrustedHostError: ``accounts_server`` or the returned ``api_domain`` is not allowed.
        ReauthRequired: Zoho refused the code (``invalid_code``: used, expired or wrong DC).
        ConnectorError: Zoho returned no refresh token or no ``api_domain``.
    """
    register_secret(code)
    accounts_server = check_api_host(accounts_server, settings, SYSTEM)
    client = WebApplicationClient(client_id)
    # Zoho wants the client in the form, not in a Basic header.
    body = client.prepare_request_body(
        code=code, redirect_uri=redirect_uri, include_client_id=True, client_secret=client_secret
    )
    grant = _grant(_token(accounts_server, client, body, session), settings, accounts_server)
    if not grant.refresh_token:
        raise ConnectorError(
            "Zoho returned no refresh token: the consent must ask for access_type=offline "
            "(self client: generate the code with offline access)"
        )
    if not grant.api_base_url:
        raise ConnectorError("Zoho's token response has no api_domain")
    region = data_centre(
        api_domain=grant.api_base_url, accounts_server=accounts_server, location=location
    )
    if region != grant.region:
        return TokenGrant(**{**grant.__dict__, "region": region})
    return grant


def revoke(
    settings: Settings,
    accounts_server: str,
    refresh_token: str,
    *,
    session: requests.Session | None = None,
) -> None:
    """Revoke a refresh token (and with it its access tokens) so it stops counting toward 20."""
    accounts_server = check_api_host(accounts_server, settings, SYSTEM)
    client = _accounts_client(accounts_server, session)
    try:
        client.request("POST", f"{TOKEN_PATH}/revoke", data={"token": refresh_token})
    finally:
        client.close()


class ZohoRefresher:
    """The refresh grant at the credential's own accounts server, within our creation ceiling."""

    system = SYSTEM

    def __init__(
        self,
        settings: Settings,
        limiter: Limiter | None = None,
        *,
        limit: Limit = TOKEN_CREATION_LIMIT,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.limit = limit
        self.session = session

    def refresh(self, credential: CredentialView) -> TokenGrant:
        if not credential.refresh_token or not credential.auth_base_url:
            raise ConnectorError(f"Zoho credential {credential.id} has no refresh token")
        if self.limiter is not None:
            decision = self.limiter.acquire(f"zoho:token:{credential.id}", self.limit)
            if not decision.allowed:
                raise RateLimitedError(
                    f"Zoho access-token creation is capped at {self.limit} per credential "
                    f"(Zoho blocks at 10 per 10 minutes); retry in {decision.wait:.0f}s",
                    retry_after=decision.wait,
                    system=SYSTEM,
                )
        client_id, client_secret = client_credentials(
            self.settings, credential.client_id, credential.client_secret
        )
        accounts_server = check_api_host(credential.auth_base_url, self.settings, SYSTEM)
        client = WebApplicationClient(client_id)
        body = client.prepare_refresh_body(
            refresh_token=credential.refresh_token, client_id=client_id, client_secret=client_secret
        )
        token = _token(accounts_server, client, body, self.session)
        # Zoho's refresh answer carries no refresh token: the one we hold stays.
        return _grant(token, self.settings, accounts_server)


_SANDBOX_ACCOUNTS_PATH = re.compile(r"/zoho/([a-z]{2})/accounts")


def check_accounts_server(value: str, settings: Settings) -> str:
    """Accept the browser-supplied ``accounts-server`` only if it is exactly a known Zoho host.

    The value arrives in the callback's query string, so anyone can write it, and the code (and
    our client secret) are sent there. Accepted: exactly one of the eight Zoho accounts hosts
    (``https``, no port, path, query, user-info or fragment), or the sandbox / a
    ``CONNECTOR_TRUSTED_HOSTS`` host with no path or the sandbox's ``/zoho/<dc>/accounts``
    (plain http only there: ``check_api_host`` allows it for the sandbox and loopback only).

    Raises:
        UntrustedHostError: anything else; the message names the value (shortened).
    """
    text = value if isinstance(value, str) else ""
    shown = text[:100]
    known = {accounts for accounts, _api in DATA_CENTRES.values()}
    if text.rstrip("/") in known and text.count("/") <= 3:
        return text.rstrip("/")
    if any(c in text for c in "\\ \t\r\n@?#%") or not text.isprintable():
        raise UntrustedHostError(f"refusing Zoho accounts server {shown!r}: unexpected characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise UntrustedHostError(f"refusing Zoho accounts server {shown!r}: not a URL") from None
    host = (parts.hostname or "").lower()
    trusted = {h.split(":")[0].strip("[]").lower() for h in settings.trusted_hosts}
    if settings.sandbox_url:
        trusted.add((urlsplit(settings.sandbox_url).hostname or "").lower())
    path = parts.path.rstrip("/")
    sandbox_path = _SANDBOX_ACCOUNTS_PATH.fullmatch(path)
    if host not in trusted or (path and not (sandbox_path and sandbox_path[1] in DATA_CENTRES)):
        raise UntrustedHostError(
            f"refusing Zoho accounts server {shown!r}: not one of Zoho's accounts hosts "
            f"({', '.join(sorted(known))}) nor a trusted host"
        )
    return check_api_host(text, settings, SYSTEM)


def location_of(accounts_server: str) -> str | None:
    """The data-centre code of an accounts server (``https://accounts.zoho.eu`` -> ``eu``).

    The sandbox lays data centres out as ``{base}/zoho/<dc>/accounts``; that shape is read too.
    """
    base = accounts_server.rstrip("/")
    for dc, (accounts, _api) in DATA_CENTRES.items():
        if base == accounts:
            return dc
    parts = base.split("/")
    if len(parts) >= 3 and parts[-1] == "accounts" and parts[-2] in DATA_CENTRES:
        return parts[-2]
    return None


def _host_of(url: str) -> str:
    try:
        return (urlsplit(url if "://" in url else f"https://{url}").hostname or "").lower()
    except ValueError:
        return ""


#: Host -> data-centre code, for the accounts servers and API domains of :data:`DATA_CENTRES`.
_DC_BY_HOST: dict[str, str] = {
    _host_of(url): dc for dc, hosts in DATA_CENTRES.items() for url in hosts
}
_SANDBOX_DC_PATH = re.compile(r"/zoho/([a-z]{2})/(?:accounts|api)(?:/.*)?")


def _dc_of_url(url: str | None) -> str | None:
    """The code of a real Zoho host, or of the sandbox's ``/zoho/<dc>/{accounts,api}`` path."""
    if not url:
        return None
    dc = _DC_BY_HOST.get(_host_of(url))
    if dc is not None:
        return dc
    try:
        path = urlsplit(url).path.rstrip("/")
    except ValueError:
        return None
    match = _SANDBOX_DC_PATH.fullmatch(path)
    return match[1] if match and match[1] in DATA_CENTRES else None


def data_centre(
    *,
    api_domain: str | None = None,
    accounts_server: str | None = None,
    location: str | None = None,
) -> str | None:
    """The Zoho data-centre code (``eu``, ``us``, ...) of a connection, from what we know of it.

    In order of trust: the token response's ``api_domain`` (where the calls actually go), the
    accounts server the code was exchanged at (``accounts.zoho.eu``), then the ``location`` the
    OAuth redirect named. Only known codes are returned: a browser-supplied ``location`` is
    never stored as-is. ``None`` when nothing identifies one.
    """
    for url in (api_domain, accounts_server):
        dc = _dc_of_url(url)
        if dc is not None:
            return dc
    code = (location or "").strip().lower()
    return code if code in DATA_CENTRES else None
