"""``POST /oauth2/v0/token`` and bearer-token checks, as the Concur Authentication API v0 does them.

Company bootstrap is the password grant with ``credtype=authtoken`` (company UUID + 24-hour
request token, reusable inside the window); refresh tokens live 6 months, each refresh renews the
6 months and may rotate the token (admin knob); the app token comes from ``client_credentials``.
A company lives in one data centre: bootstrap or refresh elsewhere answers code 16 with the right
``geolocation``, and an access token is unknown to every other data centre.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sandbox.concur import config, signing
from sandbox.concur.errors import ConcurError, oauth_error
from sandbox.concur.store import AccessToken, Company, ConcurStore, RefreshToken

GeoUrl = Callable[[str], str]


def _check_client(form: Mapping[str, str]) -> None:
    client_id = form.get("client_id")
    secret = form.get("client_secret")
    if not client_id:
        raise oauth_error(400, 62, "invalid_request", "client_id was not supplied")
    if not secret:
        raise oauth_error(400, 63, "invalid_request", "client_secret was not supplied")
    if client_id != config.CLIENT_ID:
        raise oauth_error(401, 61, "invalid_client", "client not found")
    if not secrets.compare_digest(secret, config.CLIENT_SECRET):
        raise oauth_error(401, 64, "invalid_client", "Incorrect credentials. Please Retry")


def _expires_in(store: ConcurStore, seconds: int) -> str | int:
    return str(seconds) if store.settings.expires_in_as_string else seconds


def _issue_access(
    store: ConcurStore, now: float, geo: str, geo_url: str, company_id: str | None, kind: str
) -> AccessToken:
    ttl = config.ACCESS_TOKEN_TTL if kind == "company" else config.APP_TOKEN_TTL
    claims: dict[str, Any] = {
        "iss": geo_url,
        "sub": company_id or config.APP_ID,
        "aud": "*",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now + ttl),
        "jti": str(uuid.uuid4()),
        "concur.type": kind,
        "concur.app": config.APP_ID,
        "concur.scopes": (
            config.COMPANY_SCOPES if kind == "company" else config.APP_SCOPES
        ).split(),
    }
    token = signing.encode_jwt(claims)
    rec = AccessToken(token, kind, company_id, geo, now + ttl, config.CLIENT_ID)
    store.access_tokens[token] = rec
    return rec


def _id_token(now: float, geo_url: str, company_id: str) -> str:
    return signing.encode_jwt(
        {
            "iss": geo_url,
            "sub": company_id,
            "aud": config.CLIENT_ID,
            "iat": int(now),
            "exp": int(now + config.ACCESS_TOKEN_TTL),
        }
    )


def _company_response(
    store: ConcurStore, now: float, geo: str, geo_url: str, company: Company, refresh: RefreshToken
) -> dict[str, Any]:
    access = _issue_access(store, now, geo, geo_url, company.id, "company")
    return {
        "expires_in": _expires_in(store, config.ACCESS_TOKEN_TTL),
        "scope": config.COMPANY_SCOPES,
        "token_type": "Bearer",
        "access_token": access.token,
        "refresh_token": refresh.token,
        "refresh_expires_in": int(refresh.expires_at),  # an epoch, not a duration (documented)
        "geolocation": geo_url,
        "id_token": _id_token(now, geo_url, company.id),
    }


def token_grant(
    store: ConcurStore,
    now: float,
    geo: str,
    form: Mapping[str, str],
    geo_url: GeoUrl,
    on_refresh: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Answer one token request; returns (body, company_id) or raises ``ConcurError``."""
    grant = form.get("grant_type")
    _check_client(form)
    if not grant:
        raise oauth_error(400, 65, "invalid_request", "grant_type was not supplied")

    if grant == "client_credentials":
        access = _issue_access(store, now, geo, geo_url(geo), None, "app")
        body = {
            "expires_in": _expires_in(store, config.APP_TOKEN_TTL),
            "scope": config.APP_SCOPES,
            "token_type": "Bearer",
            "access_token": access.token,
            "geolocation": geo_url(geo),
        }
        return body, None

    if grant == "password":
        username = form.get("username")
        password = form.get("password")
        if not username:
            raise oauth_error(400, 51, "invalid_request", "username was not supplied")
        if not password:
            raise oauth_error(400, 52, "invalid_request", "password was not supplied")
        credtype = form.get("credtype") or form.get("cred_type") or "password"
        if credtype not in ("password", "authtoken"):
            raise oauth_error(400, 120, "invalid_request", "credtype invalid")
        company = store.company(username)
        if credtype == "password" or company is None:
            # The sandbox has no user passwords; an unknown principal is "incorrect credentials".
            raise oauth_error(400, 5, "invalid_grant", "Incorrect credentials. Please Retry")
        if company.geo != geo:
            raise oauth_error(
                400, 16, "invalid_request", "user lives elsewhere", geolocation=geo_url(company.geo)
            )
        expires = company.request_tokens.get(password)
        if expires is None:
            for other in store.companies.values():
                if other is not company and password in other.request_tokens:
                    raise oauth_error(
                        400, 136, "invalid_request", "Authtoken was not issued for you"
                    )
            raise oauth_error(400, 5, "invalid_grant", "Incorrect credentials. Please Retry")
        if now >= expires:
            raise oauth_error(400, 5, "invalid_grant", "Incorrect credentials. Please Retry")
        company.connected = True
        refresh = RefreshToken(str(uuid.uuid4()), company.id, geo, now + config.REFRESH_TOKEN_TTL)
        store.refresh_tokens[refresh.token] = refresh
        return _company_response(store, now, geo, geo_url(geo), company, refresh), company.id

    if grant == "refresh_token":
        token = form.get("refresh_token")
        if not token:
            raise oauth_error(400, 106, "invalid_request", "refresh_token was not supplied")
        rec = store.refresh_tokens.get(token)
        company = store.company(rec.company_id) if rec else None
        if rec is None or rec.revoked or now >= rec.expires_at or company is None:
            raise oauth_error(400, 108, "invalid_grant", "bad or expired refresh token")
        if rec.geo != geo:
            raise oauth_error(
                400, 16, "invalid_request", "user lives elsewhere", geolocation=geo_url(rec.geo)
            )
        if store.settings.rotate_refresh_tokens:
            rec.revoked = True
            del store.refresh_tokens[token]
            rec = RefreshToken(str(uuid.uuid4()), company.id, geo, 0.0)
            store.refresh_tokens[rec.token] = rec
        rec.expires_at = now + config.REFRESH_TOKEN_TTL  # refreshing renews the 6 months
        if on_refresh is not None:
            on_refresh(company.id)
        return _company_response(store, now, geo, geo_url(geo), company, rec), company.id

    raise oauth_error(400, 60, "invalid_grant", "these are not the grants you are looking for")


def authenticate(
    store: ConcurStore, now: float, geo: str, authorization: str | None, kind: str
) -> AccessToken:
    """Resolve the bearer token of an API call or raise the error Concur would answer."""
    if not authorization:
        raise ConcurError(401, "Authorization header missing")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ConcurError(401, "Invalid authorization header")
    rec = store.access_tokens.get(token)
    if rec is None or rec.geo != geo:
        # A token minted in another data centre is simply unknown here.
        raise ConcurError(401, "Invalid token")
    if now >= rec.expires_at:
        mode = store.settings.expired_token_status
        if mode == "alternate":
            store.expired_answers += 1
            status = 401 if store.expired_answers % 2 else 403
        else:
            status = 403 if mode == "403" else 401
        raise ConcurError(status, "Forbidden Request" if status == 403 else "Token expired")
    if rec.kind != kind:
        raise ConcurError(403, "Forbidden Request")
    return rec
