"""``tasks.base.ConnectorTask`` keeps a task in the broker when the database went away, also when
the driver reports the cut as a plain ``DatabaseError`` (issue #21.1: such a task was acked as
failed and its message lost). A statement the database refused is not retried."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import DatabaseError, DataError

from tasks.base import ConnectorTask
from tasks.celery import app

calls: list[int] = []
errors: list[Exception] = []


@app.task(base=ConnectorTask, bind=True, name="tests.base_outage_probe")
def probe(self: Any) -> int:
    calls.append(1)
    if errors:
        raise errors.pop(0)
    return len(calls)


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    errors.clear()


def test_a_cut_reported_as_plain_database_error_is_retried() -> None:
    errors.append(
        DatabaseError(
            "SELECT 1", {}, Exception("SSL SYSCALL error: EOF"), connection_invalidated=True
        )
    )
    result = probe.apply()  # eager: the retry runs at once, in process
    assert result.successful() and result.get() == 2 and len(calls) == 2


def test_a_refused_statement_is_not_retried() -> None:
    errors.append(DataError("INSERT", {}, Exception("value too long")))
    result = probe.apply()
    assert result.failed() and isinstance(result.result, DataError) and len(calls) == 1
