"""The beat runs the proactive token refresh on its own schedule."""

from __future__ import annotations

import celeryconfig
from tasks.celery import app


def test_refresh_tokens_is_scheduled_and_registered() -> None:
    entry = celeryconfig.beat_schedule["refresh-tokens"]
    assert entry["task"] == "maintenance.refresh_tokens"
    assert entry["schedule"] == celeryconfig._settings.refresh_interval == 60.0
    import tasks.maintenance  # noqa: F401

    assert "maintenance.refresh_tokens" in app.tasks
    assert app.conf.task_routes["maintenance.*"] == {"queue": "maintenance"}
