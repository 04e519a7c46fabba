"""The generic pipeline: runs one step of one record through the ledger, no Celery needed.

Every task in ``tasks/pipeline.py`` is a thin wrapper around ``run_step``; a test or a shell can
call it directly. The function claims the record, runs the flow's step *outside* any database
transaction (steps call Zoho or Concur), then records the outcome in one short transaction, and
returns what the caller should do next: run the next step, retry after a countdown, or stop.

Posting follows brief §4: commit ``posting`` (and bump ``post_attempts``) before the POST; a
record whose earlier POST may have landed searches the target by its stable reference first and
adopts what it finds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from connector import backoff, flows, ledger
from connector.config import Settings, get_settings
from connector.connections import mark_needs_reauth_in, reauthorized_meanwhile
from connector.db import Database, utcnow
from connector.errors import (
    ApiError,
    ConnectorError,
    FatalError,
    LeaseLost,
    ParkError,
    QuotaExhaustedError,
    RateLimitedError,
    ReauthRequired,
    RetryableError,
    TokenExpiredError,
    ValidationFailed,
)
from connector.models import RecordState, Step, SyncRecord

log = logging.getLogger(__name__)
S = RecordState


@dataclass(frozen=True)
class StepResult:
    """What the task should do after a step.

    ``action``: ``next`` (enqueue ``next_step``), ``retry`` (retry this step after
    ``countdown`` seconds), ``done`` (record finished or parked; nothing to enqueue), ``skip``
    (someone else owns the record or it already moved on: a duplicate message).
    """

    action: str
    record_id: int
    next_step: Step | None = None
    countdown: float = 0.0
    state: str | None = None


def run_step(
    db: Database,
    record_id: int,
    step: Step,
    *,
    owner: str,
    lease_seconds: float,
    task_id: str | None = None,
    settings: Settings | None = None,
) -> StepResult:
    ctx = flows.StepContext(db, settings or get_settings(), owner, task_id)
    with db.session() as session:
        record = ledger.claim(session, record_id, step, owner, lease_seconds=lease_seconds)
        if record is None:
            current = session.get(SyncRecord, record_id)
            log.info(
                "record %s: nothing to do for step %s (state %s, step %s)",
                record_id,
                step,
                current.state if current else "missing",
                current.step if current else "-",
            )
            return StepResult("skip", record_id, state=current.state if current else None)
        session.expunge(record)
    handler = flows.get(record.flow)
    try:
        return _run(ctx, handler, record, step)
    except LeaseLost:
        log.warning("record %s: lease lost during %s; the new owner carries on", record_id, step)
        return StepResult("skip", record_id)
    except ConnectorError as exc:
        return _handle_error(
            db, record, step, exc, owner=owner, task_id=task_id, settings=ctx.settings
        )


def _run(
    ctx: flows.StepContext, handler: flows.FlowHandler, record: SyncRecord, step: Step
) -> StepResult:
    db, owner, task_id = ctx.db, ctx.owner, ctx.task_id

    def advance(to_state: RecordState, next_step: Step, **fields: Any) -> StepResult:
        with db.session() as session:
            live = session.get(SyncRecord, record.id)
            assert live is not None
            fields.setdefault("attempts", 0)
            ledger.transition(
                session,
                live,
                to_state,
                owner=owner,
                step=next_step,
                task_id=task_id,
                audit_step=step.value,
                outcome="ok",
                **fields,
            )
        return StepResult("next", record.id, next_step=next_step, state=to_state.value)

    if step is Step.FETCH:
        return advance(S.FETCHED, Step.MAP, source_payload=handler.fetch(ctx, record))
    if step is Step.MAP:
        return advance(S.MAPPED, Step.VALIDATE, mapped_payload=handler.map(ctx, record))
    if step is Step.VALIDATE:
        handler.validate(ctx, record)
        return advance(S.VALIDATED, Step.POST)
    if step is Step.POST:
        return _post(ctx, handler, record)
    if step is Step.AUDIT:
        with db.session() as session:
            live = session.get(SyncRecord, record.id)
            assert live is not None
            ledger.audit(
                session,
                live,
                step="audit",
                outcome="completed",
                task_id=task_id,
                message=f"{live.source_type} {live.source_ref or live.source_id} -> "
                f"{live.target_system} {live.target_id}",
            )
            ledger.release(session, record.id, owner)
        return StepResult("done", record.id, state=S.POSTED.value)
    raise ValueError(f"unknown step {step!r}")


def _post(ctx: flows.StepContext, handler: flows.FlowHandler, record: SyncRecord) -> StepResult:
    db, owner, task_id = ctx.db, ctx.owner, ctx.task_id
    may_have_landed = record.post_attempts > 0
    # 1. Commit "posting" before the POST, so a crash after the vendor accepted it leaves a trace.
    with db.session() as session:
        live = session.get(SyncRecord, record.id)
        assert live is not None
        ledger.begin_post(
            session,
            live,
            owner=owner,
            task_id=task_id,
            message=f"stable reference {live.stable_ref!r}"
            + ("; an earlier POST may have landed, searching first" if may_have_landed else ""),
        )
        record.post_attempts = live.post_attempts
    # 2. Search before a second POST; 3. the POST itself, outside any transaction.
    target_id = handler.find_existing(ctx, record) if may_have_landed else None
    adopted = target_id is not None
    outcome, note = ("adopted", None) if adopted else ("posted", None)
    if target_id is None:
        posted = handler.post(ctx, record)
        # A handler may say more than "created": updated in place, unchanged, superseded.
        if isinstance(posted, flows.PostResult):
            target_id, outcome, note = posted.target_id, posted.outcome, posted.message
        else:
            target_id = posted
    # 4. Commit "posted" with the target id.
    with db.session() as session:
        live = session.get(SyncRecord, record.id)
        assert live is not None
        ledger.transition(
            session,
            live,
            S.POSTED,
            owner=owner,
            step=Step.AUDIT,
            task_id=task_id,
            audit_step="post",
            outcome=outcome,
            message=note
            or (
                f"found existing {live.target_system} object {target_id} by reference; not posted again"
                if adopted
                else f"created {live.target_system} object {target_id}"
            ),
            target_id=target_id,
            attempts=0,
        )
    return StepResult("next", record.id, next_step=Step.AUDIT, state=S.POSTED.value)


def _handle_error(
    db: Database,
    record: SyncRecord,
    step: Step,
    exc: ConnectorError,
    *,
    owner: str,
    task_id: str | None,
    settings: Settings | None = None,
) -> StepResult:
    now = utcnow()
    clocks = backoff.schedules(settings)
    error_class = type(exc).__name__
    message = str(exc)
    code = str(getattr(exc, "code", None) or error_class)
    with db.session() as session:
        live = session.get(SyncRecord, record.id, populate_existing=True)
        assert live is not None
        # A POST that failed ambiguously stays "posting" so the retry searches first; any other
        # step goes back to the state it starts from.
        if isinstance(exc, QuotaExhaustedError):
            ledger.park(
                session,
                live,
                owner=owner,
                reason=f"daily API quota spent: {message}",
                next_attempt_at=now + dt.timedelta(seconds=exc.retry_after),
                code="quota",
                error_class=error_class,
                task_id=task_id,
            )
            return StepResult("done", record.id, state=S.WAITING.value)
        if isinstance(exc, ParkError):
            waited = now - (live.waiting_since or now)
            if waited >= clocks.waiting_give_up:
                ledger.transition(
                    session,
                    live,
                    S.DEAD,
                    owner=owner,
                    message=f"gave up after {waited}: {message}",
                    error_code=exc.dependency or "waiting",
                    error_class=error_class,
                    task_id=task_id,
                )
                return StepResult("done", record.id, state=S.DEAD.value)
            delay = clocks.waiting.delay(live.attempts)
            ledger.park(
                session,
                live,
                owner=owner,
                reason=message,
                next_attempt_at=now + dt.timedelta(seconds=delay),
                code=exc.dependency or "waiting",
                error_class=error_class,
                task_id=task_id,
            )
            return StepResult("done", record.id, state=S.WAITING.value)
        if isinstance(exc, ReauthRequired | TokenExpiredError):
            system = getattr(exc, "system", None) or None
            if (
                getattr(exc, "recorded", False)
                and live.attempts < backoff.MAX_TRANSIENT_ATTEMPTS
                and reauthorized_meanwhile(session, live.connection_id, system)
            ):
                # The side was re-authorized while this step ran: the refusal was about the
                # credential it replaced. Run the step again with the new one rather than park
                # the record (and mark the fresh credential dead) behind a working connection.
                countdown = clocks.transient.delay(0)
                note = (
                    f"{message} (the {system} credential was re-authorized while this step "
                    "ran; retrying with it)"
                )
                ledger.audit(
                    session, live, step=step.value, outcome="retry", message=note,
                    error_class=error_class, task_id=task_id,
                    details={"countdown": round(countdown, 3), "attempt": live.attempts},
                )  # fmt: skip
                ledger.release(session, live.id, owner)
                return StepResult(
                    "retry", record.id, next_step=step, countdown=countdown, state=live.state
                )
            ledger.transition(
                session,
                live,
                S.NEEDS_REAUTH,
                owner=owner,
                message=message,
                error_code=code,
                error_class=error_class,
                task_id=task_id,
            )
            _mark_connection_needs_reauth(
                session, live.connection_id, message, getattr(exc, "system", None)
            )
            return StepResult("done", record.id, state=S.NEEDS_REAUTH.value)
        if isinstance(exc, ValidationFailed | FatalError):
            ledger.transition(
                session,
                live,
                S.FAILED,
                owner=owner,
                message=message,
                error_code=code,
                error_class=error_class,
                task_id=task_id,
                details={"errors": exc.errors} if isinstance(exc, ValidationFailed) else None,
            )
            return StepResult("done", record.id, state=S.FAILED.value)
        if isinstance(exc, RetryableError):
            # Our own limiter said "wait": nothing was sent and nothing failed. Give back the
            # attempt the claim took, so pacing never counts towards going dead.
            paced = isinstance(exc, RateLimitedError) and exc.local
            if not paced and live.attempts >= backoff.MAX_TRANSIENT_ATTEMPTS:
                ledger.transition(
                    session,
                    live,
                    S.DEAD,
                    owner=owner,
                    message=f"retries exhausted after {live.attempts} attempts: {message}",
                    error_code=code,
                    error_class=error_class,
                    task_id=task_id,
                )
                return StepResult("done", record.id, state=S.DEAD.value)
            if isinstance(exc, RateLimitedError) and exc.retry_after > 0:
                countdown = exc.retry_after
            else:
                countdown = clocks.transient.delay(live.attempts)
            ledger.audit(
                session,
                live,
                step=step.value,
                outcome="retry",
                message=message,
                error_class=error_class,
                task_id=task_id,
                http_status=getattr(exc, "status", None),
                request_id=getattr(exc, "request_id", None),
                details={"countdown": round(countdown, 3), "attempt": live.attempts},
            )
            session.execute(
                update(SyncRecord)
                .where(SyncRecord.id == live.id, SyncRecord.lease_owner == owner)
                .values(
                    lease_owner=None,
                    lease_expires_at=None,
                    last_error_code=code,
                    last_error_message=message,
                    updated_at=now,
                    **({"attempts": max(0, live.attempts - 1)} if paced else {}),
                )
            )
            return StepResult(
                "retry", record.id, next_step=step, countdown=countdown, state=live.state
            )
        if isinstance(exc, ApiError):  # any other API error: treat as definitive
            ledger.transition(
                session,
                live,
                S.FAILED,
                owner=owner,
                message=message,
                error_code=code,
                error_class=error_class,
                task_id=task_id,
            )
            return StepResult("done", record.id, state=S.FAILED.value)
        raise exc


def _mark_connection_needs_reauth(
    session: Any, connection_id: int, reason: str, system: str | None = None
) -> None:
    # One alert per connection, however many records hit the dead credential.
    mark_needs_reauth_in(session, connection_id, reason, system=system or None)


def due_for_redrive(
    db: Database, *, stale_after: float, limit: int = 500
) -> list[tuple[int, Step]]:
    """The sweeper: resume due waiting records and free expired leases; returns what to enqueue."""
    out: list[tuple[int, Step]] = []
    with db.session() as session:
        for record in ledger.due_waiting(session, limit=limit):
            try:
                ledger.resume(session, record, reason="back-off elapsed; retrying")
            except LeaseLost:
                continue
            out.append((record.id, Step(record.step)))
        for record in ledger.expired_leases(session, stale_after=stale_after, limit=limit):
            if record.attempts >= backoff.MAX_TRANSIENT_ATTEMPTS:
                with contextlib.suppress(LeaseLost):
                    ledger.transition(
                        session,
                        record,
                        S.DEAD,
                        owner=None,
                        message=f"re-driven {record.attempts} times without finishing step {record.step!r}",
                        error_code="stuck",
                    )
                continue
            if ledger.take_over(session, record):
                out.append((record.id, Step(record.step)))
    return out


def route(db: Database, record_id: int, step: Step) -> tuple[str, str]:
    """Queue and deterministic task id for running ``step`` of a record."""
    with db.session() as session:
        record = session.get(SyncRecord, record_id)
        if record is None:
            raise KeyError(f"no record {record_id}")
        return flows.get(record.flow).queue_for(step.value), f"{record.task_id}:{step.value}"
