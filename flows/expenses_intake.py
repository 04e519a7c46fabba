"""How an approved Concur report enters the ledger: the ESS event and the polling back-stop (issue #7).

Both name a report and derive the same approval version from its v3 header, so an event and a
poll meet on one ledger record; the event path reads the header in the intake task, never in the
web view, and the poll reuses the list it already has.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from connector import connections, intake, ledger, rules, sync
from connector.config import Settings
from connector.db import Database
from connector.errors import (
    NotFoundError,
    ReauthRequired,
    TokenExpiredError,
)
from connector.models import RecordState, Step, SyncRecord, WebhookEvent
from connector.registry import IntakeHook

log = logging.getLogger(__name__)

FLOW = "expenses"
SOURCE_TYPE = "expense_report"
APPROVED = "A_APPR"
PROCESSING_PAYMENT = "P_PROC"

#: The poll asks for reports modified after its cursor minus this margin: a report written in
#: the same instant as the last one seen is not skipped (the ledger de-duplicates the overlap).
POLL_OVERLAP = dt.timedelta(seconds=60)


# =========================================================================== identity


def stamp(value: Any) -> str | None:
    """A v3 timestamp at millisecond precision, zone dropped (v3 prints UTC without a zone)."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text[:23]
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed.isoformat(timespec="milliseconds")


def approval_version(header: Mapping[str, Any]) -> str | None:
    """The ledger ``source_version`` of a report: which approval of it this is.

    Built from the v3 header's ``ProcessingPaymentDate`` ("completed all approvals") and
    ``SubmitDate``, which the reports list (poll) and the single read (event) both carry, so
    the two triggers compute the same key. A report sent back and re-approved gets a new
    ``ProcessingPaymentDate`` (and a resubmission a new ``SubmitDate``): a new version. Paying
    the report moves neither, so ``P_PAID`` never looks like a new version. ``None`` when the
    report carries neither date (never approved).
    """
    pp, sub = stamp(header.get("ProcessingPaymentDate")), stamp(header.get("SubmitDate"))
    if pp is None and sub is None:
        return None
    return f"pp={pp or '-'};sub={sub or '-'}"


def ensure_record(
    session: Any, connection_id: int, header: Mapping[str, Any], *, trigger: str
) -> tuple[SyncRecord, bool] | None:
    """The record of this report version, created once whoever asks first (event or poll)."""
    version = approval_version(header)
    report_id = str(header.get("ID") or "")
    if version is None or not report_id:
        return None
    return ledger.get_or_create(
        session,
        connection_id=connection_id,
        flow=FLOW,
        source_system="concur",
        source_type=SOURCE_TYPE,
        source_id=report_id,
        source_version=version,
        target_system="zoho",
        source_ref=(str(header.get("Name") or report_id))[:255],
        stable_ref=report_id,
        trigger=trigger,
    )


# =========================================================================== trigger (ESS)


def reaches_approval(facts: Mapping[str, Any], trigger: str) -> bool:
    """Whether a ``statusChanged`` event moves the report into approval, per the setting.

    ``approval``: ``currentApprovalStatus`` becomes ``A_APPR``; ``payment``:
    ``currentPaymentStatus`` becomes ``P_PROC``; ``either``: one of them. "Becomes" means the
    previous value (when the event carries it) was different, so the event Concur sends when it
    pays an approved report (``A_APPR`` -> ``A_APPR``, ``P_PROC`` -> ``P_PAID``) is not an approval.
    """
    approval = facts.get("currentApprovalStatus") == APPROVED and (
        facts.get("previousApprovalStatus") != APPROVED
    )
    payment = facts.get("currentPaymentStatus") == PROCESSING_PAYMENT and (
        facts.get("previousPaymentStatus") != PROCESSING_PAYMENT
    )
    if trigger == "approval":
        return approval
    if trigger == "payment":
        return payment
    return approval or payment


def _describe(facts: Mapping[str, Any]) -> str:
    return (
        f"approval {facts.get('previousApprovalStatus') or '?'} -> "
        f"{facts.get('currentApprovalStatus') or '?'}, payment "
        f"{facts.get('previousPaymentStatus') or '?'} -> {facts.get('currentPaymentStatus') or '?'}"
    )


def prepare_event(
    db: Database, settings: Settings, event: WebhookEvent, payload: dict[str, Any]
) -> dict[str, Any]:
    """Intake, outside any transaction: decide, and for an approval read the report header."""
    facts = payload.get("facts") if isinstance(payload.get("facts"), dict) else {}
    assert isinstance(facts, dict)
    trigger = settings.expenses_approval_trigger
    if not reaches_approval(facts, trigger):
        return {
            "ignored": f"statusChanged without approval ({_describe(facts)}; "
            f"EXPENSES_APPROVAL_TRIGGER={trigger})"
        }
    report_id = str(facts.get("reportId") or "").strip()
    if not report_id:
        return {"ignored": "statusChanged without facts.reportId"}
    if event.connection_id is None:
        return {"ignored": "event is not routed to a connection"}
    if not enabled(db, event.connection_id):
        return {"ignored": NOT_ENABLED}
    try:
        client = connections.concur_client(db, settings, event.connection_id)
        header = client.expense_reports.get(report_id)
    except NotFoundError:
        return {"ignored": f"report {report_id} is not in Concur any more"}
    except (ReauthRequired, TokenExpiredError) as exc:
        return {
            "ignored": f"Concur credential needs re-authorization ({exc}); the expenses poll "
            "picks the report up after the connection is re-authorized"
        }
    return {"header": header}


def handle_event(
    session: Any, event: WebhookEvent, payload: dict[str, Any], prepared: dict[str, Any]
) -> intake.IntakeResult:
    if prepared.get("ignored"):
        return intake.IntakeResult([], ignored=str(prepared["ignored"]))
    header = prepared["header"]
    status = header.get("ApprovalStatusCode")
    if status != APPROVED:
        return intake.IntakeResult(
            [], ignored=f"report {header.get('ID')} is {status} in Concur now, not approved"
        )
    made = ensure_record(
        session, int(event.connection_id or 0), header, trigger=f"ESS event {event.dedupe_key}"
    )
    if made is None:
        return intake.IntakeResult([], ignored=f"report {header.get('ID')} has no approval date")
    record, created = made
    # A record that already exists is on its way (or done): link the event, enqueue nothing new
    # unless it has not started (a duplicate fetch message is harmless; the claim decides).
    if created or record.state == RecordState.RECEIVED.value:
        return intake.IntakeResult([(record.id, Step.FETCH)])
    return intake.IntakeResult([])


HOOKS = {("concur", "statusChanged"): IntakeHook(handle_event, prepare=prepare_event)}


# =========================================================================== poll (back-stop)


def v3_time(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds")


def _parse_v3(value: Any) -> dt.datetime | None:
    text = stamp(value)
    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def enabled(db: Database, connection_id: int) -> bool:
    """The flow runs for a connection once its rules have an ``expenses:`` section.

    A connection that only syncs payables or vendors must not collect expense records that
    would wait forever. Reports approved before the import are found by the first poll after
    it (the cursor does not move while the flow is off).
    """
    return bool(rules.section(db, connection_id, FLOW))


NOT_ENABLED = (
    "the expenses flow is off for this connection (its rules have no expenses: section); "
    "the first poll after `connector mappings import` picks the report up"
)


def poll(db: Database, settings: Settings, connection_id: int) -> sync.PassResult:
    """List approved reports (``A_APPR`` + ``P_PROC``, ``user=ALL``) modified after the cursor.

    The first pass looks back ``EXPENSES_POLL_LOOKBACK_DAYS``. Each report gets its record by
    :func:`ensure_record` from the list item itself (no per-report call); the cursor becomes the
    newest ``LastModifiedDate`` seen, written after the records are committed.
    """
    if not enabled(db, connection_id):
        return sync.PassResult([], NOT_ENABLED)
    cursor = _parse_v3(sync.read_cursor(db, connection_id, FLOW))
    if cursor is None:
        since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(
            days=settings.expenses_poll_lookback_days
        )
    else:
        since = cursor - POLL_OVERLAP
    client = connections.concur_client(db, settings, connection_id)
    items = list(client.expense_reports.iter_approved(modified_after=v3_time(since)))
    records: list[tuple[int, Step]] = []
    newest = cursor
    with db.session() as session:
        for item in items:
            made = ensure_record(session, connection_id, item, trigger="poll")
            if made is not None and made[1]:
                records.append((made[0].id, Step.FETCH))
            modified = _parse_v3(item.get("LastModifiedDate"))
            if modified is not None and (newest is None or modified > newest):
                newest = modified
    if newest is not None and newest != cursor:
        sync.write_cursor(db, connection_id, FLOW, v3_time(newest))
    return sync.PassResult(
        records, f"{len(items)} approved report(s) listed, {len(records)} new record(s)"
    )
