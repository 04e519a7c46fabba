"""The per-organization concurrency cap (``connector.limits.concurrency``) and its place in the Zoho call
path: one semantic suite against every backend with controlled time, a killed holder's lease,
the bounded wait, and the done-when proof: 4 worker processes x 3 threads against one sandbox
organization whose concurrency limit is 5, with ``ZOHO_MAX_IN_FLIGHT=5``: zero concurrency errors
over 600 calls (and, without the cap, the same load is refused, so the test can fail).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from connector.api.throttle import ZohoThrottle
from connector.errors import RateLimitedError
from connector.limits.concurrency import (
    MemorySemaphore,
    RedisSemaphore,
    SlotDecision,
    SqliteSemaphore,
    acquire_slot_or_raise,
    make_semaphore,
    zoho_slots_key,
)
from connector.limits.ratelimit import Limit, MemoryLimiter, zoho_key
from connector.zoho.client import ZohoBooksClient
from connector.zoho.errors import translate

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "concurrency_worker.py"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
T0 = 1_750_000_000.0  # a realistic epoch: Redis key expiry is relative to it


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _redis_or_skip() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    return client


class _RedisAt:
    """Routes the script's test-only ``now`` instead of Redis ``TIME``."""

    def __init__(self, sem: RedisSemaphore) -> None:
        self.sem = sem
        self.now_us = round(T0 * 1e6)

    def acquire(self, key: str, capacity: int, lease: float = 60.0) -> SlotDecision:
        return self.sem._acquire_at(key, capacity, lease, self.now_us)

    def release(self, key: str, token: str) -> None:
        self.sem.release(key, token)

    def in_flight(self, key: str) -> int:
        return self.sem._in_flight_at(key, self.now_us)


@dataclass
class Harness:
    sem: Any
    at: Callable[[float], None]


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def harness(request: Any, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "redis":
        client = _redis_or_skip()
        prefix = f"test-inflight-{uuid.uuid4().hex}"
        wrapped = _RedisAt(RedisSemaphore(client, prefix=prefix))
        yield Harness(wrapped, lambda t: setattr(wrapped, "now_us", round(t * 1e6)))
        for k in client.scan_iter(match=f"{prefix}:*"):
            client.delete(k)
        client.close()
        return
    clock = FakeClock()
    sem: Any = (
        MemorySemaphore(clock=clock)
        if request.param == "memory"
        else SqliteSemaphore(tmp_path / "slots.sqlite3", clock=clock)
    )
    yield Harness(sem, lambda t: setattr(clock, "now", t))
    if isinstance(sem, SqliteSemaphore):
        sem.close()


# --------------------------------------------------------------------------- semantics


def test_capacity_is_a_hard_cap_and_release_frees_a_slot(harness: Harness) -> None:
    harness.at(T0)
    got = [harness.sem.acquire("k", 5, 60.0) for _ in range(5)]
    assert all(d.allowed and d.token for d in got)
    assert [d.in_flight for d in got] == [1, 2, 3, 4, 5]
    refused = harness.sem.acquire("k", 5, 60.0)
    assert not refused.allowed and refused.token is None and refused.in_flight == 5
    assert refused.expires_in == pytest.approx(60.0)
    harness.sem.release("k", got[2].token)
    assert harness.sem.in_flight("k") == 4
    assert harness.sem.acquire("k", 5, 60.0).allowed
    # Keys are independent tenants.
    assert harness.sem.acquire("other", 5, 60.0).allowed


def test_a_holder_that_never_releases_loses_its_slot_when_the_lease_ends(
    harness: Harness,
) -> None:
    harness.at(T0)
    dead = harness.sem.acquire("k", 2, 30.0)  # the worker is killed: no release ever comes
    harness.at(T0 + 10)
    live = harness.sem.acquire("k", 2, 30.0)
    assert dead.allowed and live.allowed
    harness.at(T0 + 29.9)
    refused = harness.sem.acquire("k", 2, 30.0)
    assert not refused.allowed and refused.expires_in == pytest.approx(0.1, abs=1e-3)
    harness.at(T0 + 30.0)
    assert harness.sem.in_flight("k") == 1  # only the live holder
    assert harness.sem.acquire("k", 2, 30.0).allowed
    harness.sem.release("k", dead.token)  # a late release of an expired lease is harmless
    assert harness.sem.in_flight("k") == 2


def test_bad_arguments_fail_loudly(harness: Harness) -> None:
    with pytest.raises(ValueError, match="capacity"):
        harness.sem.acquire("k", 0, 60.0)
    with pytest.raises(ValueError, match="lease"):
        harness.sem.acquire("k", 1, 0.0)


def test_sqlite_slots_are_shared_by_two_connections(tmp_path: Path) -> None:
    clock = FakeClock()
    a = SqliteSemaphore(tmp_path / "s.sqlite3", clock=clock)
    b = SqliteSemaphore(tmp_path / "s.sqlite3", clock=clock)
    try:
        assert a.acquire("k", 2).allowed and b.acquire("k", 2).allowed
        assert not a.acquire("k", 2).allowed and b.in_flight("k") == 2
    finally:
        a.close()
        b.close()


def test_make_semaphore_picks_backend(tmp_path: Path) -> None:
    assert isinstance(make_semaphore(None, None), MemorySemaphore)
    assert isinstance(make_semaphore(None, str(tmp_path / "x.sqlite3")), SqliteSemaphore)


# --------------------------------------------------------------------------- a killed process

_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from connector.limits.concurrency import make_semaphore
sem = make_semaphore({redis!r}, {sqlite!r})
d = sem.acquire({key!r}, 3, {lease!r})
print("held" if d.allowed else "refused", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("backend", [pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def test_a_killed_worker_holds_its_slot_only_until_its_lease_ends(
    backend: str, tmp_path: Path
) -> None:
    key = f"kill-{uuid.uuid4().hex}"
    redis_url = REDIS_URL if backend == "redis" else None
    sqlite = None if redis_url else str(tmp_path / "kill.sqlite3")
    if redis_url:
        _redis_or_skip().close()
    lease = 1.5
    code = _HOLDER.format(root=str(ROOT), redis=redis_url, sqlite=sqlite, key=key, lease=lease)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        sem = make_semaphore(redis_url, sqlite)
        assert sem.in_flight(key) == 1  # the dead holder still counts...
        deadline = time.monotonic() + lease + 5.0
        while sem.in_flight(key) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a bounded deadline
        assert sem.in_flight(key) == 0  # ...until its lease ends
        assert all(sem.acquire(key, 3, 5.0).allowed for _ in range(3))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- bounded wait


def test_acquire_waits_briefly_then_raises_a_local_refusal_with_a_short_countdown() -> None:
    clock = FakeClock(0.0)
    sem = MemorySemaphore(clock=lambda: T0)
    held = [sem.acquire("zoho:org:1", 1) for _ in range(1)]
    assert held[0].allowed
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.now += s

    with pytest.raises(RateLimitedError) as info:
        acquire_slot_or_raise(sem, "zoho:org:1", 1, wait=0.5, sleep=sleep, clock=clock)
    err = info.value
    assert err.local and err.system == "zoho" and 0 < err.retry_after <= 2
    assert "1 of 1 calls in flight" in str(err) and "zoho:org" not in str(err)
    assert sum(slept) == pytest.approx(0.5) and max(slept) <= 0.1


def test_acquire_takes_the_slot_freed_during_the_wait() -> None:
    sem = MemorySemaphore(clock=lambda: T0)
    first = sem.acquire("k", 1)
    clock = FakeClock(0.0)

    def sleep(s: float) -> None:
        clock.now += s
        if clock.now > 0.05 and first.token:
            sem.release("k", first.token)

    token = acquire_slot_or_raise(sem, "k", 1, wait=1.0, sleep=sleep, clock=clock)
    assert token and sem.in_flight("k") == 1


# --------------------------------------------------------------------------- in the client

BASE = "https://www.zohoapis.com"


class _Auth:
    def headers(self) -> dict[str, str]:
        return {"Authorization": "Zoho-oauthtoken t"}

    def on_unauthorized(self) -> bool:
        return False


def _client(sem: MemorySemaphore, limiter: MemoryLimiter, cap: int = 1) -> ZohoBooksClient:
    throttle = ZohoThrottle(
        limiter,
        lambda _m, _p: (zoho_key("42"), Limit(100, 60.0)),
        organization_id="42",
        semaphore=sem,
        slots_key=zoho_slots_key("42"),
        max_in_flight=cap,
        slot_wait=0.0,
    )
    return ZohoBooksClient(BASE, "42", auth=_Auth(), throttle=throttle)


@responses.activate
def test_the_client_releases_its_slot_after_a_success_an_error_and_a_network_failure() -> None:
    sem, limiter = MemorySemaphore(), MemoryLimiter()
    client = _client(sem, limiter)
    url = f"{BASE}/books/v3/settings/currencies"
    responses.get(url, json={"code": 0, "currencies": []})
    responses.get(url, json={"code": 1002, "message": "nope"}, status=404)
    responses.get(url, body=requests.exceptions.ConnectionError("reset"))
    client.request("GET", "/settings/currencies")
    assert sem.in_flight(zoho_slots_key("42")) == 0
    with pytest.raises(Exception, match="nope"):
        client.request("GET", "/settings/currencies")
    assert sem.in_flight(zoho_slots_key("42")) == 0
    with pytest.raises(Exception, match="connection"):
        client.request("GET", "/settings/currencies")
    assert sem.in_flight(zoho_slots_key("42")) == 0
    assert limiter.peek(zoho_key("42"), Limit(100, 60.0)) == 3


@responses.activate
def test_a_full_cap_refuses_before_sending_and_spends_no_rate_limit_unit() -> None:
    sem, limiter = MemorySemaphore(), MemoryLimiter()
    client = _client(sem, limiter, cap=1)
    other = sem.acquire(zoho_slots_key("42"), 1)  # another worker's call in flight
    with pytest.raises(RateLimitedError) as info:
        client.request("GET", "/settings/currencies")
    assert info.value.local and info.value.path == "/settings/currencies"
    assert len(responses.calls) == 0
    assert limiter.peek(zoho_key("42"), Limit(100, 60.0)) == 0
    assert other.token


@responses.activate
def test_a_rate_limit_refusal_gives_the_slot_back() -> None:
    sem = MemorySemaphore()
    limiter = MemoryLimiter()
    limiter.acquire(zoho_key("42"), Limit(100, 60.0), 100)  # the minute is spent
    with pytest.raises(RateLimitedError, match="rate limit"):
        _client(sem, limiter).request("GET", "/settings/currencies")
    assert sem.in_flight(zoho_slots_key("42")) == 0


def test_zoho_concurrency_refusal_reads_as_a_short_rate_limit() -> None:
    response = requests.Response()
    response.status_code = 429
    response._content = json.dumps(
        {"code": 45, "message": "You have exceeded the maximum number of concurrent API requests"}
    ).encode()
    err = translate(response)
    assert isinstance(err, RateLimitedError) and err.retry_after == 2.0
    assert "in flight" in str(err)
    response._content = json.dumps({"code": 45, "message": "too many requests"}).encode()
    assert translate(response).retry_after == 60.0  # type: ignore[union-attr]


# --------------------------------------------------------------------------- sandbox


def test_the_sandbox_refuses_calls_beyond_its_concurrency_limit(sandbox: Any, admin: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.sandbox.conftest import MAIN_ORG, Zoho

    zoho = Zoho(sandbox.url).login()
    admin.zoho_limits(organization_id=MAIN_ORG, concurrent=2, latency=0.3, per_minute=1000)
    try:
        with ThreadPoolExecutor(4) as pool:
            codes = sorted(
                pool.map(lambda _: zoho.get("/settings/currencies").status_code, [0] * 4)
            )
        limits = admin.zoho_limits()
        org = limits["orgs"][MAIN_ORG]
        assert codes == [200, 200, 429, 429]
        assert org["concurrency_refused"] == 2 and org["max_in_flight"] == 2
        assert org["in_flight"] == 0  # every request released its slot
        assert zoho.get("/settings/currencies").status_code == 200  # one at a time: admitted
    finally:
        admin.zoho_limits(latency=0, concurrent=None, organization_id=MAIN_ORG)
        admin.zoho_limits(latency=0)


def test_the_sandbox_concurrency_limit_follows_the_plan(sandbox: Any, admin: Any) -> None:
    from tests.sandbox.conftest import MAIN_ORG

    orgs = admin.zoho_limits()["orgs"]
    assert orgs[MAIN_ORG]["concurrent"] == 10  # a paid plan (PREMIUM)


# --------------------------------------------------------------------------- done-when

MP_PROCS, MP_THREADS, MP_CALLS = 4, 3, 50  # 4 x 3 x 50 = 600 calls


def _run_workers(spec: dict[str, Any]) -> list[dict[str, int]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(spec)],
            cwd=ROOT,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(MP_PROCS)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdin is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", p.stderr.read() if p.stderr else ""
        for p in procs:
            p.stdin.write('{"go": 1}\n')  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _total(results: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        for k, v in r.items():
            out[k] = out.get(k, 0) + v
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def test_four_workers_with_the_cap_at_five_get_no_concurrency_error_in_600_calls(
    backend: str, sandbox: Any, admin: Any, tmp_path: Path
) -> None:
    from tests.sandbox.conftest import MAIN_ORG, Zoho

    zoho = Zoho(sandbox.url).login()
    admin.zoho_limits(organization_id=MAIN_ORG, concurrent=5, per_minute=100_000, daily=100_000)
    admin.zoho_limits(latency=0.02, reset_windows=True)
    redis_url = REDIS_URL if backend == "redis" else None
    if redis_url:
        _redis_or_skip().close()
    spec = {
        "redis_url": redis_url,
        "sqlite_path": None if redis_url else str(tmp_path / "mp.sqlite3"),
        "organization_id": MAIN_ORG,
        "api_domain": zoho.api_domain,
        "token": zoho.access_token,
        "requests": 100_000,
        "period": 60.0,
        "threads": MP_THREADS,
        "calls": MP_CALLS,
    }
    try:
        started = time.monotonic()
        capped = _total(_run_workers({**spec, "max_in_flight": 5}))
        capped_s = time.monotonic() - started
        capped_org = admin.zoho_limits()["orgs"][MAIN_ORG]
        # The same load without the cap (today's code path): the sandbox refuses some of it,
        # which is what makes the first half of this test able to fail.
        admin.zoho_limits(reset_windows=True)
        uncapped = _total(_run_workers({**spec, "max_in_flight": 0}))
    finally:
        admin.zoho_limits(latency=0)
        admin.zoho_limits(organization_id=MAIN_ORG, concurrent=None, per_minute=100, daily=None)
        if redis_url:
            client = _redis_or_skip()
            client.delete(f"ratelimit:{zoho_key(MAIN_ORG)}", f"inflight:{zoho_key(MAIN_ORG)}")
            client.close()
    print(
        f"\nconcurrency [{backend}] {MP_PROCS} procs x {MP_THREADS} threads, cap 5: {capped} "
        f"in {capped_s:.1f}s, sandbox max in flight {capped_org['max_in_flight']}; "
        f"without the cap: {uncapped}"
    )
    assert capped.get("ok") == MP_PROCS * MP_THREADS * MP_CALLS
    assert capped.get("concurrency_errors", 0) == 0 and capped_org["concurrency_refused"] == 0
    assert capped_org["max_in_flight"] <= 5
    assert uncapped.get("concurrency_errors", 0) > 0
