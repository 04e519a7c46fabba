"""Pipeline tasks: one per (queue, step), each a few lines around ``connector.pipeline``.

A record's chain is built one link at a time: each step, when it succeeds, enqueues the next on
the queue of the vendor that step calls. Building it lazily is what lets a replay, the sweeper
or a re-authorization restart a record at the step where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celeryconfig import QUEUES, STEPS
from connector.models import Step
from flows import FLOWS
from tasks.base import ConnectorTask
from tasks.celery import app


def task_name(queue: str, step: str) -> str:
    return f"pipeline.{queue}.{step}"


def enqueue(record_id: int, step: Step | str, *, countdown: float | None = None) -> str:
    """Send the task that runs ``step`` of the record on its vendor's queue; returns the task id.

    The id is deterministic per record version and step (brief §4.1), so a duplicate enqueue of
    the same step is recognisable in Flower and harmless: the second delivery finds nothing to
    claim.
    """
    step = Step(step)
    db = pipeline_db()
    queue, task_id = FLOWS.route(db, record_id, step)
    app.send_task(
        task_name(queue, step.value),
        args=[record_id, step.value],
        task_id=task_id,
        queue=queue,
        countdown=countdown,
    )
    return task_id


def enqueue_all(steps: Iterable[tuple[int, Step | str]]) -> int:
    """Send each ``(record_id, step)`` with ``enqueue``; returns how many were sent.

    The one loop every producer of a batch uses (intake, ``connector sync``, a backfill page,
    records resumed after re-authorization), so each sends exactly what ``enqueue`` sends.
    """
    sent = 0
    for record_id, step in steps:
        enqueue(record_id, step)
        sent += 1
    return sent


def pipeline_db() -> Any:
    from connector.db import get_database

    return get_database()


def _run(task: ConnectorTask, record_id: int, step: str) -> dict[str, Any]:
    result = FLOWS.run_step(
        task.db,
        record_id,
        Step(step),
        owner=task.owner,
        lease_seconds=task.lease_seconds,
        task_id=task.request.id,
    )
    if result.action == "next" and result.next_step is not None:
        enqueue(record_id, result.next_step)
    elif result.action == "retry":
        raise task.retry(countdown=result.countdown)
    return {"record_id": record_id, "action": result.action, "state": result.state}


def _make_task(queue: str, step: str) -> None:
    @app.task(base=ConnectorTask, bind=True, name=task_name(queue, step))
    def run(self: ConnectorTask, record_id: int, step: str = step) -> dict[str, Any]:
        return _run(self, record_id, step)


for _queue in QUEUES:
    for _step in STEPS:
        _make_task(_queue, _step)
