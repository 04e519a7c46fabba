"""Authorizing each side of a connection: Zoho (web flow, self client) and the Concur bootstrap.

Each path ends the same way: the grant is stored encrypted in one commit (access and refresh
token, API host, accounts host, region), an ``authorized`` audit row is written, and
``connections.reauthorized`` resumes whatever was parked while the connection was dead. A Zoho
refresh token that a new authorization replaces is revoked, so re-authorizing never leaves an
orphan occupying one of the user's 20 refresh-token slots.

**Takeover guard (issue #12).** A re-authorization that would move a connection to another
Zoho organization (a different user who cannot see the current one, or another account) or to
another Concur company is not applied: the web flow parks the new grant, encrypted, in a
single-use confirmation state and an operator must confirm that exact change (old -> new);
the CLI needs ``--replace-organization OLD`` / ``--replace-company OLD``. Nothing is stored and
the old token is not revoked before that check passes; the old token is revoked only after the
new one is committed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from connector import connections, ledger
from connector.api.oauth import StaticToken, TokenGrant, apply_grant
from connector.api.redaction import register_secret
from connector.concur import auth as concur_auth
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import ConnectorError, ReauthRequired
from connector.models import Connection, Credential
from connector.vault import Vault
from connector.zoho import auth as zoho_auth
from connector.zoho.client import ZohoBooksClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Organization:
    organization_id: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"organization_id": self.organization_id, "name": self.name}


@dataclass(frozen=True)
class Authorization:
    """The outcome of authorizing one side.

    ``organization_id`` is ``None`` when the Zoho user sees several organizations and none is
    chosen yet: the caller must ask (the web flow shows a choice page).
    """

    connection_id: int
    system: str
    organization_id: str | None = None
    organizations: list[Organization] = field(default_factory=list)
    resumed: list[tuple[int, str]] = field(default_factory=list)
    #: Set when the new login would move the connection to another organization: nothing was
    #: stored, and an operator must confirm (``confirm_zoho_change``) or discard it.
    pending: PendingChange | None = None


@dataclass(frozen=True)
class PendingChange:
    """A re-authorization to another Zoho organization, waiting for an operator's confirmation.

    ``sealed_grant`` is the new grant encrypted under the vault key (``seal_grant``): it can sit
    in a state row without exposing a token, and is stored as the connection's credential only
    after the confirmation.
    """

    connection_id: int
    old_organization_id: str
    old_name: str
    organizations: list[Organization]
    sealed_grant: str

    def as_data(self) -> dict[str, Any]:
        return {
            "old_organization_id": self.old_organization_id,
            "old_name": self.old_name,
            "organizations": organizations_as_data(self.organizations),
            "grant": self.sealed_grant,
        }


def seal_grant(settings: Settings, grant: TokenGrant) -> str:
    """The grant as vault ciphertext (for a pending confirmation)."""
    values = asdict(grant)
    if grant.refresh_expires_at is not None:
        values["refresh_expires_at"] = grant.refresh_expires_at.isoformat()
    return Vault(settings.secret_keys).encrypt(json.dumps(values))


def unseal_grant(settings: Settings, sealed: str) -> TokenGrant:
    import datetime as dt

    values = json.loads(Vault(settings.secret_keys).decrypt(sealed))
    if values.get("refresh_expires_at"):
        values["refresh_expires_at"] = dt.datetime.fromisoformat(values["refresh_expires_at"])
    grant = TokenGrant(**values)
    register_secret(grant.access_token)
    register_secret(grant.refresh_token)
    return grant


# --------------------------------------------------------------------------- storing


def store_grant(
    db: Database,
    settings: Settings,
    connection_id: int,
    system: str,
    grant: TokenGrant,
    *,
    principal: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> None:
    """Store a fresh authorization for one side (replacing any previous one) in one commit.

    ``client_id``/``client_secret`` are kept only for a Zoho self client; an authorization made
    with the configured client clears them.
    """
    vault = Vault(settings.secret_keys)
    now = utcnow()
    replaced: tuple[str, str] | None = None
    with db.session() as session:
        connections.get(session, connection_id)
        row = connections.credential(session, connection_id, system)
        if row is None:
            row = Credential(connection_id=connection_id, system=system)
            session.add(row)
        elif row.refresh_token_enc and row.auth_base_url:
            old = vault.decrypt(row.refresh_token_enc)
            register_secret(old)
            if old != grant.refresh_token:
                replaced = (row.auth_base_url, old)
        # A new authorization starts a new refresh token: no stale expiry or issue time.
        row.refresh_token_enc = None
        row.refresh_expires_at = None
        apply_grant(row, grant, vault, now)
        row.client_id = client_id
        row.client_secret_enc = vault.encrypt(client_secret) if client_secret else None
        if principal is not None:
            row.principal = principal
    if system == connections.ZOHO and replaced is not None:
        _revoke_quietly(settings, *replaced)


def _revoke_quietly(settings: Settings, accounts_server: str, refresh_token: str) -> None:
    try:
        zoho_auth.revoke(settings, accounts_server, refresh_token)
        log.info("revoked the Zoho refresh token this authorization replaced")
    except ConnectorError as exc:
        # Already revoked (that is often why we are re-authorizing) or unreachable: harmless.
        log.info("could not revoke the replaced Zoho refresh token: %s", exc)


def _audit_authorized(db: Database, connection_id: int, message: str) -> None:
    with db.session() as session:
        ledger.audit(
            session,
            None,
            connection_id=connection_id,
            step="connection",
            outcome="authorized",
            message=message,
        )
    log.info("connection %s: %s", connection_id, message)


# --------------------------------------------------------------------------- Zoho


def zoho_organizations(settings: Settings, grant: TokenGrant) -> list[Organization]:
    """The Books organizations the freshly authorized user can see."""
    assert grant.api_base_url is not None
    client = ZohoBooksClient(
        grant.api_base_url, None, auth=StaticToken(grant.access_token, "Zoho-oauthtoken")
    )
    try:
        return [
            Organization(str(o["organization_id"]), str(o.get("name") or o["organization_id"]))
            for o in client.organizations.list()
        ]
    finally:
        client.close()


def complete_zoho_web(
    db: Database,
    settings: Settings,
    connection_id: int,
    *,
    code: str,
    accounts_server: str,
    location: str | None,
    redirect_uri: str,
) -> Authorization:
    """The callback half of the web flow: exchange at the user's accounts server, store, list.

    The organization is settled here only when there is no doubt: the user sees exactly one, or
    the connection already uses one the user still sees (a re-authorization). Otherwise the
    caller asks; the first organization is never picked silently.
    """
    client_id, client_secret = zoho_auth.client_credentials(settings)
    grant = zoho_auth.exchange_code(
        settings,
        accounts_server=accounts_server,
        code=code,
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=redirect_uri,
        location=location or zoho_auth.location_of(accounts_server),
    )
    assert grant.refresh_token is not None and grant.auth_base_url is not None
    try:
        organizations = zoho_organizations(settings, grant)
        if not organizations:
            raise ConnectorError("this Zoho user has no Zoho Books organization")
    except ConnectorError:
        _revoke_quietly(settings, grant.auth_base_url, grant.refresh_token)
        raise
    ids = [o.organization_id for o in organizations]
    with db.session() as session:
        connection = connections.get(session, connection_id)
        current = connection.zoho_organization_id
        row = connections.credential(session, connection_id, connections.ZOHO)
        current_name = (row.principal if row is not None else None) or ""
    if current and current not in ids:
        # The new login cannot see the organization the connection posts to: another user or
        # another account. Store nothing, revoke nothing; an operator must confirm.
        log.warning(
            "connection %s: re-authorization would move it from Zoho organization %s to %s; "
            "held for an operator's confirmation",
            connection_id,
            current,
            ", ".join(ids),
        )
        pending = PendingChange(
            connection_id, current, current_name, organizations, seal_grant(settings, grant)
        )
        return Authorization(connection_id, connections.ZOHO, None, organizations, pending=pending)
    store_grant(db, settings, connection_id, connections.ZOHO, grant)
    chosen = current if current in ids else ids[0] if len(ids) == 1 else None
    if chosen is None:
        return Authorization(connection_id, connections.ZOHO, None, organizations)
    resumed = choose_zoho_organization(db, connection_id, chosen, organizations)
    return Authorization(connection_id, connections.ZOHO, chosen, organizations, resumed)


def confirm_zoho_change(
    db: Database,
    settings: Settings,
    pending: PendingChange,
    organization_id: str,
    *,
    confirmed_by: str,
) -> list[tuple[int, str]]:
    """Apply a confirmed change of organization: store the new grant, then revoke the old one.

    Refused if the connection no longer uses the organization the operator saw as "old" (it
    changed meanwhile), or if ``organization_id`` is not one the new login can see.
    """
    org = _check_visible(organization_id, pending.organizations)
    with db.session() as session:
        current = connections.get(session, pending.connection_id).zoho_organization_id
    if current != pending.old_organization_id:
        raise ConnectorError(
            f"connection {pending.connection_id} changed meanwhile (now organization "
            f"{current or 'none'}, confirmed from {pending.old_organization_id}); start again"
        )
    grant = unseal_grant(settings, pending.sealed_grant)
    store_grant(db, settings, pending.connection_id, connections.ZOHO, grant)
    _audit_authorized(
        db,
        pending.connection_id,
        f"Zoho Books moved from organization {pending.old_organization_id} "
        f"({pending.old_name or '?'}) to {org.organization_id} ({org.name}), "
        f"confirmed by {confirmed_by}",
    )
    return choose_zoho_organization(
        db, pending.connection_id, organization_id, pending.organizations
    )


def discard_zoho_change(settings: Settings, pending: PendingChange) -> None:
    """Drop a refused change: revoke the new refresh token so it does not take a slot."""
    grant = unseal_grant(settings, pending.sealed_grant)
    if grant.refresh_token and grant.auth_base_url:
        _revoke_quietly(settings, grant.auth_base_url, grant.refresh_token)


def revoke_abandoned_changes(db: Database, settings: Settings) -> int:
    """Revoke the new logins of change confirmations nobody answered before they expired.

    A held change keeps a live refresh token at Zoho (sealed in its state) that would otherwise
    occupy one of that user's 20 slots. Each expired, unused confirmation is claimed with one
    conditional UPDATE (so two beat runs never both revoke) and its token revoked. Returns how
    many were revoked. Run by beat with the OAuth state purge.
    """
    from sqlalchemy import update

    from connector import oauth_state
    from connector.models import OAuthState

    now = utcnow()
    with db.session() as session:
        rows = session.execute(
            select(OAuthState.id, OAuthState.connection_id, OAuthState.data).where(
                OAuthState.purpose == oauth_state.CONFIRM_CHANGE,
                OAuthState.used_at.is_(None),
                OAuthState.expires_at <= now,
            )
        ).all()
    revoked = 0
    for state_id, connection_id, data in rows:
        with db.session() as session:
            claimed = session.execute(
                update(OAuthState)
                .where(OAuthState.id == state_id, OAuthState.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue
        try:
            discard_zoho_change(settings, pending_from_data(connection_id, dict(data or {})))
        except (ConnectorError, KeyError, ValueError) as exc:
            log.warning("could not revoke an abandoned Zoho re-authorization: %s", exc)
            continue
        log.info("connection %s: revoked an unconfirmed Zoho re-authorization", connection_id)
        revoked += 1
    return revoked


def pending_from_data(connection_id: int, data: dict[str, Any]) -> PendingChange:
    """Rebuild a ``PendingChange`` from a confirmation state's data."""
    return PendingChange(
        connection_id,
        str(data["old_organization_id"]),
        str(data.get("old_name") or ""),
        [Organization(str(o["organization_id"]), str(o["name"])) for o in data["organizations"]],
        str(data["grant"]),
    )


def _check_visible(organization_id: str, organizations: list[Organization]) -> Organization:
    for org in organizations:
        if org.organization_id == organization_id:
            return org
    visible = ", ".join(f"{o.organization_id} ({o.name})" for o in organizations) or "none"
    raise ConnectorError(
        f"Zoho organization {organization_id} is not visible to this user; visible: {visible}"
    )


def choose_zoho_organization(
    db: Database,
    connection_id: int,
    organization_id: str,
    organizations: list[Organization],
) -> list[tuple[int, str]]:
    """Settle the connection's organization (one the user can see); resume parked records."""
    org = _check_visible(organization_id, organizations)
    with db.session() as session:
        connection = connections.get(session, connection_id)
        connection.zoho_organization_id = organization_id
        row = connections.credential(session, connection_id, connections.ZOHO)
        if row is not None:
            row.principal = org.name[:128]
            region = connections.region_of(row)
        else:
            region = None
    _audit_authorized(
        db,
        connection_id,
        f"Zoho Books authorized for organization {organization_id} ({org.name}), "
        f"data centre {region or '?'}",
    )
    return connections.reauthorized(db, connection_id)


def connect_zoho_self_client(
    db: Database,
    settings: Settings,
    connection_id: int,
    *,
    code: str,
    organization_id: str,
    accounts_server: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    replace_organization: str | None = None,
) -> Authorization:
    """Authorize Zoho with a self-client grant code (servers without a browser).

    The organization must be given and visible to the user; if it is not, the refresh token
    just created is revoked again so it does not take one of the user's 20 slots. Moving a
    connection to another organization needs ``replace_organization`` naming the current one.
    """
    with db.session() as session:
        current = connections.get(session, connection_id).zoho_organization_id
    _check_change("Zoho organization", connection_id, current, organization_id,
                  replace_organization, "--replace-organization")  # fmt: skip
    cid, secret = zoho_auth.client_credentials(settings, client_id, client_secret)
    accounts = accounts_server or settings.zoho_accounts_url
    grant = zoho_auth.exchange_code(
        settings,
        accounts_server=accounts,
        code=code,
        client_id=cid,
        client_secret=secret,
        location=zoho_auth.location_of(accounts),
    )
    assert grant.refresh_token is not None and grant.auth_base_url is not None
    try:
        organizations = zoho_organizations(settings, grant)
        _check_visible(organization_id, organizations)
    except ConnectorError:
        _revoke_quietly(settings, grant.auth_base_url, grant.refresh_token)
        raise
    store_grant(
        db,
        settings,
        connection_id,
        connections.ZOHO,
        grant,
        client_id=client_id,
        client_secret=client_secret if client_id else None,
    )
    resumed = choose_zoho_organization(db, connection_id, organization_id, organizations)
    return Authorization(connection_id, connections.ZOHO, organization_id, organizations, resumed)


# --------------------------------------------------------------------------- Concur


def connect_concur(
    db: Database,
    settings: Settings,
    connection_id: int,
    *,
    company_id: str,
    request_token: str,
    auth_url: str | None = None,
    replace_company: str | None = None,
) -> Authorization:
    """The Concur company bootstrap: request token -> tokens stored at the company's geolocation.

    Moving a connection to another company needs ``replace_company`` naming the current one.
    """
    register_secret(request_token)
    company_id = company_id.strip()
    with db.session() as session:
        current = connections.get(session, connection_id).concur_company_id
    _check_change("Concur company", connection_id, current, company_id, replace_company,
                  "--replace-company")  # fmt: skip
    with db.session() as session:
        other = session.execute(
            select(Connection.id).where(
                Connection.concur_company_id == company_id, Connection.id != connection_id
            )
        ).scalar_one_or_none()
    if other is not None:
        raise ConnectorError(
            f"Concur company {company_id} is already used by connection {other}; Concur events "
            "are routed by company, so a company belongs to one connection"
        )
    try:
        grant = concur_auth.bootstrap(
            settings, company_id=company_id, request_token=request_token, auth_url=auth_url
        )
    except ReauthRequired as exc:
        raise ConnectorError(
            f"Concur refused the company request token: {exc.context.get('vendor_message') or exc}"
            " (request tokens are valid for 24 hours; generate a new one in Concur's Company "
            "Request Token tool)"
        ) from None
    store_grant(db, settings, connection_id, connections.CONCUR, grant, principal=company_id)
    with db.session() as session:
        connections.get(session, connection_id).concur_company_id = company_id
    _audit_authorized(
        db,
        connection_id,
        f"SAP Concur authorized for company {company_id} at {grant.api_base_url}",
    )
    resumed = connections.reauthorized(db, connection_id)
    return Authorization(connection_id, connections.CONCUR, resumed=resumed)


def _check_change(
    what: str, connection_id: int, current: str | None, new: str, confirmed: str | None, flag: str
) -> None:
    """Refuse to move a connection to another tenant unless that exact change is confirmed."""
    if not current or current == new:
        return
    if confirmed is None or confirmed.strip() != current:
        raise ConnectorError(
            f"connection {connection_id} uses {what} {current}; moving it to {new} sends its "
            f"records elsewhere. Confirm this exact change with {flag} {current}"
        )
    log.warning("connection %s: %s change %s -> %s confirmed", connection_id, what, current, new)


def organizations_as_data(organizations: list[Organization]) -> list[dict[str, Any]]:
    return [o.as_dict() for o in organizations]
