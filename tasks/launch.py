"""How a worker and beat are started: one command line for `connector run`, the bench and tests.

The Procfile is what production runs; ``connector run`` (embedded mode), ``bench/stack.py`` (the
benchmarks and the chaos suite) and the tests' ``start_worker`` fixture start the same processes
on this machine. When each built its own ``celery worker`` argv, a queue added to one (the
``maintenance`` queue of issue #21) could be missing from another, and a test would pass against
a worker no user runs. They all call these functions now, and ``tests/tasks/test_queues.py``
checks the Procfile's lines against them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: Every queue a task can be routed to; every worker consumes all. A literal, not read from
#: ``celeryconfig`` (which reads the settings on import, too early for a test's conftest);
#: ``tests/tasks/test_queues.py`` checks it equals ``celeryconfig.WORKER_QUEUES``.
QUEUES = "zoho,concur,default,maintenance"


def worker_argv(
    *,
    concurrency: int,
    queues: str = QUEUES,
    name: str | None = None,
    beat: bool = False,
    quiet_cluster: bool = True,
    loglevel: str = "INFO",
    extra: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """``celery -A tasks worker`` as the Procfile runs it, for a process this one starts.

    ``quiet_cluster`` drops gossip and mingle (as the Procfile drops gossip): workers that start
    and stop by the dozen in tests and chaos runs should not wait on each other's hellos.
    ``beat`` embeds the scheduler (``connector run`` only: one process on one machine).
    """
    argv = [python or sys.executable, "-m", "celery", "-A", "tasks", "worker"]
    if beat:
        argv.append("--beat")
    argv += ["-Q", queues, "--concurrency", str(concurrency), "--loglevel", loglevel]
    if quiet_cluster:
        argv += ["--without-gossip", "--without-mingle"]
    if name:
        argv += ["-n", name]
    return [*argv, *extra]


def beat_argv(
    *, schedule: str | None = None, loglevel: str = "INFO", python: str | None = None
) -> list[str]:
    """``celery -A tasks beat``; ``schedule`` overrides celeryconfig's schedule file."""
    argv = [python or sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", loglevel]
    return [*argv, "-s", schedule] if schedule else argv
