"""Zoho's daily quota (``connector.limits.quota``): headers stored per organization on every call, the
reserve bulk work may not touch, the backfill's pacing and ETA in days, and the done-when: a
backfill that would exceed the day's quota stops at the reserve, says when it resumes, and live
webhooks keep posting meanwhile (against the sandbox with a small daily quota).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from connector import connections
from connector.api.throttle import ZohoThrottle
from connector.errors import QuotaReserveError
from connector.limits import quota
from connector.limits.concurrency import MemorySemaphore
from connector.limits.quota import (
    MemoryQuotaStore,
    QuotaState,
    RedisQuotaStore,
    SqliteQuotaStore,
    check_reserve,
    read_headers,
    reserve_calls,
)
from connector.limits.ratelimit import Limit, MemoryLimiter, parse_limit, zoho_key
from connector.zoho.client import ZohoBooksClient
from flows import FLOWS, backfill
from flows.backfill_budget import Budget, Progress, Quota, eta_seconds, projected_days
from flows.backfill_cursor import load_cursor

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
NOW = 1_750_000_000.0


def headers(remaining: int, reset: int = 3600, limit: int | None = 1000) -> dict[str, str]:
    out = {"X-Rate-Limit-Remaining": str(remaining), "X-Rate-Limit-Reset": str(reset)}
    if limit is not None:
        out["X-Rate-Limit-Limit"] = str(limit)
    return out


# --------------------------------------------------------------------------- reading


def test_headers_are_read_as_countdown_or_epoch_and_junk_is_ignored() -> None:
    assert read_headers(headers(900, 3600), NOW) == (1000, 900, NOW + 3600)
    assert read_headers(headers(900, int(NOW) + 60), NOW) == (1000, 900, NOW + 60)
    assert read_headers(headers(5, 10, limit=None), NOW) == (None, 5, NOW + 10)
    assert read_headers({"X-Rate-Limit-Remaining": "x", "X-Rate-Limit-Reset": "1"}, NOW) is None
    assert read_headers({"X-Rate-Limit-Remaining": "-3", "X-Rate-Limit-Reset": "1"}, NOW) is None
    assert read_headers({}, NOW) is None


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: Any, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryQuotaStore()
    elif request.param == "sqlite":
        s = SqliteQuotaStore(tmp_path / "q.sqlite3")
        yield s
        s.close()
    else:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            client.ping()
        except redis.RedisError as exc:
            pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
        prefix = f"test-quota-{uuid.uuid4().hex}"
        yield RedisQuotaStore(client, prefix=prefix)
        for k in client.scan_iter(match=f"{prefix}:*"):
            client.delete(k)
        client.close()


def test_store_keeps_the_lower_count_within_a_day_and_starts_over_on_a_new_day(store: Any) -> None:
    assert store.get("org") is None
    store.observe("org", headers(900, 3600), now=NOW)
    assert store.get("org") == QuotaState(1000, 900, NOW + 3600, NOW)
    # Calls about to be sent count at once, so parallel bulk callers see each other.
    store.spend("org", now=NOW + 1)
    store.spend("org", now=NOW + 1)
    assert store.get("org").remaining == 898
    # An answer that left earlier arrives late: the lower count stands for this day.
    store.observe("org", headers(899, 3598), now=NOW + 2)
    assert store.get("org").remaining == 898 and store.get("org").read_at == NOW + 2
    # Another app spent calls: the vendor's lower number wins.
    store.observe("org", headers(500, 3590), now=NOW + 10)
    assert store.get("org").remaining == 500
    # After the reset a higher count is a new day, not a stale answer.
    store.observe("org", headers(999, 86399), now=NOW + 3601)
    assert store.get("org") == QuotaState(1000, 999, NOW + 3601 + 86399, NOW + 3601)
    # Spending against a day that is over changes nothing.
    store.spend("org", now=NOW + 3601 + 86400)
    assert store.get("org").remaining == 999
    assert store.get("other") is None
    store.observe("org", {}, now=NOW)  # no headers: nothing to learn
    assert store.get("org").remaining == 999


# --------------------------------------------------------------------------- the reserve


def test_reserve_is_a_share_of_the_daily_limit() -> None:
    assert reserve_calls(1000, 0.10) == 100
    assert reserve_calls(2000, 0.05) == 100
    assert reserve_calls(1001, 0.10) == 101  # rounded up: the reserve is never less than asked
    assert reserve_calls(None, 0.10) == 0 and reserve_calls(1000, 0.0) == 0


def test_bulk_work_is_refused_at_the_reserve_with_the_resume_time() -> None:
    state = QuotaState(1000, 101, NOW + 7200, NOW)
    check_reserve(state, 0.10, NOW, "the backfill")  # 101 - 1 = 100 still leaves the reserve
    low = dataclasses.replace(state, remaining=100)
    with pytest.raises(QuotaReserveError) as info:
        check_reserve(low, 0.10, NOW, "the backfill")
    err = info.value
    resume = quota.resume_text(NOW + 7200)
    assert resume == "2025-06-15 17:07 UTC"  # 17:06:40 rounded up: never early
    assert str(err) == (
        "zoho daily reserve reached: 100 of 1,000 calls left today and 100 are kept for live "
        f"traffic; the backfill resumes at {resume}"
    )
    assert err.retry_after == 7200 and err.resumes_at == NOW + 7200 and err.local
    # A previous day's numbers or no numbers at all: the first answer of the day tells.
    check_reserve(low, 0.10, NOW + 7200, "the backfill")
    check_reserve(None, 0.10, NOW, "the backfill")


BASE = "https://www.zohoapis.com"
URL = f"{BASE}/books/v3/settings/currencies"


class _Auth:
    def headers(self) -> dict[str, str]:
        return {"Authorization": "Zoho-oauthtoken t"}

    def on_unauthorized(self) -> bool:
        return False


def _client(store: MemoryQuotaStore) -> ZohoBooksClient:
    throttle = ZohoThrottle(
        MemoryLimiter(),
        lambda _m, _p: (zoho_key("42"), Limit(100, 60.0)),
        organization_id="42",
        semaphore=MemorySemaphore(),
        slots_key="zoho:org:42",
        quota=store,
        reserve=0.10,
    )
    return ZohoBooksClient(BASE, "42", auth=_Auth(), throttle=throttle)


@responses.activate
def test_every_call_stores_the_quota_and_only_bulk_calls_stop_at_the_reserve() -> None:
    store = MemoryQuotaStore()
    client = _client(store)
    responses.get(URL, json={"code": 0}, headers=headers(101, 3600))
    responses.get(URL, json={"code": 0}, headers=headers(100, 3590))
    responses.get(URL, json={"code": 0}, headers=headers(99, 3580))
    client.request("GET", "/settings/currencies")
    assert store.get("42").remaining == 101
    with quota.bulk("vendor reconciliation"):
        client.request("GET", "/settings/currencies")  # 101 -> 100: the reserve is untouched
        with pytest.raises(QuotaReserveError, match="vendor reconciliation resumes at"):
            client.request("GET", "/settings/currencies")
    assert len(responses.calls) == 2  # the refused call was never sent
    client.request("GET", "/settings/currencies")  # live traffic uses the reserve
    assert store.get("42").remaining == 99 and len(responses.calls) == 3


# --------------------------------------------------------------------------- ETA in days


def test_eta_leaves_the_reserve_and_counts_the_days() -> None:
    # 2,500 Zoho calls; 600 left today of 1,000 (renews in 3,600 s); 10 % reserve = 100:
    # 500 usable today, 900 a day after: 2,000 over -> 3 more days (900 + 900 + 200).
    b = Budget(parse_limit("100/60"), parse_limit("600/60"),
               Quota(limit=1000, remaining=600, reset=3600.0, seen_at=0.0), reserve=0.10)  # fmt: skip
    seconds, bound = eta_seconds(2500, 0, b, now=0.0)
    assert bound == "zoho quota"
    assert seconds == pytest.approx(3600 + 2 * 86400 + 200 * 0.6)
    assert projected_days(seconds) == 3
    # Without a reserve the same backfill needs one day less.
    no_reserve = dataclasses.replace(b, reserve=0.0)
    assert eta_seconds(2500, 0, no_reserve, now=0.0)[0] == pytest.approx(3600 + 86400 + 900 * 0.6)


def test_progress_line_names_the_reserve_and_the_days() -> None:
    import io

    b = Budget(parse_limit("100/60"), parse_limit("600/60"),
               Quota(limit=1000, remaining=600, reset=3600.0, seen_at=0.0), reserve=0.10)  # fmt: skip
    progress = Progress("payables", dt.date(2026, 1, 1), b, stream=io.StringIO(),
                                 clock=lambda: 0.0, tty=False)  # fmt: skip
    progress.new, progress.more = 2500, False
    line = progress.line()
    assert "Zoho quota 600 left of which 100 reserved for live traffic" in line
    assert "3 day(s) at the daily quota" in line


# --------------------------------------------------------------------------- done-when


def _sandbox_quota(admin: Any, org: str) -> tuple[int, int]:
    row = admin.zoho_limits()["orgs"][org]
    return row["daily"], row["daily"] - row["daily_used"]


def test_a_backfill_beyond_the_daily_quota_stops_at_the_reserve_and_live_webhooks_still_post(
    db: Any, sandbox_settings: Any, connected: int, admin: Any, sandbox: Any
) -> None:
    from tests.flows import payables_support as ps

    settings = dataclasses.replace(sandbox_settings, zoho_daily_reserve=0.2)
    cid = connected
    ps.set_up(db, settings, cid, sandbox.url)
    for i in range(40):
        admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=10 + i)
    used = admin.zoho_limits()["orgs"][ps.ORG]["daily_used"]
    limit = used + 45  # the backfill (40 bills) would need more than the day has left
    admin.zoho_limits(organization_id=ps.ORG, daily=limit)
    reserve = reserve_calls(limit, 0.2)
    posted: list[str] = []

    def workers_keep_up(batch: list[tuple[int, Any]]) -> None:
        for record_id, _step in batch:
            posted.append(ps.drive(db, settings, record_id).state or "?")

    today = dt.datetime.now(dt.UTC).date()
    with pytest.raises(QuotaReserveError) as info:
        backfill.run(db, settings, cid, "payables", today, page_size=5, on_page=workers_keep_up)
    err = info.value
    daily, left = _sandbox_quota(admin, ps.ORG)
    cursor = load_cursor(db, cid, "payables", today)
    print(f"\nquota {daily}, reserve {reserve}, left {left}; backfill listed {cursor.found}: {err}")
    # It stopped before the reserve, with everything it listed posted, and says when it resumes.
    assert left >= reserve and 0 < cursor.found < 40 and not cursor.done
    assert posted and set(posted) == {"posted"} and len(posted) == cursor.new
    reset = int(sandbox.state.zoho.daily_state(sandbox.state.zoho.orgs[ps.ORG])[2])
    assert err.resumes_at == pytest.approx(time.time() + reset, abs=5)
    assert "the backfill resumes at " + quota.resume_text(err.resumes_at) in str(err)
    assert connections.quota_store(settings).get(ps.ORG).remaining == left

    # Live webhooks keep posting on the reserve meanwhile: more of them than the room left
    # above the reserve, so they must dip into it.
    live = left - reserve + 1
    secret = connections.webhook_secret(db, settings, cid)
    with ps.Receiver(settings, db, lambda _event_id: None) as receiver:
        admin.zoho_set_webhook(ps.ORG, receiver.hook(cid), secret, entities=["bill"])
        for i in range(live):
            admin.zoho_create(ps.ORG, "bill", vendor_name="Delta Air Lines", amount=500 + i)
        admin.flush_deliveries()
    from tests.flows.test_payables_intake import wait_for_events

    events = wait_for_events(db, live)
    states = []
    for event in events[-live:]:
        for record_id, _step in FLOWS.process_event(db, event.id):
            states.append(ps.drive(db, settings, record_id).state)
    assert states == ["posted"] * live
    _daily, after = _sandbox_quota(admin, ps.ORG)
    assert after < reserve  # the reserve was there for them
    # ... while the backfill still waits, without spending a call.
    with pytest.raises(QuotaReserveError, match="resumes at"):
        backfill.run(db, settings, cid, "payables", today, page_size=5, on_page=workers_keep_up)
    assert _sandbox_quota(admin, ps.ORG)[1] == after


# --------------------------------------------------------------------------- settings


def test_settings_read_the_cap_and_the_reserve(tmp_path: Path) -> None:
    from connector.config import Settings

    key = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="
    base = {"CONNECTOR_SECRET_KEY": key, "CONNECTOR_VAR_DIR": str(tmp_path)}
    default = Settings.from_env(base)
    assert (default.zoho_max_in_flight, default.zoho_daily_reserve) == (5, 0.10)
    paid = Settings.from_env({**base, "ZOHO_MAX_IN_FLIGHT": "10", "ZOHO_DAILY_RESERVE": "25%"})
    assert (paid.zoho_max_in_flight, paid.zoho_daily_reserve) == (10, 0.25)
    assert Settings.from_env({**base, "ZOHO_DAILY_RESERVE": "0.05"}).zoho_daily_reserve == 0.05


def test_bad_cap_and_reserve_are_reported_together(tmp_path: Path) -> None:
    from connector.config import Settings
    from connector.errors import ConfigurationError

    env = {"CONNECTOR_SECRET_KEY": "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o=",
           "CONNECTOR_VAR_DIR": str(tmp_path), "ZOHO_MAX_IN_FLIGHT": "0",
           "ZOHO_DAILY_RESERVE": "150%"}  # fmt: skip
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    text = str(info.value)
    assert "ZOHO_MAX_IN_FLIGHT must be a whole number of calls between 1 and 100" in text
    assert "ZOHO_DAILY_RESERVE must be a share of the daily quota below 1" in text
    assert "'150%'" in text


# --------------------------------------------------------------------------- reconciliation


def test_vendor_reconciliation_at_the_reserve_is_skipped_with_the_resume_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows import vendors as flow

    seen: list[str | None] = []

    def reconcile(*_args: Any) -> Any:
        seen.append(quota.current_bulk())
        check_reserve(QuotaState(1000, 50, time.time() + 600, time.time()), 0.1, time.time(),
                      quota.current_bulk() or "?")  # fmt: skip
        raise AssertionError("unreachable")

    monkeypatch.setattr(flow.engine, "reconcile", reconcile)
    result = flow.reconcile_pass(None, None, 1)  # type: ignore[arg-type]
    assert seen == ["vendor reconciliation"] and quota.current_bulk() is None
    assert result.records == []
    assert result.summary.startswith("skipped: zoho daily reserve reached")
    assert "vendor reconciliation resumes at" in result.summary


def test_the_backfill_command_says_when_it_resumes(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.commands.backfill import _quota_spent

    err = QuotaReserveError("zoho daily reserve reached: …; the backfill resumes at X",
                            retry_after=5400, resumes_at=NOW)  # fmt: skip
    assert _quota_spent(err) == 3
    out = capsys.readouterr().err
    assert "stopped at the Zoho daily reserve" in out and "resumes at X" in out
    assert "again in 1h30m" in out and "live webhooks and polls keep posting" in out


@responses.activate
def test_a_broken_quota_store_never_turns_an_answered_call_into_an_error() -> None:
    class Broken(MemoryQuotaStore):
        def observe(self, *_a: Any, **_k: Any) -> None:
            raise ConnectionError("redis went away")

    responses.post(f"{BASE}/books/v3/journals", json={"code": 0, "journal": {"journal_id": "9"}},
                   headers=headers(10))  # fmt: skip
    client = _client(Broken())
    assert client.request("POST", "/journals", json={})["journal"]["journal_id"] == "9"
