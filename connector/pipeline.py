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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from connector import backoff, error_policy, ledger
from connector.config import Settings, get_settings
from connector.connections import mark_needs_reauth_in, reauthorized_meanwhile
from connector.db import Database, utcnow
from connector.error_policy import Action
from connector.errors import (
    ConnectorError,
    LeaseLost,
    QuotaExhaustedError,
    RateLimitedError,
    ValidationFailed,
)
from connector.models import RecordState, Step, SyncRecord
from connector.steps import FlowHandler, PostResult, StepContext

if TYPE_CHECKING:
    from connector.registry import Registry

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
    registry: Registry,
    owner: str,
    lease_seconds: float,
    task_id: str | None = None,
    settings: Settings | None = None,
) -> StepResult:
    ctx = StepContext(db, settings or get_settings(), owner, task_id)
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
    handler = registry.handler(record.flow)
    try:
        return _run(ctx, handler, record, step)
    except LeaseLost:
        log.warning("record %s: lease lost during %s; the new owner carries on", record_id, step)
        return StepResult("skip", record_id)
    except ConnectorError as exc:
        return _handle_error(
            db, record, step, exc, owner=owner, task_id=task_id, settings=ctx.settings
        )


def _run(ctx: StepContext, handler: FlowHandler, record: SyncRecord, step: Step) -> StepResult:
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


def _post(ctx: StepContext, handler: FlowHandler, record: SyncRecord) -> StepResult:
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
        if isinstance(posted, PostResult):
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


@dataclass
class _Failure:
    """One failed step, as the appliers below see it."""

    session: Any
    live: SyncRecord
    step: Step
    exc: ConnectorError
    owner: str
    task_id: str | None
    clocks: backoff.Schedules
    now: dt.datetime

    @property
    def error_class(self) -> str:
        return type(self.exc).__name__

    @property
    def message(self) -> str:
        return str(self.exc)

    @property
    def code(self) -> str:
        return str(getattr(self.exc, "code", None) or self.error_class)

    def done(self, state: RecordState) -> StepResult:
        return StepResult("done", self.live.id, state=state.value)

    def retry(self, countdown: float) -> StepResult:
        return StepResult(
            "retry", self.live.id, next_step=self.step, countdown=countdown, state=self.live.state
        )

    def to(self, state: RecordState, message: str, **fields: Any) -> StepResult:
        ledger.transition(
            self.session,
            self.live,
            state,
            owner=self.owner,
            message=message,
            error_class=self.error_class,
            task_id=self.task_id,
            **fields,
        )
        return self.done(state)


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
    """Look the error up in ``error_policy.POLICY`` and apply the rule's action."""
    rule = error_policy.decide(exc)
    if rule is None:
        raise exc
    with db.session() as session:
        live = session.get(SyncRecord, record.id, populate_existing=True)
        assert live is not None
        failure = _Failure(
            session, live, step, exc, owner, task_id, backoff.schedules(settings), utcnow()
        )
        return _APPLY[rule.action](failure)


def _park_until(f: _Failure) -> StepResult:
    assert isinstance(f.exc, QuotaExhaustedError)
    ledger.park(
        f.session,
        f.live,
        owner=f.owner,
        reason=f"daily API quota spent: {f.message}",
        next_attempt_at=f.now + dt.timedelta(seconds=f.exc.retry_after),
        code="quota",
        error_class=f.error_class,
        task_id=f.task_id,
    )
    return f.done(S.WAITING)


def _park(f: _Failure) -> StepResult:
    dependency = getattr(f.exc, "dependency", None) or "waiting"
    waited = f.now - (f.live.waiting_since or f.now)
    if waited >= f.clocks.waiting_give_up:
        return f.to(S.DEAD, f"gave up after {waited}: {f.message}", error_code=dependency)
    ledger.park(
        f.session,
        f.live,
        owner=f.owner,
        reason=f.message,
        next_attempt_at=f.now + dt.timedelta(seconds=f.clocks.waiting.delay(f.live.attempts)),
        code=dependency,
        error_class=f.error_class,
        task_id=f.task_id,
    )
    return f.done(S.WAITING)


def _reauth(f: _Failure) -> StepResult:
    system = getattr(f.exc, "system", None) or None
    if (
        getattr(f.exc, "recorded", False)
        and f.live.attempts < backoff.MAX_TRANSIENT_ATTEMPTS
        and reauthorized_meanwhile(f.session, f.live.connection_id, system)
    ):
        # The side was re-authorized while this step ran: the refusal was about the credential
        # it replaced. Run the step again with the new one rather than park the record (and mark
        # the fresh credential dead) behind a working connection.
        countdown = f.clocks.transient.delay(0)
        note = (
            f"{f.message} (the {system} credential was re-authorized while this step "
            "ran; retrying with it)"
        )
        ledger.audit(
            f.session, f.live, step=f.step.value, outcome="retry", message=note,
            error_class=f.error_class, task_id=f.task_id,
            details={"countdown": round(countdown, 3), "attempt": f.live.attempts},
        )  # fmt: skip
        ledger.release(f.session, f.live.id, f.owner)
        return f.retry(countdown)
    result = f.to(S.NEEDS_REAUTH, f.message, error_code=f.code)
    # One alert per connection, however many records hit the dead credential.
    mark_needs_reauth_in(f.session, f.live.connection_id, f.message, system=system)
    return result


def _fail(f: _Failure) -> StepResult:
    details = {"errors": f.exc.errors} if isinstance(f.exc, ValidationFailed) else None
    return f.to(S.FAILED, f.message, error_code=f.code, details=details)


def _retry(f: _Failure) -> StepResult:
    exc, live = f.exc, f.live
    # Our own limiter said "wait": nothing was sent and nothing failed. Give back the attempt
    # the claim took, so pacing never counts towards going dead.
    paced = isinstance(exc, RateLimitedError) and exc.local
    if not paced and live.attempts >= backoff.MAX_TRANSIENT_ATTEMPTS:
        return f.to(
            S.DEAD,
            f"retries exhausted after {live.attempts} attempts: {f.message}",
            error_code=f.code,
        )
    if isinstance(exc, RateLimitedError) and exc.retry_after > 0:
        countdown = exc.retry_after
    else:
        countdown = f.clocks.transient.delay(live.attempts)
    ledger.audit(
        f.session,
        live,
        step=f.step.value,
        outcome="retry",
        message=f.message,
        error_class=f.error_class,
        task_id=f.task_id,
        http_status=getattr(exc, "status", None),
        request_id=getattr(exc, "request_id", None),
        details={"countdown": round(countdown, 3), "attempt": live.attempts},
    )
    f.session.execute(
        update(SyncRecord)
        .where(SyncRecord.id == live.id, SyncRecord.lease_owner == f.owner)
        .values(
            lease_owner=None,
            lease_expires_at=None,
            last_error_code=f.code,
            last_error_message=f.message,
            updated_at=f.now,
            **({"attempts": max(0, live.attempts - 1)} if paced else {}),
        )
    )
    return f.retry(countdown)


_APPLY: dict[Action, Callable[[_Failure], StepResult]] = {
    Action.PARK_UNTIL: _park_until,
    Action.PARK: _park,
    Action.REAUTH: _reauth,
    Action.FAIL: _fail,
    Action.RETRY: _retry,
}


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


def route(db: Database, record_id: int, step: Step, *, registry: Registry) -> tuple[str, str]:
    """Queue and deterministic task id for running ``step`` of a record."""
    with db.session() as session:
        record = session.get(SyncRecord, record_id)
        if record is None:
            raise KeyError(f"no record {record_id}")
        return registry.handler(record.flow).queue_for(step.value), f"{record.task_id}:{step.value}"
