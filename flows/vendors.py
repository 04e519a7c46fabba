"""The vendors flow: registration of the reconciliation pass, the contact-webhook intake and the
ledger handler for the flow's records (the engine is ``flows.vendor_sync``; docs/vendors.md).

Records of flow ``vendors`` are of three kinds (``source_type``):

- ``contact``: a Zoho contact webhook (or another flow) asked for one vendor to be synced. The
  pipeline runs it on the ``default`` queue; ``post`` is ``flows.vendor_sync.sync_one``.
- ``zoho_contact`` / ``concur_vendor``: the write-ahead record of a create the reconciliation
  made (Zoho contact -> Concur vendor, Concur vendor -> Zoho contact). The reconciliation drives
  them itself; the pipeline only sees one when the sweeper re-drives it (the pass died
  mid-create) or an operator replays it. Then ``find_existing`` searches the target by code or
  name and links what it finds, and ``post`` creates the vendor only if it is not there.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector import intake, ledger, sync
from connector.config import Settings
from connector.db import Database
from connector.errors import QuotaReserveError, ValidationFailed
from connector.limits import quota
from connector.models import Step, SyncRecord, VendorLink, WebhookEvent
from connector.registry import Flow, IntakeHook
from connector.steps import PostResult, StepContext
from flows import vendor_sync as engine

log = logging.getLogger(__name__)

FLOW = engine.FLOW

# Re-exported for the payables flow (``flows.vendors.request_vendor_sync``).
request_vendor_sync = engine.request_vendor_sync
sync_one = engine.sync_one


class VendorsFlow:
    name = FLOW

    def queue_for(self, step: str) -> str:
        # Each step may call both vendors (listing one, writing the other).
        return "default"

    def fetch(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        if record.source_type == engine.SYNC_REQUEST:
            return {"zoho_contact_id": record.source_id}
        return dict(record.source_payload or {})

    def map(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        return dict(record.mapped_payload or record.source_payload or {})

    def validate(self, ctx: StepContext, record: SyncRecord) -> None:
        return None

    def find_existing(self, ctx: StepContext, record: SyncRecord) -> str | None:
        if record.source_type == engine.SYNC_REQUEST:
            return None
        return engine.resolve_intent(ctx.db, ctx.settings, record, create=False)

    def post(self, ctx: StepContext, record: SyncRecord) -> str | PostResult:
        if record.source_type != engine.SYNC_REQUEST:
            target = engine.resolve_intent(ctx.db, ctx.settings, record, create=True)
            assert target is not None
            return target
        report = engine.sync_one(ctx.db, ctx.settings, record.connection_id, record.source_id)
        link = engine.link_for_zoho(ctx.db, record.connection_id, record.source_id)
        if link is None:
            plan = report.plan
            why = [a.detail for a in (plan.ambiguous if plan else []) if record.source_id in a.zoho]
            why += report.failures
            if plan is not None and not plan.rules.to_concur:
                why.append("the vendors rules do not copy Zoho vendors to Concur")
            raise ValidationFailed(
                f"Zoho contact {record.source_id} is not linked to a Concur vendor: "
                + ("; ".join(why) or "not a vendor contact, or nothing to link it to"),
                why or ["not linked"],
            )
        target = f"{link.concur_vendor_code}/{link.concur_address_code}"
        return PostResult(target, outcome="synced", message=report.summary())


handler = VendorsFlow()


# --------------------------------------------------------------------------- intake


def handle_contact_event(
    session: Session, event: WebhookEvent, payload: dict[str, Any]
) -> intake.IntakeResult:
    """A Zoho ``contact`` webhook: a vendor contact becomes a ``contact`` sync request.

    The event is a hint (the step re-reads the contact). Our own writes echo back as webhooks;
    an event whose ``last_modified_time`` equals what the link last synced is ignored.
    """
    contact_id = engine.zoho_vendor_contact_id(payload)
    if contact_id is None or event.connection_id is None:
        return intake.IntakeResult([], ignored="not a vendor contact")
    contact = payload.get("contact") if isinstance(payload.get("contact"), dict) else payload
    version = str(contact.get("last_modified_time") or event.dedupe_key)[:64]
    link = session.execute(
        select(VendorLink).where(
            VendorLink.connection_id == event.connection_id,
            VendorLink.zoho_contact_id == contact_id,
        )
    ).scalar_one_or_none()
    if link is not None and (link.zoho_snapshot or {}).get("last_modified_time") == version:
        return intake.IntakeResult([], ignored="vendor already synced at this version")
    record, created = ledger.get_or_create(
        session,
        connection_id=event.connection_id,
        flow=FLOW,
        source_system="zoho",
        source_type=engine.SYNC_REQUEST,
        source_id=contact_id,
        source_version=version,
        target_system="concur",
        source_ref=str(contact.get("contact_name") or "")[:255] or None,
        trigger="webhook",
    )
    return intake.IntakeResult([(record.id, Step.FETCH)] if created else [])


#: What the engine runs for this flow (``flows.FLOWS``).
HOOKS = {("zoho", "contact"): IntakeHook(handle_contact_event)}


# --------------------------------------------------------------------------- polling pass


def reconcile_pass(db: Database, settings: Settings, connection_id: int) -> sync.PassResult:
    """Beat's and ``connector sync ID --flow vendors``'s entry: one reconciliation, inline.

    Its Zoho calls are bulk work: at the daily reserve the pass stops and says when the quota
    renews; the next beat pass after that carries on (reconciliation is idempotent)."""
    try:
        with quota.bulk("vendor reconciliation"):
            report = engine.reconcile(db, settings, connection_id)
    except QuotaReserveError as exc:
        log.info("vendors connection %s: %s", connection_id, exc)
        return sync.PassResult([], f"skipped: {exc}")
    # Creates whose answer was lost go to the post step now (search, then adopt or create).
    return sync.PassResult([(rid, Step.POST) for rid in report.unresolved], report.summary())


DEFINITION = Flow(handler, intake=HOOKS, poll=reconcile_pass)
