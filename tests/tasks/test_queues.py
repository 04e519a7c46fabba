"""Every queue a task can be routed to is consumed by every worker we tell people to run.

The back-stops (sweeper, token refresh, alerts) have a queue of their own (issue #21): a sweep
queued behind the backlog it exists to rescue expired unrun. A queue that no worker consumes
would be worse: the sweeper would never run at all, with nothing failing loudly.
"""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path

import celeryconfig
from bench.harness import Bench
from bench.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def _queues_of(command: str) -> set[str]:
    argv = shlex.split(command)
    return set(argv[argv.index("-Q") + 1].split(","))


def test_back_stops_are_routed_to_their_own_queue() -> None:
    from tasks.celery import app

    for name in ("maintenance.sweep", "maintenance.refresh_tokens", "maintenance.alerts"):
        route = app.amqp.router.route({}, name)
        assert route["queue"].name == celeryconfig.MAINTENANCE_QUEUE, name
    assert app.amqp.router.route({}, "intake.process")["queue"].name == "default"


def test_the_procfile_worker_consumes_every_declared_queue() -> None:
    declared = {queue.name for queue in celeryconfig.task_queues}
    assert declared == set(celeryconfig.WORKER_QUEUES)
    worker = next(
        line.split(":", 1)[1] for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("worker:")
    )  # fmt: skip
    assert _queues_of(worker) == declared


def test_connector_run_and_the_test_and_bench_workers_consume_every_queue() -> None:
    """One worker start-up (``tasks/launch.py``) for ``connector run``, the bench and the tests."""
    from tasks import launch

    assert launch.QUEUES.split(",") == list(celeryconfig.WORKER_QUEUES)
    argv = launch.worker_argv(concurrency=1)
    assert set(argv[argv.index("-Q") + 1].split(",")) == set(celeryconfig.WORKER_QUEUES)
    for source in ("cli/main.py", "bench/stack.py", "tests/conftest.py"):
        text = (ROOT / source).read_text()
        flat = re.sub(r"\s+", " ", text)
        assert "worker_argv(" in text, source
        assert not re.search(r'"celery", "-A", "tasks", "(worker|beat)"', flat), source
    for factory in (Bench.start_worker, Stack.start_worker):
        default = inspect.signature(factory).parameters["queues"].default
        assert set(default.split(",")) == set(celeryconfig.WORKER_QUEUES), factory.__qualname__


#: The names messages on the broker carry. A release that renames one strands every message of
#: the old name still queued (docs/architecture.md, "Task names stay stable"); change this list
#: only with a migration note in the release.
STABLE_TASK_NAMES = {
    "intake.process",
    "maintenance.alerts",
    "maintenance.refresh_tokens",
    "maintenance.sweep",
    *(
        f"pipeline.{queue}.{step}"
        for queue in ("concur", "default", "zoho")
        for step in ("audit", "fetch", "map", "post", "validate")
    ),
    "sync.poll",
    "sync.poll_all",
    "vendors.sync_one",
}


def test_task_names_are_stable_and_declared_not_derived_from_modules() -> None:
    from tasks.celery import app

    app.loader.import_default_modules()
    # The product's tasks (a test may have added probes of its own to this process's app).
    names = {n for n, t in app.tasks.items() if type(t).__module__.startswith("tasks.")}
    assert names == STABLE_TASK_NAMES
    # Every task is declared with an explicit name, so moving a module renames nothing.
    for path in (ROOT / "tasks").glob("*.py"):
        for line in path.read_text().splitlines():
            if re.match(r"\s*@app\.task\b", line) or re.match(r"\s*@shared_task\b", line):
                assert "name=" in line, f"{path.name}: {line.strip()}"
