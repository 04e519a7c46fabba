"""The beat's proactive refresh: keep every access token ahead of its expiry.

Run every ``CONNECTOR_REFRESH_INTERVAL`` seconds (default 60): each connected credential whose
access token expires within ``CONNECTOR_REFRESH_MARGIN`` seconds (default 600) is refreshed
under its lock (``connector.api.oauth``), so the flows almost never meet an expired token and
never refresh per request. With Zoho's and Concur's one-hour tokens that is one refresh per
credential about every 50 minutes: 1.2 token creations per hour, far below Zoho's throttle.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import or_, select

from connector import connections
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import ConnectorError, ReauthRequired
from connector.models import Credential, CredentialStatus

log = logging.getLogger(__name__)


@dataclass
class RefreshReport:
    """What one beat run did, by credential id."""

    refreshed: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    deferred: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"refreshed": self.refreshed, "dead": self.dead, "deferred": self.deferred}


def due(db: Database, margin: float, now: dt.datetime | None = None) -> list[tuple[int, int, str]]:
    """``(credential id, connection id, system)`` of connected credentials expiring soon."""
    cutoff = (now or utcnow()) + dt.timedelta(seconds=margin)
    with db.session() as session:
        rows = session.execute(
            select(Credential.id, Credential.connection_id, Credential.system)
            .where(
                Credential.status == CredentialStatus.CONNECTED.value,
                Credential.refresh_token_enc.is_not(None),
                or_(Credential.access_expires_at.is_(None), Credential.access_expires_at <= cutoff),
            )
            .order_by(Credential.access_expires_at)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def refresh_due(db: Database, settings: Settings, *, margin: float | None = None) -> RefreshReport:
    """Refresh every credential that expires within ``margin`` seconds; never raises for one."""
    margin = float(settings.refresh_margin if margin is None else margin)
    report = RefreshReport()
    for credential_id, connection_id, system in due(db, margin):
        try:
            manager = connections.token_manager(db, settings, connection_id, system)
            result = manager.refresh(margin=margin)
        except ReauthRequired:
            # Already marked and alerted by the token manager; nothing more to do here.
            report.dead.append(credential_id)
            continue
        except ConnectorError as exc:
            # Throttled, vendor down, network: the next run tries again, well before expiry.
            log.warning(
                "could not refresh %s credential %s (connection %s) yet: %s",
                system, credential_id, connection_id, exc,
            )  # fmt: skip
            report.deferred[credential_id] = str(exc)
            continue
        if result.refreshed:
            report.refreshed.append(credential_id)
    return report
