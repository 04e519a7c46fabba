"""Beat's schedule file (issue #19): opened where nothing exists yet, kept across a restart,
harmless to lose, and a clear message when its directory cannot be made."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from celery.utils.imports import symbol_by_name
from freezegun import freeze_time

from connector.config import Settings
from connector.errors import ConfigurationError

START = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)


def scheduler(path: Path) -> Any:
    """The scheduler class celeryconfig names, as `celery -A tasks beat` builds it."""
    from tasks.celery import app

    cls = symbol_by_name(app.conf.beat_scheduler)
    return cls(app=app, schedule_filename=str(path), lazy=False)


def due(sched: Any) -> set[str]:
    return {name for name, entry in sched.schedule.items() if entry.is_due()[0]}


def test_beat_opens_its_schedule_where_the_directory_does_not_exist(tmp_path: Path) -> None:
    # A fresh checkout: var/ is git-ignored, so nothing has created it.
    path = tmp_path / "fresh" / "var" / "celerybeat-schedule"
    sched = scheduler(path)
    try:
        assert "sweep-ledger" in sched.schedule and "refresh-tokens" in sched.schedule
    finally:
        sched.close()
    assert any(path.parent.glob("celerybeat-schedule*"))


def test_a_lost_schedule_runs_nothing_at_once_and_a_kept_one_survives_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "celerybeat-schedule"
    with freeze_time(START):
        sched = scheduler(path)
        # Losing the file is harmless: a fresh schedule starts each job one interval later.
        assert due(sched) == set()
    with freeze_time(START + dt.timedelta(seconds=61)):
        assert "sweep-ledger" in due(sched) and "refresh-tokens" in due(sched)
        sched.schedule["sweep-ledger"] = sched.schedule["sweep-ledger"]._next_instance()
        sched.schedule["refresh-tokens"] = sched.schedule["refresh-tokens"]._next_instance()
        sched.sync()
        sched.close()
    # A restart right after: the jobs that just ran are not due again.
    with freeze_time(START + dt.timedelta(seconds=62)):
        again = scheduler(path)
        try:
            assert not {"sweep-ledger", "refresh-tokens"} & due(again)
            last = again.schedule["sweep-ledger"].last_run_at
            assert abs(last - (START + dt.timedelta(seconds=61))) < dt.timedelta(seconds=1)
        finally:
            again.close()


def test_an_unwritable_schedule_location_names_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError) as caught:
        scheduler(blocker / "var" / "celerybeat-schedule")
    assert "CONNECTOR_BEAT_SCHEDULE" in str(caught.value)
    assert str(blocker) in str(caught.value)


def test_the_schedule_location_comes_from_the_environment(tmp_path: Path) -> None:
    default = Settings.from_env({"CONNECTOR_VAR_DIR": str(tmp_path / "v")})
    assert default.beat_schedule_file == tmp_path / "v" / "celerybeat-schedule"
    var = {"CONNECTOR_VAR_DIR": str(tmp_path / "v")}  # never the developer's ./var
    moved = Settings.from_env({**var, "CONNECTOR_BEAT_SCHEDULE": str(tmp_path / "beat" / "s")})
    assert moved.beat_schedule_file == tmp_path / "beat" / "s"
    with pytest.raises(ConfigurationError, match="CONNECTOR_BEAT_SCHEDULE"):
        Settings.from_env({**var, "CONNECTOR_BEAT_SCHEDULE": str(tmp_path)})
