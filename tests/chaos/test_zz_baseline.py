from __future__ import annotations
import time
import pytest
pytestmark = [pytest.mark.slow]

def test_baseline(chaos) -> None:
    c = chaos("baseline")
    t = time.monotonic()
    c.create_backlog()
    c.timings["backlog"] = time.monotonic() - t
    c.final_check(timeout=180)
    c.report()
