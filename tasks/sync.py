"""Beat's polling passes (the webhook back-stop), one task per connection and flow."""

from __future__ import annotations

import logging

from sqlalchemy import select

from connector.config import get_settings
from connector.models import Connection, ConnectionStatus
from flows import FLOWS
from tasks.base import ConnectorTask
from tasks.celery import app
from tasks.pipeline import enqueue

log = logging.getLogger(__name__)


@app.task(base=ConnectorTask, bind=True, name="sync.poll_all")
def poll_all(self: ConnectorTask, flow: str) -> int:
    """Fan out one ``sync.poll`` per active connection (each on its vendor's queue)."""
    with self.db.session() as session:
        ids = (
            session.execute(
                select(Connection.id).where(Connection.status == ConnectionStatus.ACTIVE.value)
            )
            .scalars()
            .all()
        )
    for connection_id in ids:
        app.send_task("sync.poll", args=[connection_id, flow], queue="default")
    return len(ids)


@app.task(base=ConnectorTask, bind=True, name="sync.poll")
def poll(self: ConnectorTask, connection_id: int, flow: str) -> int:
    result = FLOWS.sync(self.db, get_settings(), connection_id, flow)
    for record_id, step in result.records:
        enqueue(record_id, step)
    if result.summary:
        log.info("sync %s connection %s: %s", flow, connection_id, result.summary)
    return len(result.records)
