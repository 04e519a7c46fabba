"""The suite's own machinery (issue #21): the wait formula, progress waits, seeds, the soak
report. No services; part of ``make test``."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from pathlib import Path

import pytest

from connector.config import Settings
from tests.chaos import seeds, soak, timing
from tests.chaos.timing import Deliveries, Stalled, Waits


@pytest.fixture(autouse=True)
def _no_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "load_factor", lambda: 1.0)


def _settings(**env: str) -> Settings:
    base = {
        "CONNECTOR_LEASE_SECONDS": "8",
        "CONNECTOR_SWEEP_INTERVAL": "1",
        "CONNECTOR_RETRY_CAP": "2",
        "CONNECTOR_WAITING_CAP": "2",
        "PAYABLES_POLL_INTERVAL": "5",
        "EXPENSES_POLL_INTERVAL": "5",
        "CELERY_VISIBILITY_TIMEOUT": "60",
    }
    return Settings.from_env({**base, **env})


def test_the_waits_follow_the_settings() -> None:
    deliveries = Deliveries(base=0.5, factor=2.0, timeout=5.0, attempts=8)
    assert deliveries.longest_gap == 0.5 * 2**6 + 5
    waits = Waits.of(_settings(), deliveries, vendors_pass=False)
    assert waits.stall == 2 * (8 + 1) + 2 + 2 + 5 + 37 == 64
    assert waits.quiet == 5 + 2
    # A longer lease or sweep makes every wait longer; the vendors pass counts when it runs.
    slower = Waits.of(
        _settings(CONNECTOR_LEASE_SECONDS="30", VENDORS_SYNC_INTERVAL="20"),
        deliveries,
        vendors_pass=True,
    )
    assert slower.stall == 2 * (30 + 1) + 2 + 2 + 20 + 37
    assert slower.quiet == 20 + 2
    assert waits.with_(throttle=60).stall == 124
    assert "stall = 2*(lease 8 + sweep 1)" in waits.formula()


def test_a_progress_wait_lasts_while_there_is_progress_and_fails_when_it_stops() -> None:
    counter = itertools.count()
    # Progress every poll: the wait outlasts many stall windows and ends when done.
    waited = timing.wait_progress(
        lambda: next(counter) >= 20,
        lambda: float(next(counter)),
        stall=0.05,
        what="twenty",
        interval=0.01,
    )
    assert waited > 0.05
    with pytest.raises(Stalled, match="no progress"):
        timing.wait_progress(lambda: False, lambda: 1.0, stall=0.05, what="x", interval=0.01)
    # Going round in circles is not progress.
    circle = itertools.cycle([1.0, 2.0, 3.0])
    with pytest.raises(Stalled):
        timing.wait_progress(
            lambda: False, lambda: next(circle), stall=0.05, what="x", interval=0.01
        )


def test_a_quiet_wait_needs_the_fingerprint_unchanged_for_the_window() -> None:
    values = iter([1, 2, 3] + [4] * 1000)
    waited = timing.wait_quiet(
        lambda: next(values), lambda: True, quiet=0.05, stall=5, what="rest", interval=0.01
    )
    assert waited >= 0.05
    ticking = itertools.count()
    with pytest.raises(Stalled, match="not at rest"):
        timing.wait_quiet(
            lambda: next(ticking), lambda: True, quiet=0.05, stall=0.1, what="rest",
            interval=0.01,
        )  # fmt: skip


def test_each_scenario_has_its_own_seeded_stream() -> None:
    a, b = seeds.rng("kill9"), seeds.rng("kill9")
    assert [a.random() for _ in range(3)] == [b.random() for _ in range(3)]
    assert seeds.rng("kill9").random() != seeds.rng("redis").random()
    assert seeds.rng("kill9").random() == random.Random(f"{seeds.SEED}:kill9").random()
    assert f"CHAOS_SEED={seeds.SEED}" in seeds.replay_hint()


def test_the_soak_report_is_a_markdown_table_per_scenario(tmp_path: Path) -> None:
    def junit(path: Path, failed: bool) -> Path:
        failure = "<failure message='boom'/>" if failed else ""
        path.write_text(
            "<testsuites><testsuite>"
            "<testcase classname='tests.chaos.test_scenarios' name='test_a' time='12.5'/>"
            f"<testcase classname='tests.chaos.test_scenarios' name='test_b' time='3'>{failure}"
            "</testcase></testsuite></testsuites>"
        )
        return path

    runs = [
        soak.Run(11, 60.0, 0, soak.parse_junit(junit(tmp_path / "1.xml", False))),
        soak.Run(22, 61.0, 1, soak.parse_junit(junit(tmp_path / "2.xml", True))),
    ]
    table = soak.tally(runs)
    assert (table["test_scenarios::test_a"].passed, table["test_scenarios::test_a"].runs) == (2, 2)
    assert table["test_scenarios::test_b"].failing_seeds == [22]
    text = soak.markdown(runs, table, dt.datetime(2026, 12, 5, tzinfo=dt.UTC))
    assert "| `test_scenarios::test_a` | 2 | 2 | 100% |" in text
    assert "| `test_scenarios::test_b` | 1 | 2 | 50% | 3 s | 22 |" in text
    assert soak.parse_junit(tmp_path / "missing.xml") == {}
