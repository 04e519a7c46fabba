"""How payables documents enter the ledger: the Zoho webhook and the polling back-stop (issue #6).

Both name a document and its ``last_modified_time`` and turn it into the same version string, so
they meet on one ledger record; the webhook is only a hint, the fetch step re-reads the document.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from connector import audit, intake, ledger, sync
from connector.config import Settings
from connector.db import Database
from connector.errors import ReauthRequired
from connector.models import Connection, Step, SyncRecord, WebhookEvent
from flows.payables_documents import (
    FLOW,
    SOURCE_SYSTEM,
    TARGET_SYSTEM,
    TIMESTAMP_VERSION,
    contact_name,
    hint_version,
    included_kinds,
    label,
    rules_section,
    source_id_of,
)

#: The back-stop re-reads this many seconds before its cursor (clock skew, late commits in
#: Zoho); the ledger's UNIQUE key makes the overlap harmless.
POLL_OVERLAP = dt.timedelta(seconds=30)


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
        source_ref=label(kind, number, contact_name(kind, obj)),
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
    if kind not in included_kinds(rules_section(session, event.connection_id)):
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


def zoho_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _parse_version_time(version: str) -> dt.datetime | None:
    if not TIMESTAMP_VERSION.match(version):
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
        section = rules_section(session, connection_id)
    if not section:
        # Not using payables (yet): the back-stop stays quiet. A webhook still creates records,
        # which wait for the rules with a readable reason.
        return sync.PassResult(summary="skipped: the connection has no payables rules")
    kinds = included_kinds(section)
    cursor = sync.read_cursor(db, connection_id, FLOW)
    start = dt.datetime.fromisoformat(cursor) if cursor else created_at
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    newest = start
    result = sync.PassResult()
    counts: dict[str, tuple[int, int]] = {}
    try:
        client = audit.audited_zoho(db, settings, connection_id, step="poll")
    except ReauthRequired as exc:  # never connected, or the credential died: nothing to poll
        return sync.PassResult(summary=f"skipped: {exc}")
    try:
        for kind in kinds:
            seen = created = 0
            items = client.documents(kind).iter_all(
                last_modified_time=zoho_time(start - POLL_OVERLAP)
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
