"""Connections: create, list, show, delete; ``needs_reauth`` and its resume; ready-made clients.

A connection pairs one Zoho Books organization with one Concur company. Each side has one
``credentials`` row (encrypted tokens). This module is the one place that turns a connection id
into a working ``ZohoBooksClient`` or ``ConcurClient`` (token manager, shared rate limiter,
stored base URL), so the flows, ``connector ping`` and the CLI build clients the same way.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import requests
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector import ledger
from connector.api.base import CallRecord
from connector.api.oauth import RefreshingAuth, TokenManager
from connector.api.redaction import register_secret
from connector.api.throttle import LimiterThrottle, ZohoThrottle
from connector.concur import auth as concur_auth
from connector.concur.client import ConcurClient
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import ConnectorError, ReauthRequired, UnknownConnection
from connector.limits.concurrency import Semaphore, make_semaphore, zoho_slots_key
from connector.limits.quota import QuotaStore, make_quota_store
from connector.limits.ratelimit import (
    Limiter,
    RateLimitPolicy,
    make_limiter,
    parse_concur_limits,
    parse_limit,
)
from connector.models import (
    Connection,
    ConnectionStatus,
    Credential,
    CredentialStatus,
    RecordState,
    SyncRecord,
)
from connector.vault import Vault
from connector.zoho import auth as zoho_auth
from connector.zoho.client import ZohoBooksClient

log = logging.getLogger(__name__)

ZOHO = "zoho"
CONCUR = "concur"
SYSTEMS = (ZOHO, CONCUR)

Observer = Callable[[CallRecord], None]


# --------------------------------------------------------------------------- CRUD


def create(db: Database, name: str) -> int:
    """Create an empty connection; returns its id."""
    name = name.strip()
    if not name:
        raise ConnectorError("a connection needs a name")
    try:
        with db.session() as session:
            connection = Connection(name=name)
            session.add(connection)
            session.flush()
            return connection.id
    except IntegrityError:
        raise ConnectorError(f"a connection named {name!r} already exists") from None


def get(session: Session, connection_id: int) -> Connection:
    connection = session.get(Connection, connection_id)
    if connection is None:
        raise UnknownConnection(f"no connection with id {connection_id}")
    return connection


def credential(session: Session, connection_id: int, system: str) -> Credential | None:
    return session.execute(
        select(Credential).where(
            Credential.connection_id == connection_id, Credential.system == system
        )
    ).scalar_one_or_none()


def _ago(value: dt.datetime | None, now: dt.datetime) -> str | None:
    if value is None:
        return None
    seconds = int((now - value).total_seconds())
    return _duration(seconds)


def _duration(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds >= 2 * 86400:
        return f"{sign}{seconds // 86400}d"
    if seconds >= 2 * 3600:
        return f"{sign}{seconds // 3600}h"
    if seconds >= 120:
        return f"{sign}{seconds // 60}m"
    return f"{sign}{seconds}s"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def side_status(connection: Connection, cred: Credential | None, system: str) -> str:
    """``connected``, ``needs_reauth``, ``choose_organization`` or ``not_connected``."""
    if cred is None or not cred.refresh_token_enc:
        return "not_connected"
    if cred.status == CredentialStatus.NEEDS_REAUTH:
        return "needs_reauth"
    if system == ZOHO and not connection.zoho_organization_id:
        return "choose_organization"
    return "connected"


def describe(
    session: Session, connection: Connection, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Everything ``connections show`` prints, as plain data (no secrets)."""
    now = now or utcnow()
    sides: dict[str, Any] = {}
    for system in SYSTEMS:
        cred = credential(session, connection.id, system)
        side: dict[str, Any] = {"status": side_status(connection, cred, system)}
        if system == ZOHO:
            side["organization_id"] = connection.zoho_organization_id
        else:
            side["company_id"] = connection.concur_company_id
        if cred is not None:
            side.update(
                region=region_of(cred),
                principal=cred.principal,
                api_base_url=cred.api_base_url,
                auth_base_url=cred.auth_base_url,
                access_expires_at=_iso(cred.access_expires_at),
                access_expires_in=(
                    _duration(int((cred.access_expires_at - now).total_seconds()))
                    if cred.access_expires_at
                    else None
                ),
                refresh_token_age=_ago(cred.refresh_issued_at, now),
                refresh_expires_at=_iso(cred.refresh_expires_at),
                last_refreshed_at=_iso(cred.last_refreshed_at),
                self_client=bool(cred.client_id),
            )
        sides[system] = side
    return {
        "id": connection.id,
        "name": connection.name,
        "status": connection.status,
        "status_reason": connection.status_reason,
        "created_at": _iso(connection.created_at),
        "zoho": sides[ZOHO],
        "concur": sides[CONCUR],
    }


def region_of(cred: Credential | Any) -> str | None:
    """The data centre of a stored credential, inferred from its hosts when the row has none.

    Rows stored before every token answer recorded the region (or by a path that did not) have
    ``region`` empty; their API and accounts hosts still say where they are. Accepts a
    ``Credential`` row or a ``CredentialView``.
    """
    if cred is None:
        return None
    if cred.region:
        return str(cred.region)
    if cred.system == ZOHO:
        return zoho_auth.data_centre(
            api_domain=cred.api_base_url, accounts_server=cred.auth_base_url
        )
    if cred.api_base_url:
        return concur_auth.region_of(cred.api_base_url)
    return None


def list_all(db: Database) -> list[dict[str, Any]]:
    with db.session() as session:
        connections = session.execute(select(Connection).order_by(Connection.id)).scalars().all()
        return [describe(session, c) for c in connections]


def show(db: Database, connection_id: int) -> dict[str, Any]:
    with db.session() as session:
        return describe(session, get(session, connection_id))


def delete(db: Database, settings: Settings, connection_id: int) -> list[str]:
    """Revoke what can be revoked, then remove the connection and every secret it held.

    Zoho refresh tokens are revoked at their accounts server (which also kills their access
    tokens and frees one of the user's 20 slots). Concur offers no revocation for a company
    token that we can call (``app-mgmt/v0/connections`` revokes a *user's* tokens); its tokens
    are discarded and lapse, and the company admin can remove the app in Concur's App Center.

    Returns notes for the operator, one per action.
    """
    vault = Vault(settings.secret_keys)
    with db.session() as session:
        connection = get(session, connection_id)
        zoho = credential(session, connection_id, ZOHO)
        zoho_token = (
            vault.decrypt(zoho.refresh_token_enc) if zoho and zoho.refresh_token_enc else None
        )
        zoho_accounts = zoho.auth_base_url if zoho else None
        name = connection.name
    notes: list[str] = []
    if zoho_token and zoho_accounts:
        register_secret(zoho_token)
        try:
            zoho_auth.revoke(settings, zoho_accounts, zoho_token)
            notes.append("revoked the Zoho refresh token")
        except ConnectorError as exc:
            notes.append(f"could not revoke the Zoho refresh token ({exc}); it is discarded")
    with db.session() as session:
        connection = get(session, connection_id)
        if connection.concur_company_id:
            notes.append(
                "discarded the Concur company tokens (remove the app in Concur's App Center to "
                "revoke them there)"
            )
        session.delete(connection)
    notes.append(f"deleted connection {connection_id} ({name}) and its stored secrets")
    log.info("connection %s (%s) deleted", connection_id, name)
    return notes


# --------------------------------------------------------------------------- needs_reauth


def mark_needs_reauth_in(
    session: Session, connection_id: int, reason: str, *, system: str | None = None
) -> bool:
    """Put the connection (and the named side) in ``needs_reauth``; alert once.

    The alert is one ``audit_events`` row (step ``connection``, outcome ``needs_reauth``) and one
    ERROR log line, written only when the connection was not already ``needs_reauth``. Records
    are not touched here: each one parks itself in ``needs_reauth`` when it next needs the dead
    credential (``connector.pipeline``), so nothing is lost or marked dead.

    Returns True when this call raised the alert.
    """
    if system is not None:
        cred = credential(session, connection_id, system)
        if cred is not None:
            cred.status = CredentialStatus.NEEDS_REAUTH.value
    connection = session.get(Connection, connection_id)
    if connection is None or connection.status == ConnectionStatus.NEEDS_REAUTH:
        return False
    connection.status = ConnectionStatus.NEEDS_REAUTH.value
    connection.status_reason = reason[:2000]
    ledger.audit(
        session,
        None,
        connection_id=connection_id,
        step="connection",
        outcome="needs_reauth",
        message=reason[:2000],
        details={"system": system} if system else None,
    )
    log.error("connection %s needs re-authorization: %s", connection_id, reason)
    return True


def reauthorized_meanwhile(session: Session, connection_id: int, system: str | None) -> bool:
    """True when ``system``'s credential is connected, read under a row lock (PostgreSQL).

    Asked about a refusal the token manager had already recorded (``ReauthRequired.recorded``:
    the credential was ``needs_reauth`` when the step read it, or its refresh was refused and
    marked so). Only a re-authorization turns such a credential back to connected, so the
    refusal concerned the credential that authorization replaced: parking the record, or
    marking the side ``needs_reauth`` again, would undo it. The lock orders the caller with the
    authorization's commit: either it is seen here, or it comes after and resumes whatever the
    caller parks.
    """
    if system not in SYSTEMS:
        return False
    stmt = (
        select(Credential)
        .where(Credential.connection_id == connection_id, Credential.system == system)
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = session.execute(stmt).scalar_one_or_none()
    return row is not None and row.status == CredentialStatus.CONNECTED


def mark_needs_reauth(
    db: Database, connection_id: int, reason: str, *, system: str | None = None
) -> bool:
    with db.session() as session:
        return mark_needs_reauth_in(session, connection_id, reason, system=system)


def reauthorized(db: Database, connection_id: int) -> list[tuple[int, str]]:
    """Mark the connection active again and resume its ``needs_reauth`` records.

    Does nothing while a side still needs re-authorization. Returns ``(record_id, step)`` for
    the caller to enqueue (``tasks.pipeline.enqueue``); the sweeper re-drives any it does not.
    """
    resumed: list[tuple[int, str]] = []
    with db.session() as session:
        connection = get(session, connection_id)
        creds = [credential(session, connection_id, s) for s in SYSTEMS]
        if any(c is not None and c.status == CredentialStatus.NEEDS_REAUTH for c in creds):
            return []
        was = connection.status
        if was == ConnectionStatus.NEEDS_REAUTH:
            connection.status = ConnectionStatus.ACTIVE.value
            connection.status_reason = None
        parked = (
            session.execute(
                select(SyncRecord)
                .where(
                    SyncRecord.connection_id == connection_id,
                    SyncRecord.state == RecordState.NEEDS_REAUTH.value,
                )
                .order_by(SyncRecord.id)
            )
            .scalars()
            .all()
        )
        for record in parked:
            ledger.resume(session, record, reason="connection re-authorized")
            resumed.append((record.id, record.step))
        if was == ConnectionStatus.NEEDS_REAUTH or resumed:
            ledger.audit(
                session,
                None,
                connection_id=connection_id,
                step="connection",
                outcome="reauthorized",
                message=f"re-authorized; {len(resumed)} parked record(s) resumed",
            )
            log.info(
                "connection %s re-authorized; %d parked record(s) resumed",
                connection_id,
                len(resumed),
            )
    return resumed


# --------------------------------------------------------------------------- webhook secret


def webhook_secret(
    db: Database, settings: Settings, connection_id: int, *, rotate: bool = False
) -> str:
    """The connection's Zoho webhook signing secret, created on first use or when rotating
    (``connector.webhook_secrets`` holds the rules and the separate delivery token)."""
    from connector.webhook_secrets import webhook_credentials

    return webhook_credentials(db, settings, connection_id, rotate=rotate).secret


def public_base_url(settings: Settings) -> str:
    """Where Zoho, Concur and browsers reach this connector's web process."""
    return settings.public_url or f"http://127.0.0.1:{settings.port}"


# --------------------------------------------------------------------------- clients


@lru_cache(maxsize=8)
def _limiter(redis_url: str | None, sqlite_path: str) -> Limiter:
    return make_limiter(redis_url, sqlite_path)


def limiter(settings: Settings) -> Limiter:
    """The process's shared limiter (Redis, or SQLite in embedded mode)."""
    if not settings.redis_url:
        settings.limiter_sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    return _limiter(settings.redis_url, str(settings.limiter_sqlite_path))


@lru_cache(maxsize=8)
def _semaphore(redis_url: str | None, sqlite_path: str) -> Semaphore:
    return make_semaphore(redis_url, sqlite_path)


def semaphore(settings: Settings) -> Semaphore:
    """The process's shared in-flight cap (Redis, or SQLite beside the limiter)."""
    limiter(settings)  # creates var/ in embedded mode
    return _semaphore(settings.redis_url, str(settings.limiter_sqlite_path))


@lru_cache(maxsize=8)
def _quota_store(redis_url: str | None, sqlite_path: str) -> QuotaStore:
    return make_quota_store(redis_url, sqlite_path)


def quota_store(settings: Settings) -> QuotaStore:
    """Each Zoho organization's daily quota as its last response said (``connector.limits.quota``)."""
    limiter(settings)
    return _quota_store(settings.redis_url, str(settings.limiter_sqlite_path))


def rate_policy(settings: Settings) -> RateLimitPolicy:
    return RateLimitPolicy(
        zoho=parse_limit(settings.zoho_rate_limit),
        concur_default=parse_limit(settings.concur_rate_limit),
        concur_by_prefix=parse_concur_limits(settings.concur_rate_limits),
        margin=getattr(settings, "rate_limit_margin", 0.0),
    )


def _on_dead(system: str) -> Callable[[Session, Credential, str], None]:
    def hook(session: Session, row: Credential, reason: str) -> None:
        mark_needs_reauth_in(session, row.connection_id, reason, system=system)

    return hook


def token_manager(
    db: Database,
    settings: Settings,
    connection_id: int,
    system: str,
    *,
    session: requests.Session | None = None,
) -> TokenManager:
    """The token manager of one side of a connection.

    Raises:
        ReauthRequired: the side was never authorized.
    """
    with db.session() as s:
        get(s, connection_id)
        cred = credential(s, connection_id, system)
        if cred is None or not cred.refresh_token_enc:
            raise ReauthRequired(
                f"connection {connection_id}: {system} is not connected yet "
                f"(run `connector connect {system} {connection_id} …`)",
                system=system,
            )
        credential_id = cred.id
    vault = Vault(settings.secret_keys)
    if system == ZOHO:
        return TokenManager(
            db,
            vault,
            credential_id,
            zoho_auth.ZohoRefresher(settings, limiter(settings), session=session),
            on_dead=_on_dead(ZOHO),
        )
    return TokenManager(
        db,
        vault,
        credential_id,
        concur_auth.ConcurRefresher(settings, session=session),
        on_dead=_on_dead(CONCUR),
        after_refresh=concur_auth.after_refresh,
    )


def zoho_client(
    db: Database,
    settings: Settings,
    connection_id: int,
    *,
    on_response: Observer | None = None,
    session: requests.Session | None = None,
    require_organization: bool = True,
) -> ZohoBooksClient:
    """A ``ZohoBooksClient`` for the connection's organization, throttled per organization."""
    manager = token_manager(db, settings, connection_id, ZOHO, session=session)
    view = manager.current()
    with db.session() as s:
        organization_id = get(s, connection_id).zoho_organization_id
    if require_organization and not organization_id:
        raise ConnectorError(
            f"connection {connection_id}: no Zoho organization chosen yet; finish the "
            "authorization (the web flow asks which one) or pass --organization-id"
        )
    policy = rate_policy(settings)
    throttle = (
        ZohoThrottle(
            limiter(settings),
            lambda _m, _p: policy.for_zoho(organization_id),
            organization_id=organization_id,
            semaphore=semaphore(settings),
            slots_key=zoho_slots_key(organization_id),
            max_in_flight=settings.zoho_max_in_flight,
            quota=quota_store(settings),
            reserve=settings.zoho_daily_reserve,
        )
        if organization_id
        else None
    )
    if not view.api_base_url:
        raise ReauthRequired(f"connection {connection_id}: the Zoho credential has no api_domain")
    return ZohoBooksClient(
        view.api_base_url,
        organization_id,
        auth=RefreshingAuth(manager, scheme="Zoho-oauthtoken"),
        throttle=throttle,
        on_response=on_response,
        session=session,
    )


def concur_client(
    db: Database,
    settings: Settings,
    connection_id: int,
    *,
    on_response: Observer | None = None,
    session: requests.Session | None = None,
) -> ConcurClient:
    """A ``ConcurClient`` at the company's stored geolocation, throttled per company + path."""
    manager = token_manager(db, settings, connection_id, CONCUR, session=session)
    view = manager.current()
    with db.session() as s:
        company_id = get(s, connection_id).concur_company_id or view.principal or ""
    if not view.api_base_url:
        raise ReauthRequired(
            f"connection {connection_id}: the Concur credential has no geolocation"
        )
    policy = rate_policy(settings)
    throttle = LimiterThrottle(
        limiter(settings), lambda _method, path: policy.for_concur(company_id, path)
    )
    return ConcurClient(
        view.api_base_url,
        company_id,
        auth=RefreshingAuth(manager, scheme="Bearer"),
        throttle=throttle,
        on_response=on_response,
        session=session,
    )


@dataclass(frozen=True)
class ConnectionRef:
    """A connection resolved from what a person typed: an id or a name."""

    id: int
    name: str


def resolve(db: Database, ident: str | int) -> ConnectionRef:
    """Find a connection by id or exact name."""
    with db.session() as session:
        text = str(ident).strip()
        connection = session.get(Connection, int(text)) if text.isdigit() else None
        if connection is None:
            connection = session.execute(
                select(Connection).where(Connection.name == text)
            ).scalar_one_or_none()
        if connection is None:
            raise UnknownConnection(f"no connection with id or name {text!r}")
        return ConnectionRef(connection.id, connection.name)
