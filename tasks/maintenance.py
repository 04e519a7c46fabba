"""Scheduled jobs run by beat."""

from __future__ import annotations

import logging

from connector import pipeline
from tasks.base import ConnectorTask
from tasks.celery import app
from tasks.pipeline import enqueue

log = logging.getLogger(__name__)


@app.task(base=ConnectorTask, bind=True, name="maintenance.sweep")
def sweep(self: ConnectorTask) -> int:
    """Re-drive records nobody is moving (lost message, killed worker, back-off elapsed)."""
    due = pipeline.due_for_redrive(self.db, stale_after=self.lease_seconds)
    for record_id, step in due:
        enqueue(record_id, step)
    if due:
        log.info("sweeper re-drove %d record(s)", len(due))
    return len(due)
