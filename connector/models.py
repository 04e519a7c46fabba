"""The connector's tables (brief §3): the database is the source of truth, the broker only says
"work on record N now".

Secrets live only in ``credentials`` and ``connections.webhook_secret_enc``, encrypted by
``connector.vault``; no other column may hold a token.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from connector.db import Base, utcnow

# Integer ids that autoincrement on both dialects (SQLite only autoincrements INTEGER PKs).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class RecordState(enum.StrEnum):
    """Where a record is in its flow; see ``connector.ledger`` for the legal moves."""

    RECEIVED = "received"
    FETCHED = "fetched"
    MAPPED = "mapped"
    VALIDATED = "validated"
    POSTING = "posting"
    POSTED = "posted"
    WAITING = "waiting"
    NEEDS_REAUTH = "needs_reauth"
    FAILED = "failed"
    DEAD = "dead"


class Step(enum.StrEnum):
    """Pipeline steps; a record's ``step`` is the next one to run (or the one that failed)."""

    FETCH = "fetch"
    MAP = "map"
    VALIDATE = "validate"
    POST = "post"
    AUDIT = "audit"


class Flow(enum.StrEnum):
    PAYABLES = "payables"
    EXPENSES = "expenses"
    VENDORS = "vendors"


class ConnectionStatus(enum.StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    DISABLED = "disabled"


class CredentialStatus(enum.StrEnum):
    CONNECTED = "connected"
    NEEDS_REAUTH = "needs_reauth"


class WebhookStatus(enum.StrEnum):
    RECEIVED = "received"
    ENQUEUED = "enqueued"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


def _enum_column(enum_cls: type[enum.StrEnum], default: enum.StrEnum) -> Any:
    # Plain strings in the database: adding a state is a code change, not an ALTER TYPE.
    return mapped_column(String(32), default=default.value, nullable=False)


class Connection(Base):
    """One Zoho Books organization paired with one Concur company."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = _enum_column(ConnectionStatus, ConnectionStatus.ACTIVE)
    status_reason: Mapped[str | None] = mapped_column(Text)
    zoho_organization_id: Mapped[str | None] = mapped_column(String(64), index=True)
    concur_company_id: Mapped[str | None] = mapped_column(String(64), index=True)
    webhook_secret_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    credentials: Mapped[list[Credential]] = relationship(
        back_populates="connection", cascade="all, delete-orphan"
    )


class Credential(Base):
    """OAuth tokens for one side of a connection; token columns are Fernet ciphertext."""

    __tablename__ = "credentials"
    __table_args__ = (UniqueConstraint("connection_id", "system"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    system: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = _enum_column(CredentialStatus, CredentialStatus.CONNECTED)
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[dt.datetime | None]
    refresh_expires_at: Mapped[dt.datetime | None]
    refresh_issued_at: Mapped[dt.datetime | None]
    last_refreshed_at: Mapped[dt.datetime | None]
    #: Zoho ``api_domain`` or Concur ``geolocation``: where every API call goes.
    api_base_url: Mapped[str | None] = mapped_column(String(255))
    #: Zoho ``accounts-server`` (refresh goes there) or the Concur auth host.
    auth_base_url: Mapped[str | None] = mapped_column(String(255))
    region: Mapped[str | None] = mapped_column(String(32))
    #: Who the token acts for: Zoho user/org, Concur company UUID (not secret).
    principal: Mapped[str | None] = mapped_column(String(128))
    #: Optional per-connection OAuth client (self-client); the secret is encrypted.
    client_id: Mapped[str | None] = mapped_column(String(128))
    client_secret_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    connection: Mapped[Connection] = relationship(back_populates="credentials")


class WebhookEvent(Base):
    """The inbox: every delivery we accepted, stored before we answer 2xx."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("source", "dedupe_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("connections.id", ondelete="SET NULL"), index=True
    )
    dedupe_key: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str | None] = mapped_column(String(64))
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = _enum_column(WebhookStatus, WebhookStatus.RECEIVED)
    record_id: Mapped[int | None] = mapped_column(BigId)
    note: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    processed_at: Mapped[dt.datetime | None]
    #: Intake runs that failed (any exception). At ``INBOX_MAX_ATTEMPTS`` the event is
    #: ``failed`` with the reason in ``note``, listed on /ops, in ``dead list`` and the digest.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: When intake last started on it; the relay counts staleness from here (or received_at).
    last_attempt_at: Mapped[dt.datetime | None]


class SyncRecord(Base):
    """The ledger: one source record version on its way to the target."""

    __tablename__ = "sync_records"
    __table_args__ = (
        UniqueConstraint("connection_id", "flow", "source_id", "source_version"),
        Index("ix_sync_records_state_next", "state", "next_attempt_at"),
        Index("ix_sync_records_lease", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    flow: Mapped[str] = mapped_column(String(16))
    source_system: Mapped[str] = mapped_column(String(16))
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(128))
    source_version: Mapped[str] = mapped_column(String(64))
    #: Human reference (bill number, report name) for lists and alerts.
    source_ref: Mapped[str | None] = mapped_column(String(255))
    #: The reference written into the target to find it again (brief §4).
    stable_ref: Mapped[str | None] = mapped_column(String(255))
    target_system: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = _enum_column(RecordState, RecordState.RECEIVED)
    step: Mapped[str] = mapped_column(String(16), default=Step.FETCH.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Times a POST may have reached the target; >0 means "search before posting again".
    post_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    waiting_since: Mapped[dt.datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None]
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    source_payload: Mapped[dict[str, Any] | None] = mapped_column()
    mapped_payload: Mapped[dict[str, Any] | None] = mapped_column()
    flags: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    posted_at: Mapped[dt.datetime | None]

    @property
    def task_id(self) -> str:
        """Deterministic Celery task id (brief §4.1): a redelivery is the same task."""
        return f"{self.flow}:{self.connection_id}:{self.source_id}:{self.source_version}"


class AuditEvent(Base):
    """Append-only trail of every step, transition and outbound call of a record."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int | None] = mapped_column(
        ForeignKey("sync_records.id", ondelete="CASCADE"), index=True
    )
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    step: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    http_method: Mapped[str | None] = mapped_column(String(8))
    http_path: Mapped[str | None] = mapped_column(String(512))
    http_status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(128))
    task_id: Mapped[str | None] = mapped_column(String(255))
    error_class: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column()


class VendorLink(Base):
    """Which Zoho vendor contact and which Concur vendor are the same vendor."""

    __tablename__ = "vendor_links"
    __table_args__ = (
        UniqueConstraint("connection_id", "zoho_contact_id"),
        UniqueConstraint("connection_id", "concur_vendor_code", "concur_address_code"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    zoho_contact_id: Mapped[str] = mapped_column(String(64))
    concur_vendor_code: Mapped[str] = mapped_column(String(64))
    concur_address_code: Mapped[str] = mapped_column(String(64))
    matched_by: Mapped[str | None] = mapped_column(String(32))
    #: Field values as last synced on each side, to tell which side changed a field since.
    zoho_snapshot: Mapped[dict[str, Any] | None] = mapped_column()
    concur_snapshot: Mapped[dict[str, Any] | None] = mapped_column()
    synced_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MappingRules(Base):
    """The connection's one mapping-rules document (``vendors:``, ``payables:``, ``expenses:``)."""

    __tablename__ = "mapping_rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), unique=True
    )
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncCursor(Base):
    """Polling watermark per connection and flow (the back-stop for missed webhooks)."""

    __tablename__ = "sync_cursors"
    __table_args__ = (UniqueConstraint("connection_id", "flow"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    flow: Mapped[str] = mapped_column(String(16))
    cursor: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OAuthState(Base):
    """One OAuth ``state`` (or organization-choice) nonce: signed, expiring and single-use."""

    __tablename__ = "oauth_states"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    #: ``zoho_authorize`` (the redirect's ``state``) or ``zoho_organization`` (the choice form).
    purpose: Mapped[str] = mapped_column(String(32))
    #: Non-secret context for the next page (e.g. the organizations to choose from).
    data: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class Alert(Base):
    """What the alert digest last said about one problem, so it notifies on news, not on repeats.

    ``kind`` is ``needs_reauth`` (key: connection id), ``dead`` or ``waiting`` (key:
    ``<connection id>:<flow>``). ``count`` is the size last notified; an open problem is
    notified again only when it grows past that count or after the reminder period.
    """

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("kind", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128))
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    #: ``open`` while the condition holds, ``resolved`` once it cleared.
    status: Mapped[str] = mapped_column(String(16), default="open")
    count: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[dt.datetime | None]
    resolved_at: Mapped[dt.datetime | None]
