"""The payables post step: one Concur payment request per document, however many versions.

Under the per-document lock the gate decides what this version may do: create, search for an
earlier POST that landed without its id, update the request already in Concur in place (``PUT``)
while it is editable, leave it when nothing Concur sees changed, wait for a sibling being posted,
or stop because a later version voided the document. Voids are decided here too, because they
need the same lock and the same view of the siblings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.concur.payment_requests import EDITABLE_APPROVAL_STATUSES
from connector.errors import FatalError, ParkError, ValidationFailed
from connector.models import RecordState, SyncRecord
from connector.steps import PostResult, StepContext
from flows.payables_documents import effective_version, is_newer
from flows.payables_ledger import claim, claimed, lock_document, siblings_of, update_record
from mappings.payables_validation import matches_existing
from mappings.payment_requests import canonical_json, iter_line_items, wrap_line_items
from mappings.zoho_documents import ZohoDocument

S = RecordState

#: Header fields of our POST body that the published ``PaymentRequestPut`` does not define; they
#: are left out of a PUT (the owner does not change with an edit).
PUT_OMITTED_FIELDS = frozenset(
    {"DataSource", "ExternalPolicyId", "LedgerCode", "PurchaseOrderNumber"}
)


# --------------------------------------------------------------------------- errors


class DocumentVoided(ValidationFailed):
    """Raised for a voided bill/invoice: the record is ``failed`` with code ``void`` and flagged."""

    code = "void"


class NotEditable(FatalError):
    """Raised when an edited document's Concur request can no longer be changed (flagged)."""


@dataclass(frozen=True)
class _Gate:
    """What the post step may do, decided under the document lock."""

    action: str  # create | search | existing | wait | void
    sibling_id: int | None = None
    target_id: str | None = None
    body_in_concur: dict[str, Any] | None = None
    newer_posted: bool = False
    reason: str = ""


def void(ctx: StepContext, record: SyncRecord, doc: ZohoDocument) -> None:
    """Flag a voided document and fail the record with the reason; never post it."""
    with ctx.db.session() as session:
        lock_document(session, record)
        siblings = siblings_of(session, record)
        busy = [s for s in siblings if claimed(s)]
        if busy:
            raise ParkError(
                f"{doc.label} is void but version {busy[0].source_version} (record "
                f"{busy[0].id}) is being posted; deciding once it has finished",
                dependency="document",
                key=str(busy[0].id),
            )
        targets = sorted(
            (s for s in siblings if s.target_id), key=lambda s: s.posted_at or s.updated_at
        )
        target = targets[-1].target_id if targets else None
    if target:
        message = (
            f"{doc.label} was voided in Zoho after it was sent to Concur as payment request "
            f"{target}; Concur has no API to void a payment request, so a person must "
            f"withdraw or reject {target} in Concur"
        )
    else:
        message = (
            f"{doc.label} is void in Zoho; it was never sent to Concur and will not be "
            "(flagged so the void is seen, nothing to undo)"
        )
    flags = {**(record.flags or {}), "void": True, "needs_attention": message}
    values: dict[str, Any] = {"flags": flags}
    if target:
        values["target_id"] = target
    update_record(ctx, record, outcome="void", message=message, **values)
    raise DocumentVoided(message, ["status: void"])


def find_existing(ctx: StepContext, record: SyncRecord) -> str | None:
    """After a POST that may have landed: the request with our invoice number, vendor and
    amount, if Concur has it. Versions of the same document are left to :meth:`post`."""
    gate = _gate(ctx, record)
    _raise_for(gate, record)
    if gate.action == "existing":
        return None
    body = record.mapped_payload or {}
    return _matching(_digests(ctx, record, body), body, same_amount=True)


def post(ctx: StepContext, record: SyncRecord) -> str | PostResult:
    body = dict(record.mapped_payload or {})
    gate = _gate(ctx, record)
    _raise_for(gate, record)
    if gate.action == "existing":
        return _edit(ctx, record, body, gate)
    if gate.action == "search":
        # An earlier version's POST may have landed without its id being recorded.
        digests = _digests(ctx, record, body)
        exact = _matching(digests, body, same_amount=True)
        if exact is not None:
            return PostResult(
                exact,
                "adopted",
                f"an earlier version's POST had landed as {exact} with this very content "
                "(invoice number, vendor and amount); not posted again",
            )
        found = _matching(digests, body, same_amount=False)
        if found is not None:
            return _edit(ctx, record, body, _Gate("existing", target_id=found))
    client = _concur(ctx, record)
    try:
        created = client.payment_requests.create(body)
    finally:
        client.close()
    return PostResult(
        created, "posted", f"created Concur payment request {created} ({_summary(body)})"
    )


def _raise_for(gate: _Gate, record: SyncRecord) -> None:
    if gate.action == "wait":
        # Waiting in the database, not as broker retries: the other version may need the
        # sweeper (a killed worker) and must not use up this one's transient attempts.
        raise ParkError(gate.reason, dependency="document", key=str(gate.sibling_id))
    if gate.action == "void":
        raise DocumentVoided(gate.reason, ["status: void"])


def _concur(ctx: StepContext, record: SyncRecord) -> Any:
    return ctx.concur(record, "post")


def _gate(ctx: StepContext, record: SyncRecord) -> _Gate:
    """Decide, under the per-document lock, what this version may do; claim the document
    when it is about to call Concur, so two versions never post at once."""
    with ctx.db.session() as session:
        lock_document(session, record)
        siblings = siblings_of(session, record)
        for sib in siblings:
            if claimed(sib):
                return _Gate(
                    "wait",
                    sibling_id=sib.id,
                    reason=f"version {sib.source_version} of this document (record "
                    f"{sib.id}) is being posted; posting version {record.source_version} "
                    "after it",
                )
        for sib in siblings:
            if (sib.flags or {}).get("void") and is_newer(sib, record):
                return _Gate(
                    "void",
                    sibling_id=sib.id,
                    reason=f"{record.source_ref or record.source_id} was voided in a later "
                    f"version (record {sib.id}); this version is not sent",
                )
        with_target = [s for s in siblings if s.target_id]
        claim(session, record, ctx.owner)
        if with_target:
            newest = max(with_target, key=lambda s: (effective_version(s), s.id))
            in_concur = [
                s for s in with_target if s.state == S.POSTED and s.target_id == newest.target_id
            ]
            shown = max(in_concur, key=lambda s: (effective_version(s), s.id), default=None)
            return _Gate(
                "existing",
                sibling_id=(shown or newest).id,
                target_id=newest.target_id,
                body_in_concur=dict(shown.mapped_payload or {}) if shown else None,
                newer_posted=bool(shown and is_newer(shown, record)),
            )
        landed = [
            s for s in siblings if s.post_attempts > 0 and not s.target_id and s.state != S.POSTED
        ]
        if landed:
            return _Gate("search", sibling_id=landed[0].id)
        return _Gate("create")


def _digests(ctx: StepContext, record: SyncRecord, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``paymentrequestdigests?vendorInvoiceNumber=`` for our invoice number (brief §4)."""
    number = str(body.get("InvoiceNumber") or record.stable_ref or "")
    if not number:
        return []
    client = _concur(ctx, record)
    try:
        return client.payment_requests.by_invoice_number(number)
    finally:
        client.close()


def _edit(ctx: StepContext, record: SyncRecord, body: dict[str, Any], gate: _Gate) -> PostResult:
    """An earlier version is in Concur as ``gate.target_id``: leave, update or flag it."""
    target = str(gate.target_id)
    if gate.newer_posted:
        return PostResult(
            target,
            "superseded",
            f"a later version (record {gate.sibling_id}) is already in Concur as {target}; "
            f"version {record.source_version} is older and is not sent",
        )
    if gate.body_in_concur is not None and canonical_json(gate.body_in_concur) == canonical_json(
        body
    ):
        return PostResult(
            target,
            "unchanged",
            f"nothing Concur sees changed since record {gate.sibling_id}; payment request "
            f"{target} is left as it is",
        )
    client = _concur(ctx, record)
    try:
        resource = client.payment_requests
        current = resource.get(target)
        status = str(current.get("ApprovalStatus") or "")
        deleted = str(current.get("IsPaymentRequestDeleted", "")).lower() == "true"
        if deleted or status not in EDITABLE_APPROVAL_STATUSES:
            why = (
                "was deleted in Concur"
                if deleted
                else f"is no longer editable (approval status {status or 'unknown'})"
            )
            message = (
                f"{record.source_ref or record.source_id} changed in Zoho (version "
                f"{record.source_version}: {_summary(body)}) but Concur payment request "
                f"{target} {why}; not changed: a person must update it in Concur"
            )
            flags = {**(record.flags or {}), "needs_attention": message}
            update_record(ctx, record, outcome="not_changed", message=message, flags=flags,
                    target_id=target)  # fmt: skip
            raise NotEditable(message, system="concur", code="not_editable")
        resource.update(put_body(body, target, current))
    finally:
        client.close()
    if (record.flags or {}).get("needs_attention"):
        flags = {k: v for k, v in (record.flags or {}).items() if k != "needs_attention"}
        update_record(ctx, record, flags=flags)
    return PostResult(
        target,
        "updated",
        f"updated Concur payment request {target} in place (PUT, approval status {status}) "
        f"to version {record.source_version}: {_summary(body)}",
    )


def _matching(
    digests: Iterable[Mapping[str, Any]], body: Mapping[str, Any], *, same_amount: bool
) -> str | None:
    """The id of a live request with our invoice number, vendor and currency (and amount, when
    ``same_amount``), checked with ``mappings.payables_validation.matches_existing``."""
    for digest in digests:
        wanted = body if same_amount else {**body, "InvoiceAmount": str(digest.get("Total"))}
        if matches_existing(digest, wanted):
            return str(digest.get("PaymentRequestId") or digest.get("ID"))
    return None


def put_body(
    body: Mapping[str, Any], request_id: str, current: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``PUT`` for an edit: our body with ``RequestID``, the request's current lines deleted
    and ours inserted (``Action``), owner fields left out (``PaymentRequestPut`` has none of
    ``PUT_OMITTED_FIELDS``)."""
    out = {k: v for k, v in body.items() if k not in PUT_OMITTED_FIELDS and k != "LineItems"}
    out["RequestID"] = request_id
    deletes = [
        {"LineItemID": str(line.get("LineItemId") or line.get("LineItemID")), "Action": "DELETE"}
        for line in iter_line_items(current)
        if line.get("LineItemId") or line.get("LineItemID")
    ]
    inserts = [{**dict(line), "Action": "INSERT"} for line in iter_line_items(body)]
    shape = "nested" if isinstance(body.get("LineItems"), Mapping) else "flat"
    out["LineItems"] = wrap_line_items(deletes + inserts, shape)
    return out


def _summary(body: Mapping[str, Any]) -> str:
    ident = body.get("VendorRemitToIdentifier") or {}
    vendor = ident.get("VendorCode") if isinstance(ident, Mapping) else None
    lines = sum(1 for _ in iter_line_items(body))
    return (
        f"invoice {body.get('InvoiceNumber')}, vendor {vendor}, "
        f"{body.get('InvoiceAmount')} {body.get('CurrencyCode')}, {lines} line(s)"
    )


# --------------------------------------------------------------------------- ledger helpers
