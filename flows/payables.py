"""The payables flow (issue #6): Zoho Books bills and invoices become SAP Concur payment requests,
once each.

How a document travels (docs/payables.md has the long version):

- **Intake.** A Zoho webhook (``connector.intake``, entities ``bill`` and ``invoice``) or the
  back-stop poll (:func:`flows.payables_intake.poll`, registered with ``connector.sync``) names a
  document and its ``last_modified_time``; both turn it into the same version string
  (:func:`mappings.payables.version_from_timestamp`), so they meet on one ledger record
  (``source_id`` = ``bill:<id>`` / ``invoice:<id>``).
- **fetch** (``zoho`` queue) re-reads the document by id: the webhook is only a hint.
- **map** (``concur`` queue) resolves the vendor link (``vendor_links``, filled by the vendors
  flow; Concur details from the link's snapshot or one cached vendor lookup) and builds the body
  with ``mappings.payables.map_document``. A voided document is flagged here and never posted.
- **validate** (``default`` queue, no HTTP) checks the body before any POST.
- **post** (``concur`` queue) serialises the versions of one document (a per-document lock and a
  claim flag), then creates the payment request, or, when an earlier version is already in
  Concur, updates it in place (``PUT``) while it is editable, leaves it alone when nothing that
  Concur sees changed, or flags the record when Concur no longer lets it be changed.

Where each part lives: ``flows.payables_intake`` (webhook hook and poll),
``flows.payables_vendors`` (vendor link, remit-to, cached lookups), ``flows.payables_post`` (the
per-document gate, void, create and update in place), ``flows.payables_documents`` (identity,
versions, rules) and ``flows.payables_ledger`` (lock, claim, side writes); this module is the
step handler the engine calls and the flow's ``DEFINITION``.

Nothing here imports Flask or Celery; each step is callable from a test through
``connector.pipeline.run_step``.
"""

from __future__ import annotations

from typing import Any

from connector.errors import RetryableError, ValidationFailed
from connector.models import SyncRecord
from connector.registry import Flow, IntakeHook
from connector.steps import PostResult, StepContext
from flows import payables_intake, payables_post, payables_vendors
from flows.payables_documents import (
    FLOW,
    KINDS,
    TIMESTAMP_VERSION,
    label,
    load_document,
    load_rules,
    split_source_id,
)
from flows.payables_ledger import update_record
from mappings.payables import document_version, is_void, map_document, stable_reference
from mappings.payables_validation import validate_payment_request
from mappings.zoho_documents import load_zoho_document


class PayablesFlow:
    name = FLOW

    # ------------------------------------------------------------------ routing

    def queue_for(self, step: str) -> str:
        """fetch reads Zoho; map may look a vendor up and post writes, in Concur; the rest
        make no call."""
        return {"fetch": "zoho", "map": "concur", "post": "concur"}.get(step, "default")

    # ------------------------------------------------------------------ fetch

    def fetch(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        kind, document_id = split_source_id(record.source_id)
        client = ctx.zoho(record, "fetch")
        try:
            obj = client.documents(kind).get(document_id)
        finally:
            client.close()
        if not obj:
            raise RetryableError(f"Zoho answered without the {kind} {document_id}", system="zoho")
        payload = {kind: obj}
        doc = load_zoho_document(payload, kind)  # type: ignore[arg-type]
        version = document_version(doc)
        values: dict[str, Any] = {}
        if not record.stable_ref:  # a hint without the number: name the record now
            values["stable_ref"] = stable_reference(doc)
            values["source_ref"] = label(kind, doc.number, doc.contact_name)
        note = None
        if version != record.source_version:
            older = (
                TIMESTAMP_VERSION.match(version)
                and TIMESTAMP_VERSION.match(record.source_version)
                and version < record.source_version
            )
            if older:
                # A lagging replica: the hint promised a later document than Zoho served.
                raise RetryableError(
                    f"Zoho served {doc.label} version {version}, older than the announced "
                    f"{record.source_version}; reading it again later",
                    system="zoho",
                )
            values["flags"] = {**(record.flags or {}), "fetched_version": version}
            note = (
                f"{doc.label} changed since the hint: fetched version {version} instead of "
                f"{record.source_version}; this record carries the newer document (a record for "
                "that version finds it already in Concur and sends nothing)"
            )
        if values:
            update_record(ctx, record, outcome="note" if note else None, message=note, **values)
        return payload

    # ------------------------------------------------------------------ map

    def map(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        doc = load_document(record)
        rules_ = load_rules(ctx.db, record.connection_id)
        if not rules_.includes(doc.kind):
            raise ValidationFailed(
                f"{doc.label}: {doc.kind}s are not in payables.include for this connection",
                [f"{doc.kind}: not included"],
            )
        if is_void(doc):
            payables_post.void(ctx, record, doc)
        vendor = payables_vendors.vendor_for(ctx, record, doc, rules_)
        return map_document(doc, vendor, rules_)

    # ------------------------------------------------------------------ validate

    def validate(self, ctx: StepContext, record: SyncRecord) -> None:
        doc = load_document(record)
        rules_ = load_rules(ctx.db, record.connection_id)
        body = record.mapped_payload or {}
        validate_payment_request(
            body,
            currency=doc.currency_code or "",
            allow_negative_lines=rules_.allows_negative_lines,
        )

    # ------------------------------------------------------------------ post

    def find_existing(self, ctx: StepContext, record: SyncRecord) -> str | None:
        """After a POST that may have landed: the request with our invoice number, vendor and
        amount, if Concur has it. Versions of the same document are left to :meth:`post`."""
        return payables_post.find_existing(ctx, record)

    def post(self, ctx: StepContext, record: SyncRecord) -> str | PostResult:
        return payables_post.post(ctx, record)


handler = PayablesFlow()

#: What the engine runs for this flow (``flows.FLOWS``).
DEFINITION = Flow(
    handler,
    intake={("zoho", kind): IntakeHook(payables_intake.intake_document) for kind in KINDS},
    poll=payables_intake.poll,
)
