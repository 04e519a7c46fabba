"""One table decides what a step's error does to its record (issue #16, "one error policy").

The vendors' codes are translated into classes of ``connector/errors.py`` in one place per vendor
(``connector/zoho/errors.py``, ``connector/concur/errors.py``); this table takes it from there:
each class maps to an action, the state the record goes to and the clock its next attempt waits
on, in the spirit of Airbyte's response-to-action table. ``pipeline._handle_error`` is a lookup
here plus one function per action, so a reader who wants to know "what happens to a record when
Concur answers 403" reads two tables, not a ladder of ``isinstance`` checks.

Order matters: the first row whose class matches wins, so a subclass with a different outcome
(``QuotaExhaustedError`` under ``RateLimitedError``) comes before its parent. Errors that are not
a record's outcome (a bad configuration, an illegal transition: our bug) have no row and are
re-raised, so they reach the task's log and the worker's error handling instead of being filed
as a vendor's refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connector.errors import (
    ApiError,
    ConnectorError,
    FatalError,
    ParkError,
    QuotaExhaustedError,
    ReauthRequired,
    RetryableError,
    TokenExpiredError,
    ValidationFailed,
)
from connector.models import RecordState


class Action(StrEnum):
    """What the pipeline does with the record; one applier per member in ``pipeline``."""

    PARK_UNTIL = "park_until"  # wait in the ledger until the error's retry_after has passed
    PARK = "park"  # wait on the waiting back-off; dead after waiting_give_up
    REAUTH = "reauth"  # the connection needs an operator; the record waits behind it
    FAIL = "fail"  # definitive; the vendor's message is the reason
    RETRY = "retry"  # same step again after a countdown; dead after MAX_TRANSIENT_ATTEMPTS


class Clock(StrEnum):
    """Which delay schedules the next attempt (``connector/backoff.py``)."""

    RETRY_AFTER = "retry_after"  # the error's own hint (quota renewal, Retry-After)
    WAITING = "waiting"  # backoff.schedules().waiting: minutes to hours
    TRANSIENT = "transient"  # backoff.schedules().transient, or the 429's Retry-After
    NONE = "none"  # no next attempt without a person


@dataclass(frozen=True)
class Rule:
    errors: tuple[type[ConnectorError], ...]
    action: Action
    state: RecordState | None  # None: the record keeps its state (a retry of the same step)
    clock: Clock
    why: str


POLICY: tuple[Rule, ...] = (
    Rule(
        (QuotaExhaustedError,),
        Action.PARK_UNTIL,
        RecordState.WAITING,
        Clock.RETRY_AFTER,
        "the organization's daily quota is spent; a broker countdown would not survive the wait",
    ),
    Rule(
        (ParkError,),
        Action.PARK,
        RecordState.WAITING,
        Clock.WAITING,
        "a dependency is missing (mapping, vendor, remit-to address); a person or a later "
        "record supplies it",
    ),
    Rule(
        (ReauthRequired, TokenExpiredError),
        Action.REAUTH,
        RecordState.NEEDS_REAUTH,
        Clock.NONE,
        "the credential is dead; only an operator's re-authorization cures it",
    ),
    Rule(
        (ValidationFailed, FatalError),
        Action.FAIL,
        RecordState.FAILED,
        Clock.NONE,
        "the payload or the vendor's answer is definitive; sending it again changes nothing",
    ),
    Rule(
        (RetryableError,),
        Action.RETRY,
        None,
        Clock.TRANSIENT,
        "5xx, timeouts, 429 and our own limiter: the same step later usually succeeds",
    ),
    Rule(
        (ApiError,),
        Action.FAIL,
        RecordState.FAILED,
        Clock.NONE,
        "any other API error (a request we could not build) is treated as definitive",
    ),
)


def decide(exc: ConnectorError) -> Rule | None:
    """The first matching rule, or ``None`` for an error that is not a record's outcome."""
    for rule in POLICY:
        if isinstance(exc, rule.errors):
            return rule
    return None
