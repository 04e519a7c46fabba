"""The correlation id that ties one record's log lines, API calls and audit rows together."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: Set by a task (one id per record) or a webhook view (Concur's ``Concur-Correlationid``), so
#: every call made on that record's behalf carries the same id without threading it through
#: every function signature. ``None`` means "mint a fresh id per request".
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    """Return a fresh id: uuid4 hex, short enough for headers and log lines."""
    return uuid.uuid4().hex


def current_correlation_id() -> str:
    """Return the id set for this context, or a fresh one when none is set."""
    return correlation_id.get() or new_correlation_id()


@contextmanager
def use_correlation_id(value: str | None = None) -> Iterator[str]:
    """Bind ``value`` (or a fresh id) for the duration of the block and restore the old one.

    Resetting with the token, not setting ``None``, keeps nested blocks (a task calling a step
    that sets its own id) from wiping the outer id.
    """
    cid = value or new_correlation_id()
    token = correlation_id.set(cid)
    try:
        yield cid
    finally:
        correlation_id.reset(token)
