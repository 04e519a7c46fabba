"""Scheduled jobs run by beat."""

from __future__ import annotations

import logging

from connector import inbox, pipeline
from tasks.base import ConnectorTask
from tasks.celery import app
from tasks.intake import enqueue_event
from tasks.pipeline import enqueue

log = logging.getLogger(__name__)


@app.task(base=ConnectorTask, bind=True, name="maintenance.sweep")
def sweep(self: ConnectorTask) -> int:
    """Re-drive records nobody is moving (lost message, killed worker, back-off elapsed) and
    relay inbox events whose enqueue failed or whose message was lost."""
    due = pipeline.due_for_redrive(self.db, stale_after=self.lease_seconds)
    for record_id, step in due:
        enqueue(record_id, step)
    from connector.config import get_settings

    # Events: relayed after ``inbox.relay_after`` (two sweeps by default), not after a record
    # lease, and stamped so each is relayed at most once per bound (docs/operations.md, "Inbox").
    with self.db.session() as session:
        bound = inbox.relay_after(get_settings())
        events = [e.id for e in inbox.stale_events(session, older_than=bound)]
    for event_id in events:
        enqueue_event(event_id)
    if events:
        with self.db.session() as session:
            inbox.touch(session, events)
    if due or events:
        log.info("sweeper re-drove %d record(s) and relayed %d event(s)", len(due), len(events))
    return len(due) + len(events)


@app.task(base=ConnectorTask, bind=True, name="maintenance.refresh_tokens")
def refresh_tokens(self: ConnectorTask) -> dict[str, object]:
    """Refresh access tokens that expire within CONNECTOR_REFRESH_MARGIN (one at a time each)."""
    from connector import authorize, oauth_state
    from connector.config import get_settings
    from connector.token_refresh import refresh_due

    settings = get_settings()
    report = refresh_due(self.db, settings)
    # Unanswered organization-change confirmations: revoke the new login they hold (issue #12).
    authorize.revoke_abandoned_changes(self.db, settings)
    oauth_state.purge_expired(self.db)  # used or abandoned OAuth states, a day after expiry
    if report.refreshed or report.dead or report.deferred:
        log.info(
            "token refresh: %d refreshed, %d dead, %d deferred",
            len(report.refreshed), len(report.dead), len(report.deferred),
        )  # fmt: skip
    return report.as_dict()


@app.task(base=ConnectorTask, bind=True, name="maintenance.alerts")
def alerts(self: ConnectorTask) -> dict[str, object]:
    """Send the alert digest (needs_reauth, dead, waiting too long) if anything is new or grew
    (docs/operations.md, "Alerts")."""
    from connector import alerts as alerting
    from connector.config import get_settings

    report = alerting.run(self.db, get_settings())
    return {"items": report["items"], "delivered": report["delivered"]}
