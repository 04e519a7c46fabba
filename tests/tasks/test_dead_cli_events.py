"""``celery -A tasks dead list`` shows failed webhook events beside dead records, and
``dead retry --event`` re-drives one (issue #12.3: nothing fails after storage unseen)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector import inbox
from connector.db import Database
from connector.models import WebhookEvent, WebhookStatus
from tests.tasks.test_dead_cli import celery

pytestmark = pytest.mark.slow


def _failed_event(db: Database) -> int:
    with db.session() as s:
        event_id = inbox.store(
            s, source="zoho", dedupe_key="cli-failed-1", body=b"{}", headers={},
            connection_id=None, event_type="clitest",
        ).event_id  # fmt: skip
    for _ in range(2):
        with db.session() as s:
            inbox.record_failure(s, event_id, "RuntimeError: cannot handle it", max_attempts=2)
    return event_id


def test_dead_list_shows_failed_events_and_retry_redrives_them(
    pg_db: Database, stack_env: dict[str, str]
) -> None:
    event_id = _failed_event(pg_db)
    out = celery(stack_env, "list")
    assert out.returncode == 0, out.stderr
    assert "1 failed webhook event(s)" in out.stdout and "cannot handle it" in out.stdout
    assert f"{event_id:>8}" in out.stdout and "no dead records" in out.stdout
    rows: list[dict[str, Any]] = json.loads(celery(stack_env, "list", "--json").stdout)
    [row] = [r for r in rows if r.get("kind") == "webhook_event"]
    assert row["id"] == event_id and row["attempts"] == 2 and "cannot handle it" in row["reason"]
    # --flow narrows to records: an event has no flow yet.
    assert json.loads(celery(stack_env, "list", "--flow", "payables", "--json").stdout) == []

    retried = celery(stack_env, "retry", "--event", str(event_id))
    assert retried.returncode == 0, retried.stderr
    assert "1 webhook event(s) re-queued" in retried.stdout
    with pg_db.session() as s:
        event = s.get(WebhookEvent, event_id)
        assert event is not None
        assert event.status == WebhookStatus.RECEIVED.value and event.attempts == 0
    again = celery(stack_env, "retry", "--event", str(event_id))  # not failed any more
    assert again.returncode == 1 and "not failed (left alone)" in again.stdout
