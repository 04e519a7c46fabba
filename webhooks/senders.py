"""Which callable a view uses to put work on the broker: the app config's, or the task layer's.

The views never build a Celery message themselves: a record step goes through
``tasks.pipeline.enqueue`` and a webhook event through ``tasks.intake.enqueue_event``, the same
functions the CLI and ``celery -A tasks dead`` use. A test (or an embedded set-up) swaps them by
setting the config key (``ENQUEUE_RECORD``, ``OPS_ENQUEUE``, ``ENQUEUE_EVENT``,
``OPS_ENQUEUE_EVENT``). Celery is imported only when a default is first needed, so an app built
with its own callables never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app


def _record_step() -> Callable[[int, str], Any]:
    from tasks.pipeline import enqueue

    return enqueue


def _event() -> Callable[[int], Any]:
    from tasks.intake import enqueue_event

    return enqueue_event


_DEFAULTS: dict[str, Callable[[], Callable[..., Any]]] = {
    "ENQUEUE_RECORD": _record_step,
    "OPS_ENQUEUE": _record_step,
    "ENQUEUE_EVENT": _event,
    "OPS_ENQUEUE_EVENT": _event,
}


def sender(key: str) -> Callable[..., Any]:
    """The callable configured under ``key``, or the task layer's default for it."""
    fn = current_app.config.get(key)
    return fn if fn is not None else _DEFAULTS[key]()
