"""Fixtures of the fault-injection suite: one whole stack per scenario (tests/chaos/scenario.py),
and the run's ``CHAOS_SEED`` (tests/chaos/seeds.py) in the header and on every failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.chaos import seeds
from tests.chaos.scenario import REPORTS, Chaos


@pytest.fixture
def chaos(pg_server_url: str, sandbox: Any, admin: Any) -> Iterator[Callable[..., Chaos]]:
    """``chaos(name, workers={...}, **env)`` starts a connected stack; all are closed after."""
    made: list[Chaos] = []

    def start(
        name: str,
        *,
        workers: dict[str, int] | None = None,
        rules: dict[str, Any] | None = None,
        **env: str,
    ) -> Chaos:
        scenario = Chaos(name, sandbox, admin, rules=rules, **env)
        made.append(scenario)
        return scenario.start(workers=workers)

    yield start
    for scenario in made:
        scenario.close()


def pytest_report_header(config: Any) -> str:
    return f"chaos: {seeds.replay_hint()}"


def pytest_collection_finish(session: Any) -> None:
    """``-q`` leaves the header out: say the seed at the start anyway."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.option.verbose < 0:
        reporter.write_line(f"chaos: {seeds.replay_hint()}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and "chaos" in item.keywords:
        report.sections.append(("chaos seed", seeds.replay_hint()))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("chaos scenarios")
        terminalreporter.write_line(seeds.replay_hint())
        for line in REPORTS:
            terminalreporter.write_line(line)
