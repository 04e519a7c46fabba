"""Vendor tasks: sync one vendor now (contact webhooks go through the pipeline instead)."""

from __future__ import annotations

import logging

from connector.config import get_settings
from connector.models import Step
from flows import vendor_sync as vendors
from tasks.base import ConnectorTask
from tasks.celery import app
from tasks.pipeline import enqueue

log = logging.getLogger(__name__)

#: Seconds before a sync that found a reconciliation running tries again.
BUSY_RETRY = 30.0


@app.task(base=ConnectorTask, bind=True, name="vendors.sync_one")
def sync_one(self: ConnectorTask, connection_id: int, zoho_contact_id: str) -> str:
    """Link, update or create one Zoho vendor in Concur (``flows.vendor_sync.sync_one``)."""
    try:
        report = vendors.sync_one(self.db, get_settings(), connection_id, zoho_contact_id)
    except vendors.VendorSyncBusy as exc:
        raise self.retry(countdown=BUSY_RETRY, exc=exc) from None
    for record_id in report.unresolved:  # a create whose answer was lost: search, then adopt
        enqueue(record_id, Step.POST)
    log.info("vendor %s of connection %s: %s", zoho_contact_id, connection_id, report.summary())
    return report.summary()


def enqueue_sync_one(connection_id: int, zoho_contact_id: str) -> None:
    """``request_vendor_sync(..., enqueue=enqueue_sync_one)``: hand the sync to a worker."""
    app.send_task(
        "vendors.sync_one", args=[int(connection_id), str(zoho_contact_id)], queue="default"
    )
