"""Inbox processing: one task per stored webhook event."""

from __future__ import annotations

from flows import FLOWS
from tasks.base import ConnectorTask
from tasks.celery import app
from tasks.pipeline import enqueue_all


def enqueue_event(event_id: int) -> None:
    """Called by the receivers after the event is committed (ids only in the message)."""
    app.send_task("intake.process", args=[event_id], task_id=f"event:{event_id}", queue="default")


@app.task(base=ConnectorTask, bind=True, name="intake.process")
def process(self: ConnectorTask, event_id: int) -> list[int]:
    records = FLOWS.process_event(self.db, event_id)
    enqueue_all(records)
    return [record_id for record_id, _ in records]
