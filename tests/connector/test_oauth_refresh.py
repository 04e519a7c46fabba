"""Staying connected: proactive (beat) and on-demand refresh, single flight, rotation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from connector import connections, ping, token_refresh
from connector.api.oauth import TokenManager
from connector.models import Credential
from connector.vault import Vault
from sandbox.concur import config as concur_config

WORKER = Path(__file__).parent / "oauth_worker.py"
HOUR = 3600
#: freezegun leaves the in-process sandbox on real time: its clock is moved by its admin API.
KEEP_REAL_TIME = ["sandbox", "werkzeug", "socketserver"]


def zoho_refreshes(admin: Any) -> int:
    return sum(t["refreshes"] for t in admin.zoho_tokens())


def concur_refreshes(admin: Any) -> int:
    return int(admin.stats()["refreshes"].get(f"concur:{concur_config.SEED_US_COMPANY_ID}", 0))


def refreshes(admin: Any, system: str) -> int:
    return zoho_refreshes(admin) if system == "zoho" else concur_refreshes(admin)


def stored(db: Any, settings: Any, connection_id: int, system: str) -> Any:
    return connections.token_manager(db, settings, connection_id, system).current()


def later(seconds: float) -> Any:
    return freeze_time(datetime.now(UTC) + timedelta(seconds=seconds), tick=True,
                       ignore=KEEP_REAL_TIME)  # fmt: skip


def test_beat_refreshes_only_tokens_inside_the_margin(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    assert token_refresh.refresh_due(db, sandbox_settings).refreshed == []
    before = {s: stored(db, sandbox_settings, connected, s) for s in ("zoho", "concur")}
    with later(HOUR - 300):  # 5 minutes left: inside the default 10-minute margin
        report = token_refresh.refresh_due(db, sandbox_settings)
        assert sorted(report.refreshed) == sorted(v.id for v in before.values())
        assert token_refresh.refresh_due(db, sandbox_settings).refreshed == []
    assert zoho_refreshes(admin) == 1 and concur_refreshes(admin) == 1
    for system, old in before.items():
        new = stored(db, sandbox_settings, connected, system)
        assert new.access_token != old.access_token
        assert new.access_expires_at > old.access_expires_at


def test_beat_keeps_ping_passing_past_expiry_without_reauthorization(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    from sandbox.concur.admin import ConcurAdmin

    ConcurAdmin(admin.base_url).settings(rotate_refresh_tokens=True)
    old_concur_refresh = stored(db, sandbox_settings, connected, "concur").refresh_token
    offset = 0.0

    def move_to(seconds: float) -> Any:
        # Both clocks move together: ours (freezegun) and the sandbox's (its admin API).
        nonlocal offset
        admin.advance_clock(seconds - offset)
        offset = seconds
        return later(seconds)

    for hour in (1, 2, 3):
        with move_to(hour * HOUR - 300):
            assert len(token_refresh.refresh_due(db, sandbox_settings).refreshed) == 2
        with move_to(hour * HOUR + 60):  # every token issued before the beat run has expired
            checks = ping.ping(db, sandbox_settings, connected)
        assert all(c.ok for c in checks), [c.detail for c in checks if not c.ok]
    # One refresh per side per hour, all by the beat; ping never had to force one.
    assert zoho_refreshes(admin) == 3 and concur_refreshes(admin) == 3
    rotated = stored(db, sandbox_settings, connected, "concur").refresh_token
    assert rotated != old_concur_refresh  # each rotated refresh token was persisted


def test_on_demand_refresh_after_a_vendor_side_expiry(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    from sandbox.concur.admin import ConcurAdmin

    ConcurAdmin(admin.base_url).settings(expired_token_status="403")
    admin.advance_clock(HOUR + 60)  # our clock still thinks the tokens are fresh
    assert connections.zoho_client(db, sandbox_settings, connected).accounts.list()["code"] == 0
    assert connections.concur_client(db, sandbox_settings, connected).vendors.search(limit=1)
    assert zoho_refreshes(admin) == 1 and concur_refreshes(admin) == 1


def test_concur_rotation_is_persisted_atomically(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    from sandbox.concur.admin import ConcurAdmin

    ConcurAdmin(admin.base_url).settings(rotate_refresh_tokens=True)
    manager = connections.token_manager(db, sandbox_settings, connected, "concur")
    first = manager.current()
    second = manager.refresh(force=True).credential
    third = manager.refresh(force=True).credential  # works only if the rotated one was stored
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    assert third.refresh_expires_at >= first.refresh_expires_at
    assert third.api_base_url == first.api_base_url and third.refresh_issued_at is not None
    with db.session() as session:
        row = session.get(Credential, first.id)
        vault = Vault(sandbox_settings.secret_keys)
        assert vault.decrypt(row.refresh_token_enc) == third.refresh_token
        assert vault.decrypt(row.access_token_enc) == third.access_token


@pytest.mark.slow
@pytest.mark.parametrize("system", ["zoho", "concur"])
def test_eight_processes_at_expiry_make_exactly_one_refresh(
    db: Any, sandbox_settings: Any, connected: int, admin: Any, system: str
) -> None:
    from sandbox.concur.admin import ConcurAdmin

    ConcurAdmin(admin.base_url).settings(rotate_refresh_tokens=True)
    admin.advance_clock(HOUR + 60)
    before = refreshes(admin, system)
    spec = {
        "database_url": db.url,
        "secret_key": sandbox_settings.secret_keys[0],
        "var_dir": str(sandbox_settings.var_dir),
        "sandbox_url": sandbox_settings.sandbox_url,
        "connection_id": connected,
        "system": system,
        "advance": HOUR + 60,
        "start_at": time.time() + 4.0,
    }
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), json.dumps(spec)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]  # fmt: skip
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({r["pid"] for r in results}) == 8
    assert len({r["token_sha"] for r in results}) == 1  # all eight use the one new token
    assert refreshes(admin, system) - before == 1
    # The stored credential is healthy and usable by everyone afterwards.
    with later(HOUR + 120):
        assert all(c.ok for c in ping.ping(db, sandbox_settings, connected))


def test_refresh_rechecks_expiry_after_taking_the_lock(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    # Two managers (two "processes") for one credential: the second, arriving after the first
    # refreshed, must find the fresh token and not refresh again.
    one = connections.token_manager(db, sandbox_settings, connected, "zoho")
    two = connections.token_manager(db, sandbox_settings, connected, "zoho")
    stale = one.current().access_token
    with later(HOUR):
        assert one.refresh(force=True, stale_token=stale).refreshed
        result = two.refresh(force=True, stale_token=stale)
    assert not result.refreshed and result.credential.access_token != stale
    assert zoho_refreshes(admin) == 1


def test_dead_credentials_are_skipped_by_the_beat(
    db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    from sandbox.concur.admin import ConcurAdmin

    ConcurAdmin(admin.base_url).revoke_refresh_tokens(company_id=concur_config.SEED_US_COMPANY_ID)
    with later(HOUR - 60):
        report = token_refresh.refresh_due(db, sandbox_settings)
        assert len(report.dead) == 1 and len(report.refreshed) == 1
        again = token_refresh.refresh_due(db, sandbox_settings)
    assert again.dead == [] and again.refreshed == []
    with db.session() as session:
        statuses = dict(session.execute(select(Credential.system, Credential.status)).all())
    assert statuses == {"zoho": "connected", "concur": "needs_reauth"}


def test_token_manager_repr_hides_tokens(db: Any, sandbox_settings: Any, connected: int) -> None:
    manager = connections.token_manager(db, sandbox_settings, connected, "zoho")
    view = manager.current()
    assert isinstance(manager, TokenManager)
    assert view.access_token not in repr(view) and view.refresh_token not in repr(manager)
