"""The error policy table: every error a step can raise has exactly one, documented, outcome."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from connector import errors
from connector.error_policy import POLICY, Action, decide
from connector.models import RecordState

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _all_errors() -> list[type[errors.ConnectorError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ConnectorError) and cls is not errors.ConnectorError
    ]


@pytest.mark.parametrize(
    ("exc", "action", "state"),
    [
        (errors.QuotaReserveError("x", retry_after=5), Action.PARK_UNTIL, RecordState.WAITING),
        (errors.QuotaExhaustedError("x", retry_after=5), Action.PARK_UNTIL, RecordState.WAITING),
        (errors.RateLimitedError("x", retry_after=5), Action.RETRY, None),
        (errors.RetryableError("x"), Action.RETRY, None),
        (errors.MappingError("no account for category"), Action.PARK, RecordState.WAITING),
        (errors.ReauthRequired("dead"), Action.REAUTH, RecordState.NEEDS_REAUTH),
        (errors.TokenExpiredError("401"), Action.REAUTH, RecordState.NEEDS_REAUTH),
        (errors.PermissionDeniedError("403"), Action.FAIL, RecordState.FAILED),
        (errors.NotFoundError("404"), Action.FAIL, RecordState.FAILED),
        (errors.InvalidRequestError("400"), Action.FAIL, RecordState.FAILED),
        (errors.ValidationFailed("bad", errors=["x"]), Action.FAIL, RecordState.FAILED),
        (errors.ApiError("could not build"), Action.FAIL, RecordState.FAILED),
    ],
)
def test_each_error_has_its_outcome(exc, action, state):
    rule = decide(exc)
    assert rule is not None
    assert (rule.action, rule.state) == (action, state)


def test_a_subclass_with_another_outcome_comes_before_its_parent():
    """First match wins: a row may not be shadowed by an earlier row for one of its parents."""
    for i, rule in enumerate(POLICY):
        for earlier in POLICY[:i]:
            for cls in rule.errors:
                assert not issubclass(cls, earlier.errors), (
                    f"{cls.__name__} (row {i}) is shadowed by row {POLICY.index(earlier)}"
                )


def test_errors_that_are_not_a_record_outcome_are_reraised():
    for exc in (
        errors.ConfigurationError(["X is missing"]),
        errors.IllegalTransition("posted -> fetched"),
        errors.LeaseLost("someone else"),
        errors.UntrustedHostError("evil.example"),
    ):
        assert decide(exc) is None, type(exc).__name__


def test_every_api_error_class_has_a_rule():
    for cls in _all_errors():
        if issubclass(cls, errors.ApiError | errors.ParkError | errors.ValidationFailed):
            assert any(issubclass(cls, rule.errors) for rule in POLICY), cls.__name__


def test_docs_show_the_table_as_the_code_has_it():
    text = DOC.read_text()
    section = text.split("## The policy table", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) == len(POLICY)
    for row, rule in zip(rows, POLICY, strict=True):
        names = re.findall(r"`(\w+)`", row.split("|")[1])
        assert names == [cls.__name__ for cls in rule.errors], row
        assert f"`{rule.action.value}`" in row, row
        assert f"`{rule.clock.value}`" in row, row
