"""Access tokens that stay valid: proactive and on-demand refresh, one refresh per credential.

Vendor-agnostic: a vendor's ``auth.py`` supplies a :class:`Refresher` (the HTTP call of the
refresh grant, returning a :class:`TokenGrant`); this module decides *when* to refresh and makes
sure only one process does it at a time. The protocol itself (URLs, grant bodies, reading token
answers) is requests-oauthlib's and oauthlib's, in :mod:`connector.api.oauth_protocol`; the
library has no cross-process lock and no store, which is what this module is for.

Single flight across processes (style-anchors §2, done with a database lock because workers are
separate processes): lock the credential row (PostgreSQL ``SELECT … FOR UPDATE``; on SQLite every
transaction is ``BEGIN IMMEDIATE``, which takes the database's write lock), re-read it, re-check
the expiry, refresh only if still needed, and write access token, refresh token, base URLs and
expiries in the same commit. A process that waited on the lock finds the fresh token and uses it;
that is what keeps Concur's rotating refresh tokens from being lost and Zoho's token-creation
throttle from being hit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.api.redaction import register_secret
from connector.db import Database, utcnow
from connector.errors import ApiError, ReauthRequired
from connector.models import Credential, CredentialStatus
from connector.vault import Vault

log = logging.getLogger(__name__)

#: On-demand refresh happens when less than this is left: enough for one call to complete.
DEFAULT_SKEW_SECONDS = 60.0


@dataclass(frozen=True, repr=False)
class TokenGrant:
    """A vendor token response, normalised; base URLs are already allow-listed."""

    access_token: str
    expires_in: float
    refresh_token: str | None = None
    #: Zoho ``api_domain`` / Concur ``geolocation``.
    api_base_url: str | None = None
    #: Where the next refresh goes (Zoho accounts server, Concur geolocation).
    auth_base_url: str | None = None
    refresh_expires_at: dt.datetime | None = None
    region: str | None = None

    def __repr__(self) -> str:
        return f"TokenGrant(<tokens hidden>, expires_in={self.expires_in}, api={self.api_base_url})"


@dataclass(frozen=True, repr=False)
class CredentialView:
    """A decrypted snapshot of one credential row, handed to refreshers and clients."""

    id: int
    connection_id: int
    system: str
    status: str
    access_token: str | None
    refresh_token: str | None
    access_expires_at: dt.datetime | None
    refresh_expires_at: dt.datetime | None
    refresh_issued_at: dt.datetime | None
    last_refreshed_at: dt.datetime | None
    api_base_url: str | None
    auth_base_url: str | None
    region: str | None
    principal: str | None
    client_id: str | None
    client_secret: str | None

    def __repr__(self) -> str:
        return f"CredentialView(id={self.id}, system={self.system!r}, status={self.status!r})"

    def expires_within(self, seconds: float, now: dt.datetime) -> bool:
        """True when there is no access token or it expires within ``seconds`` of ``now``."""
        if not self.access_token or self.access_expires_at is None:
            return True
        return self.access_expires_at - now <= dt.timedelta(seconds=seconds)


class Refresher(Protocol):
    """The vendor half of a refresh: one refresh-grant call, no persistence, no locking."""

    system: str

    def refresh(self, credential: CredentialView) -> TokenGrant:
        """Return a new grant, or raise ``ReauthRequired`` when the credential is dead."""
        ...


#: Called inside the locking transaction when a credential turns out dead (marks and alerts).
DeadHook = Callable[[Session, Credential, str], None]
#: Called inside the locking transaction after a grant was applied (e.g. Concur's expiry warning).
AfterRefreshHook = Callable[[Session, Credential, CredentialView, TokenGrant], None]


# --------------------------------------------------------------------------- row helpers


def read_credential(row: Credential, vault: Vault) -> CredentialView:
    """Decrypt ``row`` and register every secret in it for redaction."""

    def dec(value: str | None) -> str | None:
        if not value:
            return None
        plain = vault.decrypt(value)
        register_secret(plain)
        return plain

    return CredentialView(
        id=row.id,
        connection_id=row.connection_id,
        system=row.system,
        status=row.status,
        access_token=dec(row.access_token_enc),
        refresh_token=dec(row.refresh_token_enc),
        access_expires_at=row.access_expires_at,
        refresh_expires_at=row.refresh_expires_at,
        refresh_issued_at=row.refresh_issued_at,
        last_refreshed_at=row.last_refreshed_at,
        api_base_url=row.api_base_url,
        auth_base_url=row.auth_base_url,
        region=row.region,
        principal=row.principal,
        client_id=row.client_id,
        client_secret=dec(row.client_secret_enc),
    )


def apply_grant(row: Credential, grant: TokenGrant, vault: Vault, now: dt.datetime) -> None:
    """Write everything a token response carries onto ``row`` (the caller commits once).

    The refresh token is replaced whenever the vendor sends one (Concur may rotate it); its
    issue time moves only when it actually changed, so "refresh-token age" stays meaningful.
    """
    register_secret(grant.access_token)
    register_secret(grant.refresh_token)
    row.access_token_enc = vault.encrypt(grant.access_token)
    row.access_expires_at = now + dt.timedelta(seconds=grant.expires_in)
    if grant.refresh_token:
        previous = vault.decrypt(row.refresh_token_enc) if row.refresh_token_enc else None
        if grant.refresh_token != previous:
            row.refresh_token_enc = vault.encrypt(grant.refresh_token)
            row.refresh_issued_at = now
    if grant.refresh_expires_at is not None:
        row.refresh_expires_at = grant.refresh_expires_at
    if grant.api_base_url:
        row.api_base_url = grant.api_base_url
    if grant.auth_base_url:
        row.auth_base_url = grant.auth_base_url
    if grant.region:
        row.region = grant.region
    row.last_refreshed_at = now
    row.status = CredentialStatus.CONNECTED.value


def lock_credential(session: Session, credential_id: int) -> Credential | None:
    """Load the credential row under a lock that serialises refreshes across processes.

    PostgreSQL: a row lock. SQLite: ``connector.db`` opens every transaction with
    ``BEGIN IMMEDIATE``, so the whole database is write-locked from the first statement.
    """
    stmt = (
        select(Credential)
        .where(Credential.id == credential_id)
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def reauth_error(
    view: CredentialView | Credential,
    reason: str | None = None,
    *,
    cause: ApiError | None = None,
) -> ReauthRequired:
    """The error a dead credential raises, telling the operator how to fix it.

    It names the refused call (``cause``: method, URL, status) or, when nothing was called now,
    the accounts server the refresh goes to: a wrong data centre shows in the host.
    """
    how = (
        f"`connector connect zoho {view.connection_id} …` or /oauth/zoho/start?connection="
        f"{view.connection_id}"
        if view.system == "zoho"
        else f"`connector connect concur {view.connection_id} …` with a new request token"
    )
    where = cause.call() if cause is not None else ""
    if not where and not reason and view.auth_base_url:
        # No call was made now (marked dead earlier): name where refreshes go.
        where = f"refreshed at {view.auth_base_url}"
    detail = "; ".join(part for part in (where, reason) if part)
    error = ReauthRequired(
        f"connection {view.connection_id}: the {view.system} credential needs re-authorization"
        + (f" ({detail})" if detail else "")
        + f"; re-authorize with {how}",
        system=view.system,
    )
    if cause is not None:
        error.method, error.path, error.url = cause.method, cause.path, cause.url
        error.status, error.code = cause.status, cause.code
    error.recorded = True  # every caller has found or marked the credential needs_reauth
    return error


# --------------------------------------------------------------------------- manager


@dataclass(frozen=True)
class RefreshResult:
    """What :meth:`TokenManager.refresh` did: the credential now, and whether we refreshed."""

    credential: CredentialView
    refreshed: bool


class TokenManager:
    """Hands out a valid access token for one credential, refreshing it when needed.

    Args:
        db: where the credential lives.
        vault: decrypts and encrypts the token columns.
        credential_id: the ``credentials`` row.
        refresher: the vendor's refresh call.
        skew: on-demand refresh when less than this many seconds are left.
        on_dead: marks the connection ``needs_reauth`` (one alert) in the locking transaction.
        after_refresh: vendor follow-up in the same transaction (Concur's 30-day warning).
        clock: the current time (tests freeze it).
    """

    def __init__(
        self,
        db: Database,
        vault: Vault,
        credential_id: int,
        refresher: Refresher,
        *,
        skew: float = DEFAULT_SKEW_SECONDS,
        on_dead: DeadHook | None = None,
        after_refresh: AfterRefreshHook | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.vault = vault
        self.credential_id = credential_id
        self.refresher = refresher
        self.skew = skew
        self.on_dead = on_dead
        self.after_refresh = after_refresh
        self.clock = clock

    def __repr__(self) -> str:
        return f"TokenManager(credential={self.credential_id}, system={self.refresher.system!r})"

    def current(self) -> CredentialView:
        """The credential as stored now (no lock)."""
        with self.db.session() as session:
            row = session.get(Credential, self.credential_id, populate_existing=True)
            if row is None:
                raise ReauthRequired(
                    f"credential {self.credential_id} no longer exists; re-authorize the connection",
                    system=self.refresher.system,
                )
            return read_credential(row, self.vault)

    def access_token(self) -> str:
        """Return a token valid for at least ``skew`` seconds, refreshing first if needed.

        Raises:
            ReauthRequired: the credential is dead (now or earlier); nothing is sent.
            RateLimitedError: the vendor's token-creation throttle (or ours) says wait.
        """
        view = self.current()
        if view.status == CredentialStatus.NEEDS_REAUTH:
            raise reauth_error(view)
        if view.access_token and not view.expires_within(self.skew, self.clock()):
            return view.access_token
        result = self.refresh(margin=self.skew)
        assert result.credential.access_token is not None
        return result.credential.access_token

    def refresh(
        self,
        *,
        margin: float | None = None,
        force: bool = False,
        stale_token: str | None = None,
    ) -> RefreshResult:
        """Refresh under the credential lock if, once locked, it is still needed.

        Args:
            margin: refresh when the token expires within this many seconds (default ``skew``).
            force: refresh even if the token looks valid (a 401 says it is not) ...
            stale_token: ... unless the stored token is no longer this one: another process
                refreshed while we waited, and its token is the one to retry with.
        """
        margin = self.skew if margin is None else margin
        dead: ReauthRequired | None = None
        with self.db.session() as session:
            row = lock_credential(session, self.credential_id)
            if row is None:
                raise ReauthRequired(
                    f"credential {self.credential_id} no longer exists; re-authorize the connection",
                    system=self.refresher.system,
                )
            view = read_credential(row, self.vault)
            if row.status == CredentialStatus.NEEDS_REAUTH:
                raise reauth_error(view)
            now = self.clock()
            if not force and not view.expires_within(margin, now):
                return RefreshResult(view, False)
            if (
                force
                and stale_token is not None
                and view.access_token != stale_token
                and not view.expires_within(self.skew, now)
            ):
                return RefreshResult(view, False)
            try:
                grant = self.refresher.refresh(view)
            except ReauthRequired as exc:
                # Record the death in this transaction, then raise once it is committed.
                log.error(
                    "%s credential %s (connection %s) was refused on refresh: %s",
                    view.system, view.id, view.connection_id, exc,
                )  # fmt: skip
                self._mark(session, row, str(exc))
                dead = exc
            else:
                apply_grant(row, grant, self.vault, now)
                if self.after_refresh is not None:
                    self.after_refresh(session, row, view, grant)
                log.info(
                    "refreshed %s credential %s (connection %s); access token valid until %s",
                    view.system, view.id, view.connection_id,
                    row.access_expires_at.isoformat() if row.access_expires_at else "?",
                )  # fmt: skip
                return RefreshResult(read_credential(row, self.vault), True)
        assert dead is not None
        raise reauth_error(
            view, dead.context.get("vendor_message") or str(dead), cause=dead
        ) from dead

    def mark_dead(self, reason: str, *, refused_token: str | None = None) -> None:
        """Record that the vendor refused a freshly refreshed token (a 401 after refresh).

        With ``refused_token``, only while the stored token is still that one: a credential
        refreshed or re-authorized since the refusal is not the one that was refused.
        """
        with self.db.session() as session:
            row = lock_credential(session, self.credential_id)
            if row is None or row.status == CredentialStatus.NEEDS_REAUTH:
                return
            if refused_token is not None:
                stored = self.vault.decrypt(row.access_token_enc) if row.access_token_enc else None
                if stored != refused_token:
                    log.info(
                        "%s credential %s changed since the refused call; not marked",
                        self.refresher.system, self.credential_id,
                    )  # fmt: skip
                    return
            self._mark(session, row, reason)

    def _mark(self, session: Session, row: Credential, reason: str) -> None:
        row.status = CredentialStatus.NEEDS_REAUTH.value
        if self.on_dead is not None:
            self.on_dead(session, row, reason)


class RefreshingAuth:
    """``AuthProvider`` for ``ApiClient``: a valid token per request, one forced refresh on 401.

    Args:
        manager: the credential's token manager.
        scheme: the ``Authorization`` scheme (``Bearer``; Zoho wants ``Zoho-oauthtoken``).
    """

    def __init__(self, manager: TokenManager, scheme: str = "Bearer") -> None:
        self.manager = manager
        self.scheme = scheme
        self._last_token: str | None = None

    def __repr__(self) -> str:
        return f"RefreshingAuth({self.manager!r})"

    def headers(self) -> dict[str, str]:
        token = self.manager.access_token()
        self._last_token = token
        return {"Authorization": f"{self.scheme} {token}"}

    def on_unauthorized(self) -> bool:
        result = self.manager.refresh(force=True, stale_token=self._last_token)
        self._last_token = result.credential.access_token
        return True

    def credential_dead(self, reason: str) -> None:
        """Called by the client when a 401 survived the forced refresh."""
        self.manager.mark_dead(reason, refused_token=self._last_token)


class StaticToken:
    """``AuthProvider`` for a token that cannot be refreshed here (an app token, a token being
    checked before it is stored): a 401 is final."""

    def __init__(self, token: str, scheme: str = "Bearer") -> None:
        register_secret(token)
        self._token = token
        self.scheme = scheme

    def __repr__(self) -> str:
        return f"StaticToken(<hidden>, scheme={self.scheme!r})"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"{self.scheme} {self._token}"}

    def on_unauthorized(self) -> bool:
        return False
