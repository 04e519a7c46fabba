"""Records as an operator sees them: one-line summaries, the full story of one record, a link to
what was posted. The CLI, ``celery -A tasks dead`` and ``/ops`` all show records through these,
so the three front ends agree on what a record looks like."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from connector.db import Database
from connector.models import AuditEvent, Connection, Credential, SyncRecord
from connector.operations import (
    PROBLEM_STATES,
    REPLAYABLE_STATES,
    OperationError,
    connection_names,
    iso,
    select_records,
)
from connector.operations.problems import fix_hint

if TYPE_CHECKING:
    pass


def summarize(record: SyncRecord, connection_name: str | None = None) -> dict[str, Any]:
    """One line's worth of a record (lists, JSON output, alert samples)."""
    return {
        "id": record.id,
        "connection_id": record.connection_id,
        "connection": connection_name,
        "flow": record.flow,
        "source": f"{record.source_system} {record.source_type}",
        "source_id": record.source_id,
        "source_ref": record.source_ref,
        "source_version": record.source_version,
        "state": record.state,
        "step": record.step,
        "attempts": record.attempts,
        "post_attempts": record.post_attempts,
        "target_system": record.target_system,
        "target_id": record.target_id,
        "last_error_code": record.last_error_code,
        "last_error_message": record.last_error_message,
        "next_attempt_at": iso(record.next_attempt_at),
        "waiting_since": iso(record.waiting_since),
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "posted_at": iso(record.posted_at),
    }


def list_records(
    db: Database,
    *,
    connection: str | int | None = None,
    flow: str | None = None,
    state: str | Iterable[str] | None = None,
    since: dt.datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first (by last change)."""
    states = [state] if isinstance(state, str) else state
    with db.session() as session:
        stmt = select_records(session, connection=connection, flow=flow, states=states, since=since)
        records = (
            session.execute(
                stmt.order_by(SyncRecord.updated_at.desc(), SyncRecord.id.desc()).limit(limit)
            )
            .scalars()
            .all()
        )
        names = connection_names(session, {r.connection_id for r in records})
        return [summarize(r, names.get(r.connection_id)) for r in records]


def show_record(db: Database, record_id: int, *, sandbox_url: str | None = None) -> dict[str, Any]:
    """Everything about one record: summary, payloads, audit trail, target link, fix hint."""
    with db.session() as session:
        record = session.get(SyncRecord, record_id)
        if record is None:
            raise OperationError(f"no record {record_id}")
        connection = session.get(Connection, record.connection_id)
        trail = (
            session.execute(
                select(AuditEvent).where(AuditEvent.record_id == record_id).order_by(AuditEvent.id)
            )
            .scalars()
            .all()
        )
        api_base = None
        if record.target_system in ("zoho", "concur"):
            api_base = session.execute(
                select(Credential.api_base_url).where(
                    Credential.connection_id == record.connection_id,
                    Credential.system == record.target_system,
                )
            ).scalar_one_or_none()
        out = summarize(record, connection.name if connection else None)
        error_class = next((a.error_class for a in reversed(trail) if a.error_class), None)
        out.update(
            stable_ref=record.stable_ref,
            source_payload=record.source_payload,
            mapped_payload=record.mapped_payload,
            error_class=error_class,
            hint=fix_hint(record.state, record.last_error_code, error_class, connection)
            if record.state in {s.value for s in PROBLEM_STATES}
            else None,
            target_url=target_url(record, connection, sandbox_url=sandbox_url, api_base=api_base),
            replayable=record.state in {s.value for s in REPLAYABLE_STATES},
            audit=[_audit_dict(a) for a in trail],
        )
        return out


def _audit_dict(a: AuditEvent) -> dict[str, Any]:
    return {
        "id": a.id,
        "at": iso(a.at),
        "step": a.step,
        "outcome": a.outcome,
        "from_state": a.from_state,
        "to_state": a.to_state,
        "message": a.message,
        "error_class": a.error_class,
        "http": " ".join(str(p) for p in (a.http_method, a.http_path, a.http_status) if p) or None,
        "duration_ms": a.duration_ms,
        "request_id": a.request_id,
        "task_id": a.task_id,
        "details": a.details,
    }


# =========================================================================== target links


_ZOHO_BOOKS_HOSTS = {
    "zohoapis.com": "books.zoho.com",
    "zohoapis.eu": "books.zoho.eu",
    "zohoapis.in": "books.zoho.in",
    "zohoapis.com.au": "books.zoho.com.au",
    "zohoapis.jp": "books.zoho.jp",
    "zohoapis.ca": "books.zohocloud.ca",
    "zohoapis.com.cn": "books.zoho.com.cn",
    "zohoapis.sa": "books.zoho.sa",
}


def target_url(
    record: SyncRecord,
    connection: Connection | None,
    *,
    sandbox_url: str | None = None,
    api_base: str | None = None,
) -> str | None:
    """A link a person can open to see the posted object, when one can be built.

    Sandbox mode links into the sandbox's page for the organization. Zoho Books links use the
    data centre of the connection's ``api_domain``. Concur has no stable deep link to a payment
    request or vendor, so none is given (the id is shown instead).
    """
    if not record.target_id or record.target_system not in ("zoho", "concur"):
        return None
    if sandbox_url:
        if record.target_system == "zoho" and connection and connection.zoho_organization_id:
            return f"{sandbox_url}/?org={connection.zoho_organization_id}"
        return f"{sandbox_url}/"
    if record.target_system != "zoho" or connection is None or not connection.zoho_organization_id:
        return None
    host = "books.zoho.com"
    if api_base:
        for suffix, books in _ZOHO_BOOKS_HOSTS.items():
            if api_base.rstrip("/").endswith(suffix):
                host = books
    section = {"expenses": "journals", "vendors": "contacts"}.get(record.flow, "journals")
    return f"https://{host}/app/{connection.zoho_organization_id}#/{section}/{record.target_id}"
