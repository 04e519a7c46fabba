"""Issue #21 (2): a vendors create whose answer was lost is never left sitting in ``posting``.

The vendors engine writes its creates ahead through the ledger's posting path
(``ledger.claim`` + ``ledger.begin_post``) and, when the answer is lost, gives the lease back
(``ledger.post_outcome_unknown``) and hands the record to the pipeline's post step, which
searches the target before any second create. Before the fix the finished pass kept its lease
on the record: for a whole lease neither a worker nor the sweeper could touch it, and in the
chaos suite it was still ``posting`` when everything else had settled.

The fault is injected at the exact point: the sandbox stores the Concur vendor batch, then
resets the connection before the answer (``commit_then_fail``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from connector import pipeline
from connector.config import Settings
from connector.db import Database
from connector.models import AuditEvent, RecordState, Step, SyncRecord
from flows import FLOWS
from flows import vendor_sync as vendors

CONCUR_VENDORS = "/concur/*/api/v3.1/invoice/vendors"


@pytest.fixture
def settings(sandbox_settings: Settings) -> Settings:
    return sandbox_settings


def _creates(db: Database) -> list[SyncRecord]:
    with db.session() as s:
        rows = (
            s.execute(
                select(SyncRecord)
                .where(SyncRecord.source_type == vendors.ZOHO_TO_CONCUR)
                .order_by(SyncRecord.id)
            )
            .scalars()
            .all()
        )
        for r in rows:
            s.expunge(r)
        return list(rows)


def _outcomes(db: Database, record_id: int) -> list[str]:
    with db.session() as s:
        return list(
            s.execute(
                select(AuditEvent.outcome)
                .where(AuditEvent.record_id == record_id)
                .order_by(AuditEvent.id)
            ).scalars()
        )


def _vendor_posts(admin: Any) -> int:
    return sum(
        n
        for k, n in admin.stats()["per_endpoint"].items()
        if k.startswith("POST /concur/") and k.endswith("/invoice/vendors")
    )


def _concur_codes(sandbox: Any) -> Counter[str]:
    from sandbox.concur import config as concur_config

    with sandbox.state.lock:
        company = sandbox.state.concur.store.company(concur_config.SEED_US_COMPANY_ID)
        return Counter(f"{k[0]}/{k[1]}" for k in company.vendors)


def _run_post_steps(
    db: Database, settings: Settings, due: list[tuple[int, Step]]
) -> list[str | None]:
    return [
        FLOWS.run_step(
            db, rid, step, owner="worker-1:1:t", lease_seconds=60, settings=settings
        ).state
        for rid, step in due
    ]


def _assert_posted_once(db: Database, sandbox: Any, admin: Any, seeded: Any, posts: int) -> None:
    records = _creates(db)
    assert {r.state for r in records} == {RecordState.POSTED.value}
    assert all(r.lease_owner is None for r in records)
    assert all("adopted" in _outcomes(db, r.id) for r in records)
    codes = _concur_codes(sandbox)
    assert all(codes[r.stable_ref] == 1 for r in records), "a vendor is in Concur twice"
    assert _vendor_posts(admin) == posts, "the vendor create was sent again"
    assert admin.duplicates() == seeded


def test_lost_create_answer_is_handed_to_the_post_step_and_posted_once(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    seeded = admin.duplicates()
    admin.add_fault("POST", CONCUR_VENDORS, "commit_then_fail")
    posts = _vendor_posts(admin)

    result = FLOWS.sync(db, settings, connected, vendors.FLOW)  # what beat's sync.poll runs

    records = _creates(db)
    assert len(records) == 6 and {r.state for r in records} == {RecordState.POSTING.value}
    assert all(r.post_attempts == 1 and r.lease_owner is None for r in records), [
        (r.id, r.lease_owner) for r in records
    ]
    # The pass hands every open create to the pipeline's post step (sync.poll enqueues them).
    assert sorted(result.records) == sorted((r.id, Step.POST) for r in records)
    # A worker takes it at once: it searches Concur by code, finds the vendor and adopts it.
    assert _run_post_steps(db, settings, result.records) == ["posted"] * 6
    _assert_posted_once(db, sandbox, admin, seeded, posts + 1)
    assert vendors.reconcile(db, settings, connected).status == "ok"
    assert _vendor_posts(admin) == posts + 1


def test_sweeper_redrives_every_posting_vendors_record_after_its_lease(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    """The hand-off message is lost too: the sweeper alone finds each record, once its lease
    has run out (not before: nobody drives a record twice), and the post step resolves it."""
    seeded = admin.duplicates()
    admin.add_fault("POST", CONCUR_VENDORS, "commit_then_fail")
    posts = _vendor_posts(admin)
    assert vendors.reconcile(db, settings, connected).status == "partial"
    posting = {r.id for r in _creates(db) if r.state == RecordState.POSTING.value}
    assert len(posting) == 6

    now = dt.datetime.now(dt.UTC)
    with freeze_time(now + dt.timedelta(seconds=settings.lease_seconds / 2)):
        assert pipeline.due_for_redrive(db, stale_after=settings.lease_seconds) == []
    with freeze_time(now + dt.timedelta(seconds=settings.lease_seconds + 1)):
        due = pipeline.due_for_redrive(db, stale_after=settings.lease_seconds)
    assert sorted(due) == sorted((rid, Step.POST) for rid in posting)
    assert _run_post_steps(db, settings, due) == ["posted"] * 6
    _assert_posted_once(db, sandbox, admin, seeded, posts + 1)


def test_a_pass_that_dies_after_the_create_leaves_no_lease_behind(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    """Concur answered, then the pass raised before linking: its records are free at once."""
    seeded = admin.duplicates()
    posts = _vendor_posts(admin)

    def die(*_args: Any) -> None:
        raise RuntimeError("pass died after the create")

    with pytest.raises(RuntimeError):
        vendors.reconcile(db, settings, connected, hooks={"after_concur_create": die})
    records = _creates(db)
    assert {r.state for r in records} == {RecordState.POSTING.value}
    assert all(r.lease_owner is None for r in records)
    due = [(r.id, Step.POST) for r in records]
    assert _run_post_steps(db, settings, due) == ["posted"] * len(due)
    _assert_posted_once(db, sandbox, admin, seeded, posts + 1)
