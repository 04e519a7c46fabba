"""Fixtures of the fault-injection suite: one whole stack per scenario (tests/chaos/scenario.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("chaos scenarios")
        for line in REPORTS:
            terminalreporter.write_line(line)
