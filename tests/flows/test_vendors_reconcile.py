"""Issue #5 "done when", against the seeded sandbox (both dialects): one reconciliation leaves
both sides with the same vendors, every pair linked, the ambiguous pair reported and untouched;
a second pass writes nothing; edits propagate; a both-sides edit follows the master rule and is
audited; lost responses, interrupted passes and concurrent passes create nothing twice.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from sqlalchemy import select

from connector import rules
from connector.config import Settings
from connector.db import Database
from connector.models import AuditEvent, SyncRecord, VendorLink
from flows import FLOWS
from flows import vendor_sync as vendors
from mappings.vendors_values import normalize_name

ZOHO_ORG = "10234695"
WRITE_METHODS = ("POST ", "PUT ", "DELETE ", "PATCH ")


# --------------------------------------------------------------------------- helpers


def calls(admin: Any) -> dict[str, int]:
    return dict(admin.stats()["per_endpoint"])


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in out.items() if v}


def api_writes(d: dict[str, int]) -> dict[str, int]:
    return {
        k: v
        for k, v in d.items()
        if k.startswith(WRITE_METHODS) and "oauth" not in k and "/token" not in k
    }


def zoho_vendors(sandbox: Any) -> dict[str, dict[str, Any]]:
    with sandbox.state.lock:
        org = sandbox.state.zoho.orgs[ZOHO_ORG]
        return {
            cid: copy.deepcopy(rec.data)
            for cid, rec in org.contacts.items()
            if rec.data.get("contact_type") == "vendor"
        }


def concur_vendors(sandbox: Any) -> dict[tuple[str, str], dict[str, Any]]:
    from sandbox.concur import config as concur_config

    with sandbox.state.lock:
        company = sandbox.state.concur.store.company(concur_config.SEED_US_COMPANY_ID)
        return {k: copy.deepcopy(v) for k, v in company.vendors.items()}


def links(db: Database, cid: int) -> list[VendorLink]:
    with db.session() as s:
        rows = s.execute(select(VendorLink).where(VendorLink.connection_id == cid)).scalars().all()
        for r in rows:
            s.expunge(r)
        return list(rows)


def audits(db: Database, cid: int, outcome: str) -> list[AuditEvent]:
    with db.session() as s:
        rows = (
            s.execute(
                select(AuditEvent)
                .where(
                    AuditEvent.connection_id == cid,
                    AuditEvent.step == "vendors",
                    AuditEvent.outcome == outcome,
                )
                .order_by(AuditEvent.id)
            )
            .scalars()
            .all()
        )
        for r in rows:
            s.expunge(r)
        return list(rows)


def by_name(sandbox: Any, name: str) -> tuple[str, dict[str, Any]]:
    return next((cid, c) for cid, c in zoho_vendors(sandbox).items() if c["contact_name"] == name)


def assert_converged(db: Database, cid: int, sandbox: Any) -> None:
    """Same vendors on both sides: every Zoho vendor linked, every Concur vendor code linked
    except the ambiguous Vandelay pair (and extra remit-to addresses of linked codes)."""
    zoho = zoho_vendors(sandbox)
    concur = concur_vendors(sandbox)
    rows = links(db, cid)
    assert {r.zoho_contact_id for r in rows} == set(zoho)
    linked_codes = {r.concur_vendor_code.upper() for r in rows}
    assert {k[0] for k in concur} - linked_codes == {"VANDEL1", "VANDEL2"}
    for r in rows:
        z = zoho[r.zoho_contact_id]
        c = concur[(r.concur_vendor_code.upper(), r.concur_address_code.upper())]
        assert normalize_name(z["contact_name"]) == normalize_name(c["VendorName"])


def baseline_duplicates(admin: Any) -> dict[str, Any]:
    return admin.duplicates()


@pytest.fixture
def settings(sandbox_settings: Settings) -> Settings:
    return sandbox_settings


# --------------------------------------------------------------------------- done when


def test_one_pass_converges_and_a_second_pass_writes_nothing(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    seeded_dups = baseline_duplicates(admin)
    # One Zoho vendor carries the Concur code in contact_number (the default code rule).
    hertz_id, _ = by_name(sandbox, "Hertz Corporation")
    admin.zoho_edit(ZOHO_ORG, "vendor", hertz_id, contact_number="HERTZ")
    vandelay_before = {
        k: v for k, v in concur_vendors(sandbox).items() if k[0].startswith("VANDEL")
    }

    dry = vendors.reconcile(db, settings, connected, dry_run=True)
    assert dry.status == "dry_run" and links(db, connected) == []
    plan = dry.plan
    assert plan is not None
    assert len(plan.create_in_concur) == 6 and len(plan.create_in_zoho) == 6

    report = vendors.reconcile(db, settings, connected)
    assert report.status == "ok", report.summary()
    assert report.created_in_concur == 6 and report.created_in_zoho == 6
    assert_converged(db, connected, sandbox)
    matched = {r.concur_vendor_code: r.matched_by for r in links(db, connected)}
    assert matched["HERTZ"] == "code"
    assert matched["UBER"] == "name"  # "Uber Technologies" = "Uber Technologies, Inc."
    assert matched["DELTA"] == "name"
    assert "GLOBEX/REMIT2" in report.plan.secondary_addresses  # type: ignore[union-attr]
    # The ambiguous pair: reported (and audited), untouched, not copied to Zoho.
    amb = [a for a in report.plan.ambiguous if set(a.concur) == {"VANDEL1/MAIN", "VANDEL2/MAIN"}]  # type: ignore[union-attr]
    assert amb and amb[0].reason == "same_name_in_concur"
    assert any(
        "VANDEL1/MAIN" in (a.details or {}).get("concur_vendors", [])
        for a in audits(db, connected, "ambiguous")
    )
    assert {
        k: v for k, v in concur_vendors(sandbox).items() if k[0].startswith("VANDEL")
    } == vandelay_before
    assert not any("vandelay" in c["contact_name"].lower() for c in zoho_vendors(sandbox).values())
    assert admin.duplicates() == seeded_dups

    zoho_before, concur_before = zoho_vendors(sandbox), concur_vendors(sandbox)
    before = calls(admin)
    again = vendors.reconcile(db, settings, connected)
    made = delta(before, calls(admin))
    assert again.status == "ok"
    assert api_writes(made) == {}
    assert (again.created_in_concur, again.created_in_zoho, again.updated_in_concur,
            again.updated_in_zoho, again.linked) == (0, 0, 0, 0, 0)  # fmt: skip
    assert zoho_vendors(sandbox) == zoho_before and concur_vendors(sandbox) == concur_before
    # The contacts we updated are re-read once (one-second timestamps); then a no-change pass
    # is one incremental Zoho page and one Concur page of up to 1,000 vendors.
    assert made.get("GET /zoho/<dc>/api/books/v3/contacts/<contact_id>", 0) <= 6
    before = calls(admin)
    assert vendors.reconcile(db, settings, connected).status == "ok"
    made = delta(before, calls(admin))
    assert made == {
        "GET /zoho/<dc>/api/books/v3/contacts": 1,
        "GET /concur/<geo>/api/v3.1/invoice/vendors": 1,
    }, made
    # Every write of the first pass left an audit row per vendor.
    assert len(audits(db, connected, "created")) == 12
    assert len(audits(db, connected, "linked")) == 6


def test_edits_on_either_side_propagate(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    from sandbox.concur.admin import ConcurAdmin

    assert vendors.reconcile(db, settings, connected).status == "ok"
    delta_id, delta_contact = by_name(sandbox, "Delta Air Lines")
    address = {**delta_contact["billing_address"], "city": "Atlanta"}
    admin.zoho_edit(ZOHO_ORG, "vendor", delta_id, billing_address=address)
    concur = ConcurAdmin(sandbox.url)
    hooli = concur_vendors(sandbox)[("HOOLI", "MAIN")]
    concur.update_vendors(
        {"VendorCode": "HOOLI", "AddressCode": "MAIN", "CountryCode": "US",
         "CurrencyCode": "USD", "PaymentTerms": "45", "City": "Mountain View"}
    )  # fmt: skip

    report = vendors.reconcile(db, settings, connected)
    assert report.status == "ok", report.summary()
    assert report.updated_in_concur == 1 and report.updated_in_zoho == 1
    assert concur_vendors(sandbox)[("DELTA", "MAIN")]["City"] == "Atlanta"
    hooli_zoho = next(
        c for c in zoho_vendors(sandbox).values() if c["contact_name"] == hooli["VendorName"]
    )
    assert hooli_zoho["billing_address"]["city"] == "Mountain View"
    assert hooli_zoho["payment_terms"] == 45
    assert report.conflicts == 0

    before = calls(admin)
    assert vendors.reconcile(db, settings, connected).status == "ok"
    assert api_writes(delta(before, calls(admin))) == {}


@pytest.mark.parametrize("master", ["zoho", "concur"])
def test_both_sides_edited_master_wins_and_the_loser_is_audited(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any, master: str
) -> None:
    from sandbox.concur.admin import ConcurAdmin

    rules.import_rules(
        db, connected, {"vendors": {"master": master, "code_from": "contact_number"}}, None
    )
    assert vendors.reconcile(db, settings, connected).status == "ok"
    mid, marriott = by_name(sandbox, "Marriott International")
    admin.zoho_edit(
        ZOHO_ORG,
        "vendor",
        mid,
        billing_address={**marriott["billing_address"], "city": "Zoho City"},
    )
    ConcurAdmin(sandbox.url).update_vendors(
        {"VendorCode": "MARRIOTT", "AddressCode": "MAIN", "CountryCode": "US",
         "CurrencyCode": "USD", "City": "Concur City"}
    )  # fmt: skip

    report = vendors.reconcile(db, settings, connected)
    assert report.status == "ok" and report.conflicts == 1
    winner, loser = (
        ("Zoho City", "Concur City") if master == "zoho" else ("Concur City", "Zoho City")
    )
    assert concur_vendors(sandbox)[("MARRIOTT", "MAIN")]["City"] == winner
    assert zoho_vendors(sandbox)[mid]["billing_address"]["city"] == winner
    conflict = [a for a in audits(db, connected, "conflict") if (a.details or {}).get("field") == "city"
                and (a.details or {}).get("zoho_contact_id") == mid]  # fmt: skip
    assert conflict and conflict[-1].details["loser_value"] == loser  # type: ignore[index]
    assert conflict[-1].details["winner"] == master  # type: ignore[index]
    before = calls(admin)
    vendors.reconcile(db, settings, connected)
    assert api_writes(delta(before, calls(admin))) == {}


# --------------------------------------------------------------------------- no duplicates


def test_lost_concur_create_response_is_found_not_created_twice(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    seeded = baseline_duplicates(admin)
    admin.add_fault("POST", "/concur/*/api/v3.1/invoice/vendors", "commit_then_fail")
    first = vendors.reconcile(db, settings, connected)
    assert first.status == "partial" and first.created_in_concur == 0
    with db.session() as s:
        open_ = (
            s.execute(select(SyncRecord).where(SyncRecord.source_type == vendors.ZOHO_TO_CONCUR))
            .scalars()
            .all()
        )
        assert len(open_) == 6 and {r.state for r in open_} == {"posting"}
        assert all(r.post_attempts == 1 and r.stable_ref for r in open_)

    before = calls(admin)
    second = vendors.reconcile(db, settings, connected)
    made = delta(before, calls(admin))
    assert second.status == "ok", second.summary()
    assert not any(k.startswith("POST /concur/<geo>/api/v3.1/invoice/vendors") for k in made)
    assert admin.duplicates() == seeded
    assert_converged(db, connected, sandbox)
    with db.session() as s:
        recs = (
            s.execute(select(SyncRecord).where(SyncRecord.source_type == vendors.ZOHO_TO_CONCUR))
            .scalars()
            .all()
        )
        assert {r.state for r in recs} == {"posted"}
        outcomes = {
            a.outcome
            for a in s.execute(
                select(AuditEvent).where(AuditEvent.record_id.in_([r.id for r in recs]))
            ).scalars()
        }
        assert "adopted" in outcomes


def test_lost_zoho_create_response_is_found_not_created_twice(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    seeded = baseline_duplicates(admin)
    admin.add_fault("POST", "/zoho/*/api/books/v3/contacts", "commit_then_fail")
    first = vendors.reconcile(db, settings, connected)
    assert first.status == "partial"
    second = vendors.reconcile(db, settings, connected)
    assert second.status == "ok", second.summary()
    assert admin.duplicates() == seeded
    assert_converged(db, connected, sandbox)


def test_pass_killed_between_post_and_link_then_rerun_creates_nothing_twice(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    """The pass dies right after Concur accepted a batch, before any link is committed."""
    seeded = baseline_duplicates(admin)

    class Killed(BaseException):
        pass

    def die(*_args: Any) -> None:
        raise Killed

    with pytest.raises(Killed):
        vendors.reconcile(db, settings, connected, hooks={"after_concur_create": die})
    assert len(links(db, connected)) == 6  # the name matches; no created vendor linked yet
    before = calls(admin)
    report = vendors.reconcile(db, settings, connected)
    made = delta(before, calls(admin))
    assert report.status == "ok", report.summary()
    assert not any(k.startswith("POST /concur/") and "vendors" in k for k in made)
    assert admin.duplicates() == seeded
    assert_converged(db, connected, sandbox)


def test_two_passes_never_run_at_once(
    db: Database, connected: int, settings: Settings, admin: Any
) -> None:
    inner: list[vendors.PassReport] = []

    def second_pass(_plan: Any) -> None:
        before = calls(admin)
        inner.append(vendors.reconcile(db, settings, connected))
        assert delta(before, calls(admin)) == {}  # busy before any call

    outer = vendors.reconcile(db, settings, connected, hooks={"before_writes": second_pass})
    assert outer.status == "ok"
    assert [r.status for r in inner] == ["busy"]
    # From another thread (another connection to the database) too, while a lock is held.
    with vendors.connection_lock(db, connected, lease_seconds=60) as held:
        assert held is not None
        result: list[str] = []
        t = threading.Thread(
            target=lambda: result.append(vendors.reconcile(db, settings, connected).status)
        )
        t.start()
        t.join(30)
        assert result == ["busy"]
    assert vendors.reconcile(db, settings, connected).status == "ok"


def test_sqlite_lease_of_a_dead_pass_expires(
    db: Database, connected: int, settings: Settings
) -> None:
    from freezegun import freeze_time

    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL frees an advisory lock when its connection dies")
    dead = vendors.ConnectionLock(db, connected, "vendors-pass:dead", lease_seconds=60)
    assert dead.acquire()  # never released: the process "died"
    assert vendors.reconcile(db, settings, connected).status == "busy"
    import datetime as dt

    with freeze_time(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.lease_seconds + 1)):
        lock = vendors.ConnectionLock(db, connected, "vendors-pass:next", lease_seconds=60)
        assert lock.acquire()
        lock.release()


# --------------------------------------------------------------------------- on demand


def test_request_vendor_sync_links_one_new_vendor_inline(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    assert vendors.reconcile(db, settings, connected).status == "ok"
    contact = admin.zoho_create(
        ZOHO_ORG,
        "vendor",
        contact_name="Initrode Supplies",
        contact_number="INITRODE",
        billing_address={"address": "1 Initrode Way", "city": "Austin", "country": "U.S.A"},
    )
    before = calls(admin)
    vendors.request_vendor_sync(db, settings, connected, contact["contact_id"])
    made = delta(before, calls(admin))
    link = vendors.link_for_zoho(db, connected, contact["contact_id"])
    assert link is not None and link.concur_vendor_code == "INITRODE"
    assert concur_vendors(sandbox)[("INITRODE", "MAIN")]["VendorName"] == "Initrode Supplies"
    assert made.get("POST /concur/<geo>/api/v3.1/invoice/vendors") == 1
    assert sum(v for k, v in made.items() if k.startswith("GET ")) <= 2
    # Asking again changes nothing.
    before = calls(admin)
    vendors.request_vendor_sync(db, settings, connected, contact["contact_id"])
    assert api_writes(delta(before, calls(admin))) == {}


def test_contact_webhook_runs_a_single_vendor_sync_through_the_ledger(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    import json

    from connector import inbox
    from connector.models import Step

    assert vendors.reconcile(db, settings, connected).status == "ok"
    contact = admin.zoho_create(
        ZOHO_ORG, "vendor", contact_name="Webhook Widgets",
        billing_address={"address": "9 Hook St", "country": "U.S.A"},
    )  # fmt: skip
    body = json.dumps({"contact": contact}).encode()
    with db.session() as s:
        stored = inbox.store(
            s, source="zoho", dedupe_key=f"contact:{contact['contact_id']}", body=body,
            headers={}, connection_id=connected, event_type="contact",
        )  # fmt: skip
    todo = FLOWS.process_event(db, stored.event_id, settings)
    assert len(todo) == 1
    record_id, step = todo[0]
    while step is not None:
        result = FLOWS.run_step(
            db, record_id, Step(step), owner="test", lease_seconds=60, settings=settings
        )
        step = result.next_step if result.action == "next" else None
    with db.session() as s:
        rec = s.get(SyncRecord, record_id)
        assert rec is not None and rec.state == "posted", rec.last_error_message
        code = f"ZB{contact['contact_id']}"  # no contact_number: the stable generated code
        assert rec.target_id == f"{code}/MAIN"
    assert (code, "MAIN") in concur_vendors(sandbox)
    # A customer contact is ignored; so is the echo of a vendor we just synced.
    with db.session() as s:
        echo = inbox.store(
            s, source="zoho", dedupe_key="echo", connection_id=connected, event_type="contact",
            body=json.dumps({"contact": {**contact, **{"last_modified_time": vendors.link_for_zoho(db, connected, contact["contact_id"]).zoho_snapshot["last_modified_time"]}}}).encode(),  # type: ignore[union-attr]
            headers={},
        )  # fmt: skip
    assert FLOWS.process_event(db, echo.event_id, settings) == []


def test_sync_pass_is_registered(db: Database, connected: int, settings: Settings) -> None:
    result = FLOWS.sync(db, settings, connected, "vendors")
    assert result.records == [] and result.summary.startswith("ok:")
    assert "vendors" in FLOWS.polled()


# --------------------------------------------------------------------------- the sweeper path


def test_sweeper_finishes_an_orphaned_create_through_the_pipeline(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    """A dead pass left creates in ``posting``; the pipeline (sweeper re-drive) links what
    landed and creates what did not, once."""
    import datetime as dt

    from freezegun import freeze_time

    from connector import pipeline
    from connector.models import Step

    seeded = baseline_duplicates(admin)
    admin.add_fault("POST", "/concur/*/api/v3.1/invoice/vendors", "commit_then_fail")
    assert vendors.reconcile(db, settings, connected).status == "partial"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.lease_seconds + 5)
    with freeze_time(later):
        due = pipeline.due_for_redrive(db, stale_after=settings.lease_seconds)
    assert len(due) == 6 and {step for _, step in due} == {Step.POST}
    for record_id, step in due:
        result = FLOWS.run_step(db, record_id, step, owner="sweeper-test", lease_seconds=60,
                                   settings=settings)  # fmt: skip
        assert result.state == "posted"
    assert admin.duplicates() == seeded
    assert len(links(db, connected)) == 12
    assert vendors.reconcile(db, settings, connected).status == "ok"
    assert_converged(db, connected, sandbox)


# --------------------------------------------------------------------------- API-call economy


@pytest.mark.slow  # the benchmark: ~1,000 creates against the sandbox (15-40 s)
def test_no_change_pass_for_1000_vendors_costs_two_calls(
    db: Database, connected: int, settings: Settings, sandbox: Any, admin: Any
) -> None:
    """1,000 Concur vendor records once in sync (15 seeded + 6 copied from Zoho + 979
    generated; 997 linked pairs) and 997 Zoho vendors: a pass with nothing to do reads one Zoho
    page (incremental) and one Concur page."""
    import dataclasses
    import time

    if db.dialect != "sqlite":
        pytest.skip("the call count does not depend on the database; measured once")
    generated = 1000 - len(concur_vendors(sandbox)) - 6
    admin.generate("concur_vendors", generated)
    admin.zoho_limits(per_minute=100_000)
    fast = dataclasses.replace(
        settings, zoho_rate_limit="100000/60s", concur_rate_limit="100000/60s"
    )
    started = time.monotonic()
    first = vendors.reconcile(db, fast, connected)
    assert first.status == "ok", first.summary()
    assert (first.created_in_zoho, first.created_in_concur) == (generated + 6, 6)
    assert len(concur_vendors(sandbox)) == 1000
    took = time.monotonic() - started
    second = vendors.reconcile(db, fast, connected)  # re-lists what the first pass wrote
    assert second.status == "ok"
    before = calls(admin)
    third = vendors.reconcile(db, fast, connected)
    made = delta(before, calls(admin))
    assert third.status == "ok" and len(third.plan.pairs) == 997  # type: ignore[union-attr]
    assert made == {
        "GET /zoho/<dc>/api/books/v3/contacts": 1,
        "GET /concur/<geo>/api/v3.1/invoice/vendors": 1,
    }, made
    print(f"\nfirst pass ({generated + 6} Zoho creates): {took:.1f}s; no-change pass: {made}")


# --------------------------------------------------------------------------- a real worker killed


@pytest.mark.slow
def test_worker_killed_mid_reconciliation_then_rerun_leaves_no_duplicates(
    sandbox: Any, admin: Any, pg_db: Database, stack_env: dict[str, str], start_worker: Any
) -> None:
    """``kill -9`` of a worker while its reconciliation's Concur POST is in flight (the sandbox
    holds the request and stores the vendors after the client is gone); a re-run afterwards
    links what landed and creates nothing twice."""
    import subprocess
    import sys
    import time

    from connector import authorize, connections
    from connector.zoho.auth import SCOPE
    from sandbox.concur import config as concur_config
    from sandbox.zoho import seed as zoho_seed

    env = {
        **stack_env,
        "CONNECTOR_SANDBOX_URL": sandbox.url,
        "ZOHO_CLIENT_ID": "sandbox-zoho-client",
        "ZOHO_CLIENT_SECRET": "sandbox-zoho-secret",
        "ZOHO_ACCOUNTS_URL": f"{sandbox.url}/zoho/us/accounts",
        "CONCUR_CLIENT_ID": "sandbox-concur-client",
        "CONCUR_CLIENT_SECRET": "sandbox-concur-secret",
        "CONCUR_AUTH_URL": f"{sandbox.url}/concur/us2",
    }
    settings = Settings.from_env(env)
    cid = connections.create(pg_db, "vendors-kill")
    grant = admin.zoho_self_client_code(scope=SCOPE)
    authorize.connect_zoho_self_client(
        pg_db, settings, cid, code=grant["code"], organization_id=zoho_seed.MAIN_ORG_ID,
        accounts_server=grant["accounts_server"],
    )  # fmt: skip
    authorize.connect_concur(
        pg_db, settings, cid, company_id=concur_config.SEED_US_COMPANY_ID,
        request_token=concur_config.SEED_US_REQUEST_TOKEN,
    )  # fmt: skip
    seeded = baseline_duplicates(admin)
    concur_before = len(concur_vendors(sandbox))
    # The worker's batch POST reaches the sandbox, which answers only after 3 s.
    admin.add_fault("POST", "/concur/*/api/v3.1/invoice/vendors", "delay", delay=3.0)
    worker = start_worker(queues="default", concurrency=1, env=env, extra=["--pool", "solo"])
    code = f"from tasks.celery import app; app.send_task('sync.poll', args=[{cid}, 'vendors'], queue='default')"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)

    def posting() -> int:
        with pg_db.session() as s:
            return len(
                s.execute(
                    select(SyncRecord).where(
                        SyncRecord.connection_id == cid,
                        SyncRecord.source_type == vendors.ZOHO_TO_CONCUR,
                        SyncRecord.state == "posting",
                    )
                )
                .scalars()
                .all()
            )

    deadline = time.monotonic() + 60
    while posting() < 6:  # the write-ahead records are committed: the POST is on its way
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.05)
    worker.kill()
    deadline = time.monotonic() + 30
    while len(concur_vendors(sandbox)) < concur_before + 6:  # the held request completes
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(links(pg_db, cid)) < 12  # the dead pass never linked the vendors it created
    deadline = time.monotonic() + 30
    # The server frees the dead worker's advisory lock when its connection drops; until then a
    # pass reports busy (at once, without calling anyone).
    while (report := vendors.reconcile(pg_db, settings, cid)).status == "busy":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert report.status == "ok", report.summary()
    assert report.created_in_concur == 0
    assert admin.duplicates() == seeded
    assert_converged(pg_db, cid, sandbox)
    with pg_db.session() as s:
        states = {
            r.state
            for r in s.execute(select(SyncRecord).where(SyncRecord.connection_id == cid)).scalars()
        }
    assert states == {"posted"}


def test_a_refused_update_is_retried_by_the_next_incremental_pass(
    db: Database,
    connected: int,
    settings: Settings,
    sandbox: Any,
    admin: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connector.concur import vendors as concur_api

    assert vendors.reconcile(db, settings, connected).status == "ok"
    sid, staples = by_name(sandbox, "Staples Business")
    admin.zoho_edit(
        ZOHO_ORG, "vendor", sid, billing_address={**staples["billing_address"], "city": "Boston"}
    )
    # A later, unmapped edit elsewhere moves the Zoho cursor past Staples' change.
    admin.advance_clock(5)
    vid, _ = by_name(sandbox, "Verizon Wireless")
    admin.zoho_edit(ZOHO_ORG, "vendor", vid, notes="call before visiting")
    real = concur_api.write_batch

    def refuse_puts(client: Any, method: str, records: Any) -> Any:
        if method != "PUT":
            return real(client, method, records)
        return [
            concur_api.VendorStatus(i, False, 400, "Vendor form validation failed", {})
            for i in range(len(records))
        ]

    monkeypatch.setattr(concur_api, "write_batch", refuse_puts)
    refused = vendors.reconcile(db, settings, connected)
    assert refused.status == "partial" and refused.updated_in_concur == 0
    assert any("Vendor form validation failed" in f for f in refused.failures)
    assert audits(db, connected, "failed")
    monkeypatch.setattr(concur_api, "write_batch", real)
    before = calls(admin)
    again = vendors.reconcile(db, settings, connected)  # incremental: Staples is not re-listed
    assert again.plan is not None and again.plan.listing == "incremental"
    assert again.status == "ok" and again.updated_in_concur == 1
    assert "GET /zoho/<dc>/api/books/v3/contacts/<contact_id>" not in delta(before, calls(admin))
    assert concur_vendors(sandbox)[("STAPLES", "MAIN")]["City"] == "Boston"
    before = calls(admin)
    assert vendors.reconcile(db, settings, connected).status == "ok"
    assert api_writes(delta(before, calls(admin))) == {}
