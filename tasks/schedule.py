"""Celery beat's scheduler: the persistent one, with a schedule file that can always be opened.

Why a subclass: the Procfile runs ``celery -A tasks beat`` on a fresh checkout, where the
directory of the schedule file (``var/`` by default, git-ignored) does not exist yet. Celery's
``PersistentScheduler`` opens the file with ``shelve`` and dies with ``FileNotFoundError``;
without beat there is no sweeper, token refresh, polling back-stop or alert digest (issue #19).
This scheduler creates the directory first and, when it cannot, fails with a message that names
the file and the variable that moves it (``CONNECTOR_BEAT_SCHEDULE``).

The file only holds when each job last ran. Keeping it across restarts means a restart does not
run every job again at once; losing it (a new dyno, a new container) is harmless: a fresh file
starts every job one interval after beat starts, and every job is idempotent (docs/deploy.md).
"""

from __future__ import annotations

from pathlib import Path

from celery.beat import PersistentScheduler

from connector.errors import ConfigurationError


class Scheduler(PersistentScheduler):  # type: ignore[misc]
    """``PersistentScheduler`` that creates the schedule file's directory before opening it."""

    def setup_schedule(self) -> None:
        directory = Path(self.schedule_filename).resolve().parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                [
                    f"beat cannot create the directory of its schedule file {self.schedule_filename!r}"
                    f" ({type(exc).__name__}: {exc.strerror or exc}); set CONNECTOR_BEAT_SCHEDULE to a"
                    " file in a writable directory"
                ]
            ) from exc
        super().setup_schedule()


__all__ = ["Scheduler"]
