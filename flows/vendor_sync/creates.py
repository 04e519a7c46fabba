"""Creates on Zoho and Concur, each behind its write-ahead record (``intents``).

Concur creates go in batches; a batch whose answer is lost leaves its records in
``posting`` for the pipeline's post step (search, then adopt or create). Zoho creates go
one by one, renewing the connection lock as they go.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.concur import vendors as concur_vendors
from connector.config import Settings
from connector.db import Database
from connector.errors import (
    ApiError,
    RateLimitedError,
    RetryableError,
)
from connector.zoho import contacts as zoho_contacts
from flows.vendor_sync.decisions import ConcurCreate, PassReport, Plan
from flows.vendor_sync.intents import finish_intent, link_created, release_intent, write_ahead
from flows.vendor_sync.listing import Inputs
from flows.vendor_sync.lock import ConnectionLock
from flows.vendor_sync.state import CONCUR_TO_ZOHO, ZOHO_TO_CONCUR, Clients, hook, vm_flatten
from mappings import vendors as vm


def create_in_concur(
    db: Database,
    settings: Settings,
    plan: Plan,
    clients: Clients,
    report: PassReport,
    owner: str,
    hooks: dict[str, Callable[..., None]],
) -> None:
    cid = plan.connection_id
    ready: list[ConcurCreate] = []
    for create in plan.create_in_concur:
        record_id, why = write_ahead(
            db,
            cid,
            source_type=ZOHO_TO_CONCUR,
            source_system="zoho",
            source_id=create.zoho.contact_id,
            target_system="concur",
            stable_ref=create.ref,
            source_ref=create.zoho.values.get("name"),
            payload=dict(create.zoho.values),
            mapped=create.body,
            owner=owner,
            lease_seconds=settings.lease_seconds,
        )
        if record_id is None:
            plan.skipped.append({"zoho_contact_id": create.zoho.contact_id, "reason": why})
            continue
        create.record_id = record_id
        if create.problem:
            report.failures.append(f"Zoho {create.zoho.contact_id}: {create.problem}")
            finish_intent(
                db, record_id, owner, lease_seconds=settings.lease_seconds,
                error=f"not sent: {create.problem}",
            )  # fmt: skip
            continue
        ready.append(create)
    for batch in concur_vendors.batches(ready):
        try:
            statuses = concur_vendors.write_batch(clients.concur, "POST", [c.body for c in batch])
        except (RetryableError, ApiError) as exc:
            for c in batch:
                assert c.record_id is not None
                release_intent(db, c.record_id, owner, str(exc), report)
            raise
        hook(hooks, "after_concur_create", batch, statuses)
        for create, status in zip(batch, statuses, strict=True):
            assert create.record_id is not None
            if status.ok:
                echoed = status.vendor if status.vendor.get("VendorCode") else create.body
                concur = vm.concur_vendor({**create.body, **echoed})
                link_created(
                    db, cid, create.record_id, owner, create.zoho, concur, direction=ZOHO_TO_CONCUR
                )
                report.created_in_concur += 1
            elif status.code == 409:
                # Already there (an earlier POST landed): the next pass finds and links it.
                release_intent(db, create.record_id, owner, status.message, report)
                report.failures.append(f"Concur {create.ref}: {status.message}")
            else:
                finish_intent(
                    db, create.record_id, owner, lease_seconds=settings.lease_seconds,
                    error=status.message,
                )  # fmt: skip
                report.failures.append(f"Concur {create.ref}: {status.message}")
                report.zoho_left += 1


def create_in_zoho(
    db: Database,
    settings: Settings,
    plan: Plan,
    inputs: Inputs,
    clients: Clients,
    report: PassReport,
    owner: str,
    lock: ConnectionLock,
) -> None:
    if not plan.create_in_zoho:
        return
    cid = plan.connection_id
    rules = plan.rules
    currency_ids = zoho_contacts.currency_ids(clients.zoho)
    for n, create in enumerate(plan.create_in_zoho):
        if n and n % 50 == 0:
            lock.renew()
        c = create.concur
        currency = create.values.get("currency_code")
        currency_id = currency_ids.get(str(currency or "").upper()) if currency else None
        body = vm.zoho_body(create.values, rules, code=c.code, currency_id=currency_id)
        problem = None
        if currency and currency_id is None:
            problem = f"currency {currency} is not enabled in the Zoho organization"
        else:
            try:
                vm.validate_zoho_contact(body)
            except Exception as exc:
                problem = "; ".join(vm_flatten(getattr(exc, "messages", str(exc))))
        record_id, why = write_ahead(
            db,
            cid,
            source_type=CONCUR_TO_ZOHO,
            source_system="concur",
            source_id=c.ref,
            target_system="zoho",
            stable_ref=str(create.values.get("name") or ""),
            source_ref=create.values.get("name"),
            payload=dict(create.values),
            mapped=body,
            owner=owner,
            lease_seconds=settings.lease_seconds,
        )
        if record_id is None:
            plan.skipped.append({"concur_vendor": c.ref, "reason": why})
            continue
        create.record_id = record_id
        if problem:
            finish_intent(
                db, record_id, owner, lease_seconds=settings.lease_seconds,
                error=f"not sent: {problem}",
            )  # fmt: skip
            report.failures.append(f"Concur {c.ref}: {problem}")
            continue
        try:
            contact = zoho_contacts.create(clients.zoho, body)
        except (RetryableError, RateLimitedError) as exc:
            release_intent(db, record_id, owner, str(exc), report)
            raise
        except ApiError as exc:
            finish_intent(
                db, record_id, owner, lease_seconds=settings.lease_seconds, error=str(exc)
            )
            report.failures.append(f"Concur {c.ref}: {exc}")
            continue
        z = vm.zoho_vendor(contact, rules)
        link_created(db, cid, record_id, owner, z, c, direction=CONCUR_TO_ZOHO)
        report.created_in_zoho += 1
