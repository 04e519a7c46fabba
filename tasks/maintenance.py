"""Scheduled jobs run by beat."""

from __future__ import annotations

import logging

from connector import inbox, pipeline
from connector.models import WebhookStatus
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
    with self.db.session() as session:
        events = [e.id for e in inbox.stale_events(session, older_than=self.lease_seconds)]
    for event_id in events:
        enqueue_event(event_id)
        with self.db.session() as session:
            inbox.mark(session, event_id, WebhookStatus.ENQUEUED, note="relayed by the sweeper")
    if due or events:
        log.info("sweeper re-drove %d record(s) and relayed %d event(s)", len(due), len(events))
    return len(due) + len(events)
