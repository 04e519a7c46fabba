"""Concur pages of the wrong shape are reported as malformed data, not a crash (found by the
chaos suite's mapping fuzz, docs/chaos.md: a ``null`` page raised ``TypeError``)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.errors import ValidationFailed
from mappings.concur_reports import assemble_report
from tests.mappings.test_expenses_mapping import raw_fixture


@pytest.mark.parametrize(
    ("entries", "where"),
    [
        ([None], "entries[0]"),
        ([7], "entries[0]"),
        ({"Items": 3, "NextPage": None}, "entries[0].Items"),
        ({"Items": "abc"}, "entries[0].Items"),
        ("not pages", "entries"),
    ],
)
def test_a_page_of_the_wrong_shape_is_malformed_data(entries: Any, where: str) -> None:
    report, _, allocations = raw_fixture("usd_mixed")
    with pytest.raises(ValidationFailed) as caught:
        assemble_report(report, entries, allocations)
    assert where in caught.value.errors


def test_empty_items_are_still_fine() -> None:
    report, entries, _ = raw_fixture("usd_mixed")
    assembled = assemble_report(report, entries, {"Items": None, "NextPage": None})
    assert assembled.entries
