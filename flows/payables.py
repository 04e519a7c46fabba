"""The payables flow (issue #6): Zoho Books bills and invoices become SAP Concur payment requests,
once each.

How a document travels (docs/payables.md has the long version):

- **Intake.** A Zoho webhook (``connector.intake``, entities ``bill`` and ``invoice``) or the
  back-stop poll (:func:`poll`, registered with ``connector.sync``) names a document and its
  ``last_modified_time``; both turn it into the same version string
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

Nothing here imports Flask or Celery; each step is callable from a test through
``connector.pipeline.run_step``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from connector import audit, intake, ledger, rules, sync
from connector.concur.payment_requests import EDITABLE_APPROVAL_STATUSES, payment_requests
from connector.config import Settings
from connector.connections import concur_client, zoho_client
from connector.db import Database, utcnow
from connector.errors import (
    FatalError,
    LeaseLost,
    MappingError,
    ParkError,
    ReauthRequired,
    RetryableError,
    ValidationFailed,
)
from connector.models import (
    Connection,
    MappingRules,
    RecordState,
    Step,
    SyncRecord,
    VendorLink,
    WebhookEvent,
)
from connector.registry import Flow, IntakeHook
from connector.steps import PostResult, StepContext
from connector.zoho.documents import documents
from flows import remit_to
from mappings.payables import (
    PayablesRules,
    VendorRef,
    document_version,
    is_void,
    map_document,
    matches_existing,
    parse_payables_rules,
    stable_reference,
    validate_payment_request,
    version_from_timestamp,
)
from mappings.payment_requests import canonical_json, iter_line_items, wrap_line_items
from mappings.zoho_documents import ZohoDocument, load_zoho_document

log = logging.getLogger(__name__)

FLOW = "payables"
SOURCE_SYSTEM = "zoho"
TARGET_SYSTEM = "concur"
KINDS = ("bill", "invoice")
S = RecordState

#: How long a Concur vendor looked up by code stays trusted in this process (seconds).
VENDOR_CACHE_SECONDS = 300.0
#: The back-stop re-reads this many seconds before its cursor (clock skew, late commits in
#: Zoho); the ledger's UNIQUE key makes the overlap harmless.
POLL_OVERLAP = dt.timedelta(seconds=30)

#: Header fields of our POST body that the published ``PaymentRequestPut`` does not define; they
#: are left out of a PUT (the owner does not change with an edit).
PUT_OMITTED_FIELDS = frozenset(
    {"DataSource", "ExternalPolicyId", "LedgerCode", "PurchaseOrderNumber"}
)

_TIMESTAMP_VERSION = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# --------------------------------------------------------------------------- errors


class DocumentVoided(ValidationFailed):
    """Raised for a voided bill/invoice: the record is ``failed`` with code ``void`` and flagged."""

    code = "void"


class NotEditable(FatalError):
    """Raised when an edited document's Concur request can no longer be changed (flagged)."""


# --------------------------------------------------------------------------- small helpers


def source_id_of(kind: str, document_id: str) -> str:
    """The ledger ``source_id``: the kind keeps bill and invoice ids apart."""
    return f"{kind}:{document_id}"


def split_source_id(source_id: str) -> tuple[str, str]:
    kind, _, document_id = source_id.partition(":")
    if kind not in KINDS or not document_id:
        raise ValidationFailed(f"not a payables source id: {source_id!r}", ["source_id"])
    return kind, document_id


def hint_version(kind: str, obj: Mapping[str, Any]) -> str:
    """The version a webhook hint or a list item names: the same string the fetched document
    gives (``document_version``), so webhook, poll and fetch agree."""
    raw = obj.get("last_modified_time")
    if isinstance(raw, str) and raw.strip():
        return version_from_timestamp(raw)
    try:
        return document_version(load_zoho_document({kind: dict(obj)}, kind))  # type: ignore[arg-type]
    except ValidationFailed:
        payload = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def label(kind: str, number: Any, contact: Any) -> str:
    """``bill SBX-00001 (Delta Air Lines)``: how lists and alerts name a record."""
    text_ = f"{kind} {number or '?'}"
    return f"{text_} ({contact})" if contact else text_


def _contact_name(kind: str, obj: Mapping[str, Any]) -> str | None:
    value = obj.get("vendor_name" if kind == "bill" else "customer_name")
    return str(value).strip() if value else None


def effective_version(record: SyncRecord) -> str:
    """The version of the document the record actually carries (a fetch may have found a newer
    one than the hint announced)."""
    return str((record.flags or {}).get("fetched_version") or record.source_version)


def is_newer(a: SyncRecord, b: SyncRecord) -> bool:
    """Does record ``a`` carry a later version of the document than ``b``?"""
    va, vb = effective_version(a), effective_version(b)
    if _TIMESTAMP_VERSION.match(va) and _TIMESTAMP_VERSION.match(vb) and va != vb:
        return va > vb
    return a.id > b.id


def _load(record: SyncRecord) -> ZohoDocument:
    kind = record.source_type if record.source_type in KINDS else None
    return load_zoho_document(record.source_payload or {}, kind)  # type: ignore[arg-type]


def load_rules(db: Database, connection_id: int) -> PayablesRules:
    """The connection's ``payables:`` rules; a missing or invalid section parks the record."""
    section = rules.section(db, connection_id, "payables", resolved=True) or rules.section(
        db, connection_id, "payables"
    )
    if not section:
        raise MappingError(
            f"connection {connection_id} has no payables rules yet: import a rules file with a "
            "payables section (at least payables.owner) with `connector mappings import`",
            dependency="mapping",
            key="payables",
        )
    try:
        return parse_payables_rules(section)
    except ValidationFailed as exc:
        raise MappingError(str(exc), dependency="mapping", key="payables") from exc


def _included_kinds(section: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Kinds the rules include; both when the rules are missing or invalid (the records then
    wait for the rules with a readable reason instead of being dropped)."""
    if not section:
        return KINDS
    try:
        parsed = parse_payables_rules(section)
    except ValidationFailed:
        return KINDS
    return tuple(k for k in KINDS if parsed.includes(k))


def _section_in(session: Session, connection_id: int) -> dict[str, Any]:
    row = session.execute(
        select(MappingRules.document).where(MappingRules.connection_id == connection_id)
    ).scalar_one_or_none()
    doc = dict(row or {})
    for key in ("resolved", "source"):
        section = (doc.get(key) or {}).get("payables")
        if section:
            return dict(section)
    return {}


# --------------------------------------------------------------------------- vendors


_vendor_cache: dict[tuple[int, str, str], tuple[float, VendorRef]] = {}
_vendor_cache_lock = threading.Lock()


def _link(db: Database, connection_id: int, contact_id: str) -> VendorLink | None:
    with db.session() as session:
        link = session.execute(
            select(VendorLink).where(
                VendorLink.connection_id == connection_id,
                VendorLink.zoho_contact_id == str(contact_id),
            )
        ).scalar_one_or_none()
        if link is not None:
            session.expunge(link)
        return link


def forget_vendors(connection_id: int | None = None) -> None:
    """Drop cached Concur vendors (all, or one connection's)."""
    with _vendor_cache_lock:
        for key in [k for k in _vendor_cache if connection_id is None or k[0] == connection_id]:
            del _vendor_cache[key]


def _pick(snapshot: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = snapshot.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _party(doc: ZohoDocument) -> str:
    """``vendor 'Delta Air Lines' (Zoho contact 4600…)``: how waits name the Zoho party."""
    who = "vendor" if doc.kind == "bill" else "customer"
    return f"{who} '{doc.contact_name or '(no name)'}' (Zoho contact {doc.contact_id})"


def _vendor_from(
    code: str, address: str, vendor: Mapping[str, Any], fallback_name: str | None
) -> VendorRef:
    return VendorRef(
        code,
        address,
        _pick(vendor, "CountryCode", "Country"),
        _pick(vendor, "CurrencyCode"),
        _pick(vendor, "VendorName", "Name") or fallback_name,
    )


def request_vendor_sync(ctx: StepContext, connection_id: int, contact_id: str) -> bool:
    """Ask the vendors flow to sync one Zoho contact now (issue #6 §5); False if it cannot.

    The vendors flow owns the link; this only calls its ``request_vendor_sync(db, settings,
    connection_id, zoho_contact_id)`` when that flow is installed.
    """
    try:
        from flows import vendors as vendor_flow
    except ImportError:
        log.info("vendors flow not installed; cannot ask it to sync contact %s", contact_id)
        return False
    fn = getattr(vendor_flow, "request_vendor_sync", None)
    if fn is None:
        log.info("vendors flow has no request_vendor_sync; contact %s not requested", contact_id)
        return False
    try:
        fn(ctx.db, ctx.settings, connection_id, contact_id)
    except Exception:  # the record waits either way; the vendor flow's own pass catches up
        log.warning("asking the vendors flow to sync contact %s failed", contact_id, exc_info=True)
        return False
    return True


# --------------------------------------------------------------------------- the handler


@dataclass(frozen=True)
class _Gate:
    """What the post step may do, decided under the document lock."""

    action: str  # create | search | existing | wait | void
    sibling_id: int | None = None
    target_id: str | None = None
    body_in_concur: dict[str, Any] | None = None
    newer_posted: bool = False
    reason: str = ""


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
        client = zoho_client(
            ctx.db,
            ctx.settings,
            record.connection_id,
            on_response=audit.recorder(
                ctx.db, record_id=record.id, step="fetch", task_id=ctx.task_id
            ),
        )
        try:
            obj = documents(client, kind).get(document_id)
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
                _TIMESTAMP_VERSION.match(version)
                and _TIMESTAMP_VERSION.match(record.source_version)
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
            _update(ctx, record, outcome="note" if note else None, message=note, **values)
        return payload

    # ------------------------------------------------------------------ map

    def map(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        doc = _load(record)
        rules_ = load_rules(ctx.db, record.connection_id)
        if not rules_.includes(doc.kind):
            raise ValidationFailed(
                f"{doc.label}: {doc.kind}s are not in payables.include for this connection",
                [f"{doc.kind}: not included"],
            )
        if is_void(doc):
            self._void(ctx, record, doc)
        vendor = self._vendor(ctx, record, doc, rules_)
        return map_document(doc, vendor, rules_)

    def _vendor(
        self, ctx: StepContext, record: SyncRecord, doc: ZohoDocument, rules_: PayablesRules
    ) -> VendorRef:
        """The linked Concur vendor: the link's snapshot, else a cached lookup, else one call.

        Without a link the vendors flow is asked to sync that one contact (it links, or creates
        the vendor in Concur, as its rules say); if it cannot, the record waits with the reason.
        """
        link = _link(ctx.db, record.connection_id, doc.contact_id)
        if link is None:
            if request_vendor_sync(ctx, record.connection_id, doc.contact_id):
                link = _link(ctx.db, record.connection_id, doc.contact_id)
                note = f"asked the vendors flow to sync Zoho contact {doc.contact_id}: " + (
                    f"linked to Concur vendor {link.concur_vendor_code}/{link.concur_address_code}"
                    if link is not None
                    else "still not linked"
                )
                _audit(ctx, record, "vendor_requested", note)
            if link is None:
                map_document(doc, None, rules_)  # raises the documented vendor ParkError
                raise AssertionError("map_document accepted a missing vendor")  # pragma: no cover
        code = link.concur_vendor_code
        who = _party(doc)
        clients: list[Any] = []

        def concur() -> Any:
            if not clients:
                clients.append(
                    concur_client(
                        ctx.db,
                        ctx.settings,
                        record.connection_id,
                        on_response=audit.recorder(
                            ctx.db, record_id=record.id, step="map", task_id=ctx.task_id
                        ),
                    )
                )
            return clients[0]

        try:
            remit = remit_to.resolve(
                rules_.remit_to,
                code,
                link.concur_address_code,
                lambda c: concur().vendors.iter_all(vendorCode=c),
                who=who,
                contact_id=doc.contact_id,
            )
            return self._vendor_ref(ctx, record, doc, link, remit, concur, rules_.country_code)
        finally:
            for client in clients:
                client.close()

    def _vendor_ref(
        self,
        ctx: StepContext,
        record: SyncRecord,
        doc: ZohoDocument,
        link: VendorLink,
        remit: remit_to.RemitTo,
        concur: Any,
        rules_country: str | None,
    ) -> VendorRef:
        """Concur details of the vendor at the settled address: the record a lookup already
        read, the link's snapshot when it describes that very address, else a cached lookup."""
        code, address = link.concur_vendor_code, remit.address_code
        if remit.vendor is not None:
            return _vendor_from(code, address, remit.vendor, None)
        snapshot = link.concur_snapshot or {}
        name = _pick(snapshot, "VendorName", "Name", "name", "vendor_name")
        country = _pick(snapshot, "CountryCode", "country_code")
        currency = _pick(snapshot, "CurrencyCode", "currency_code")
        same_address = address.upper() == link.concur_address_code.strip().upper()
        if same_address and name and (country or rules_country):
            return VendorRef(code, address, country, currency, name)  # trust the link
        key = (record.connection_id, code.upper(), address.upper())
        with _vendor_cache_lock:
            cached = _vendor_cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = [
            v
            for v in concur().vendors.find(vendorCode=code, addressCode=address, limit=10)
            if str(v.get("VendorCode", "")).upper() == code.upper()
            and str(v.get("AddressCode", "")).upper() == address.upper()
        ]
        if not found:
            request_vendor_sync(ctx, record.connection_id, doc.contact_id)
            raise ParkError(
                f"{_party(doc)} is linked to Concur vendor {code}/{address}"
                + (" (payables.remit_to)" if remit.source == "rule" else "")
                + ", which is not in Concur",
                dependency="vendor",
                key=doc.contact_id,
            )
        ref = _vendor_from(code, address, found[0], name)
        with _vendor_cache_lock:
            _vendor_cache[key] = (time.monotonic() + VENDOR_CACHE_SECONDS, ref)
        return ref

    def _void(self, ctx: StepContext, record: SyncRecord, doc: ZohoDocument) -> None:
        """Flag a voided document and fail the record with the reason; never post it."""
        with ctx.db.session() as session:
            _lock_document(session, record)
            siblings = _siblings(session, record)
            busy = [s for s in siblings if _claimed(s)]
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
        _update(ctx, record, outcome="void", message=message, **values)
        raise DocumentVoided(message, ["status: void"])

    # ------------------------------------------------------------------ validate

    def validate(self, ctx: StepContext, record: SyncRecord) -> None:
        doc = _load(record)
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
        gate = self._gate(ctx, record)
        self._raise_for(gate, record)
        if gate.action == "existing":
            return None
        body = record.mapped_payload or {}
        return _matching(self._digests(ctx, record, body), body, same_amount=True)

    def post(self, ctx: StepContext, record: SyncRecord) -> str | PostResult:
        body = dict(record.mapped_payload or {})
        gate = self._gate(ctx, record)
        self._raise_for(gate, record)
        if gate.action == "existing":
            return self._edit(ctx, record, body, gate)
        if gate.action == "search":
            # An earlier version's POST may have landed without its id being recorded.
            digests = self._digests(ctx, record, body)
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
                return self._edit(ctx, record, body, _Gate("existing", target_id=found))
        client = self._concur(ctx, record)
        try:
            created = payment_requests(client).create(body)
        finally:
            client.close()
        return PostResult(
            created, "posted", f"created Concur payment request {created} ({_summary(body)})"
        )

    def _raise_for(self, gate: _Gate, record: SyncRecord) -> None:
        if gate.action == "wait":
            # Waiting in the database, not as broker retries: the other version may need the
            # sweeper (a killed worker) and must not use up this one's transient attempts.
            raise ParkError(gate.reason, dependency="document", key=str(gate.sibling_id))
        if gate.action == "void":
            raise DocumentVoided(gate.reason, ["status: void"])

    def _concur(self, ctx: StepContext, record: SyncRecord) -> Any:
        return concur_client(
            ctx.db,
            ctx.settings,
            record.connection_id,
            on_response=audit.recorder(
                ctx.db, record_id=record.id, step="post", task_id=ctx.task_id
            ),
        )

    def _gate(self, ctx: StepContext, record: SyncRecord) -> _Gate:
        """Decide, under the per-document lock, what this version may do; claim the document
        when it is about to call Concur, so two versions never post at once."""
        with ctx.db.session() as session:
            _lock_document(session, record)
            siblings = _siblings(session, record)
            for sib in siblings:
                if _claimed(sib):
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
            _claim(session, record, ctx.owner)
            if with_target:
                newest = max(with_target, key=lambda s: (effective_version(s), s.id))
                in_concur = [
                    s
                    for s in with_target
                    if s.state == S.POSTED and s.target_id == newest.target_id
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
                s
                for s in siblings
                if s.post_attempts > 0 and not s.target_id and s.state != S.POSTED
            ]
            if landed:
                return _Gate("search", sibling_id=landed[0].id)
            return _Gate("create")

    def _digests(
        self, ctx: StepContext, record: SyncRecord, body: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """``paymentrequestdigests?vendorInvoiceNumber=`` for our invoice number (brief §4)."""
        number = str(body.get("InvoiceNumber") or record.stable_ref or "")
        if not number:
            return []
        client = self._concur(ctx, record)
        try:
            return payment_requests(client).by_invoice_number(number)
        finally:
            client.close()

    def _edit(
        self, ctx: StepContext, record: SyncRecord, body: dict[str, Any], gate: _Gate
    ) -> PostResult:
        """An earlier version is in Concur as ``gate.target_id``: leave, update or flag it."""
        target = str(gate.target_id)
        if gate.newer_posted:
            return PostResult(
                target,
                "superseded",
                f"a later version (record {gate.sibling_id}) is already in Concur as {target}; "
                f"version {record.source_version} is older and is not sent",
            )
        if gate.body_in_concur is not None and canonical_json(
            gate.body_in_concur
        ) == canonical_json(body):
            return PostResult(
                target,
                "unchanged",
                f"nothing Concur sees changed since record {gate.sibling_id}; payment request "
                f"{target} is left as it is",
            )
        client = self._concur(ctx, record)
        try:
            resource = payment_requests(client)
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
                _update(ctx, record, outcome="not_changed", message=message, flags=flags,
                        target_id=target)  # fmt: skip
                raise NotEditable(message, system="concur", code="not_editable")
            resource.update(put_body(body, target, current))
        finally:
            client.close()
        if (record.flags or {}).get("needs_attention"):
            flags = {k: v for k, v in (record.flags or {}).items() if k != "needs_attention"}
            _update(ctx, record, flags=flags)
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
    ``same_amount``), checked with ``mappings.payables.matches_existing``."""
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


def _lock_document(session: Session, record: SyncRecord) -> None:
    """Serialise the versions of one document for the rest of this transaction.

    PostgreSQL: a transaction-scoped advisory lock on the document. SQLite: every transaction
    already starts with ``BEGIN IMMEDIATE`` (one writer at a time), which is the same guarantee.
    """
    if session.get_bind().dialect.name != "postgresql":
        session.execute(select(SyncRecord.id).where(SyncRecord.id == record.id))
        return
    digest = hashlib.sha256(f"{FLOW}:{record.connection_id}:{record.source_id}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _siblings(session: Session, record: SyncRecord) -> list[SyncRecord]:
    """The other versions of the record's document, oldest first."""
    return list(
        session.execute(
            select(SyncRecord)
            .where(
                SyncRecord.connection_id == record.connection_id,
                SyncRecord.flow == record.flow,
                SyncRecord.source_id == record.source_id,
                SyncRecord.id != record.id,
            )
            .order_by(SyncRecord.id)
            .execution_options(populate_existing=True)
        )
        .scalars()
        .all()
    )


def _claimed(record: SyncRecord) -> bool:
    """A version that passed the post gate in its current post attempt and has not finished
    (it may be calling Concur right now).

    The claim is the ``post_attempts`` value it was taken in: the pipeline bumps that counter
    every time the post step starts, so a claim left over from an earlier attempt (a retry, a
    resume after waiting) does not count until the gate grants it again.
    """
    claim = (record.flags or {}).get("post_claim")
    return record.state == S.POSTING and claim is not None and claim == record.post_attempts


def _claim(session: Session, record: SyncRecord, owner: str) -> None:
    live = session.get(SyncRecord, record.id, populate_existing=True)
    assert live is not None
    flags = {**(live.flags or {}), "post_claim": live.post_attempts}
    result = session.execute(
        update(SyncRecord)
        .where(SyncRecord.id == record.id, SyncRecord.lease_owner == owner)
        .values(flags=flags, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"record {record.id} is no longer leased by {owner!r}")
    record.flags = flags


def _update(
    ctx: StepContext,
    record: SyncRecord,
    *,
    outcome: str | None = None,
    message: str | None = None,
    **values: Any,
) -> None:
    """Write step side results (flags, references) while we hold the lease, with an audit row."""
    with ctx.db.session() as session:
        result = session.execute(
            update(SyncRecord)
            .where(SyncRecord.id == record.id, SyncRecord.lease_owner == ctx.owner)
            .values(**values, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"record {record.id} is no longer leased by {ctx.owner!r}")
        if outcome:
            ledger.audit(
                session, record, step=record.step, outcome=outcome, message=message,
                task_id=ctx.task_id,
            )  # fmt: skip
    for key, value in values.items():
        setattr(record, key, value)


def _audit(ctx: StepContext, record: SyncRecord, outcome: str, message: str) -> None:
    with ctx.db.session() as session:
        ledger.audit(
            session, record, step=record.step, outcome=outcome, message=message, task_id=ctx.task_id
        )


# --------------------------------------------------------------------------- intake


def ensure_record(
    session: Session,
    connection_id: int,
    kind: str,
    obj: Mapping[str, Any],
    *,
    trigger: str,
) -> tuple[SyncRecord, bool] | None:
    document_id = str(obj.get(f"{kind}_id") or "").strip()
    if not document_id:
        return None
    number = obj.get(f"{kind}_number")
    return ledger.get_or_create(
        session,
        connection_id=connection_id,
        flow=FLOW,
        source_system=SOURCE_SYSTEM,
        source_type=kind,
        source_id=source_id_of(kind, document_id),
        source_version=hint_version(kind, obj),
        target_system=TARGET_SYSTEM,
        source_ref=label(kind, number, _contact_name(kind, obj)),
        stable_ref=str(number).strip() if number else None,
        source_payload={kind: dict(obj)},
        trigger=trigger,
    )


def intake_document(
    session: Session, event: WebhookEvent, payload: dict[str, Any]
) -> intake.IntakeResult:
    """A Zoho ``bill``/``invoice`` webhook: one record per document version (a hint only)."""
    kind = event.event_type or ""
    obj = payload.get(kind)
    if not isinstance(obj, Mapping) or event.connection_id is None:
        return intake.IntakeResult([], ignored=f"no {kind} object in the payload")
    if kind not in _included_kinds(_section_in(session, event.connection_id)):
        return intake.IntakeResult(
            [], ignored=f"{kind}s are not in payables.include for this connection"
        )
    made = ensure_record(session, event.connection_id, kind, obj, trigger="webhook")
    if made is None:
        return intake.IntakeResult([], ignored=f"{kind} payload without {kind}_id")
    record, _created = made
    # Enqueued even when the poll created it first: a second fetch message finds nothing to do.
    return intake.IntakeResult([(record.id, Step.FETCH)])


# --------------------------------------------------------------------------- polling back-stop


def _zoho_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _parse_version_time(version: str) -> dt.datetime | None:
    if not _TIMESTAMP_VERSION.match(version):
        return None
    return dt.datetime.strptime(version, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def poll(db: Database, settings: Settings, connection_id: int) -> sync.PassResult:
    """List bills and invoices changed since the cursor and make sure each version has a record.

    The first pass starts at the connection's creation (older documents are a backfill, not a
    missed webhook). The cursor moves to the newest ``last_modified_time`` seen, only after the
    records are committed; each pass re-reads ``POLL_OVERLAP`` before it.
    """
    with db.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise KeyError(f"no connection {connection_id}")
        created_at = connection.created_at
        section = _section_in(session, connection_id)
    if not section:
        # Not using payables (yet): the back-stop stays quiet. A webhook still creates records,
        # which wait for the rules with a readable reason.
        return sync.PassResult(summary="skipped: the connection has no payables rules")
    kinds = _included_kinds(section)
    cursor = sync.read_cursor(db, connection_id, FLOW)
    start = dt.datetime.fromisoformat(cursor) if cursor else created_at
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    newest = start
    result = sync.PassResult()
    counts: dict[str, tuple[int, int]] = {}
    try:
        client = zoho_client(
            db,
            settings,
            connection_id,
            on_response=audit.recorder(db, connection_id=connection_id, step="poll"),
        )
    except ReauthRequired as exc:  # never connected, or the credential died: nothing to poll
        return sync.PassResult(summary=f"skipped: {exc}")
    try:
        for kind in kinds:
            seen = created = 0
            items = documents(client, kind).iter_all(
                last_modified_time=_zoho_time(start - POLL_OVERLAP)
            )
            for batch in _batches(items, 200):
                with db.session() as session:
                    for obj in batch:
                        made = ensure_record(session, connection_id, kind, obj, trigger="poll")
                        if made is None:
                            continue
                        seen += 1
                        record, is_new = made
                        if is_new:
                            created += 1
                            result.records.append((record.id, Step.FETCH))
                        when = _parse_version_time(record.source_version)
                        if when is not None and when > newest:
                            newest = when
            counts[kind] = (seen, created)
    finally:
        client.close()
    sync.write_cursor(db, connection_id, FLOW, newest.isoformat())
    result.summary = (
        "; ".join(
            f"{kind}s: {seen} seen, {created} new" for kind, (seen, created) in counts.items()
        )
        + f"; cursor {newest.isoformat(timespec='seconds')}"
    )
    return result


def _batches(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


handler = PayablesFlow()

#: What the engine runs for this flow (``flows.FLOWS``).
DEFINITION = Flow(
    handler, intake={("zoho", kind): IntakeHook(intake_document) for kind in KINDS}, poll=poll
)
