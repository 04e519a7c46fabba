"""Celery app for the inbox outage tests: the real ``tasks`` app plus one test handler.

``celery -A tests.tasks.inbox_worker worker`` runs the product's tasks unchanged; the only
addition is an intake handler for the ``zoho``/``gatedtest`` kind that marks its start in a
directory and holds its transaction open until the test creates ``release`` there, so a test can
cut PostgreSQL or Redis *during* an intake task. Events of any other unknown kind are marked
``ignored`` by intake at once (no vendor call), which is a complete processing.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from connector.intake import IntakeResult
from flows import FLOWS, IntakeHook
from tasks.celery import app

__all__ = ["app"]

GATE = Path(os.environ.get("INBOX_TEST_GATE_DIR", "/nonexistent"))


def gated(session: Any, event: Any, payload: Any) -> IntakeResult:
    (GATE / f"started-{event.id}-{uuid.uuid4().hex}").touch()
    deadline = time.monotonic() + 60
    # Harness code: waits on a condition the test controls, with a bounded deadline.
    while not (GATE / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return IntakeResult([], ignored="gated test event done")


FLOWS.add_intake("zoho", "gatedtest", IntakeHook(gated))
