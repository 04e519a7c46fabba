"""The sandbox keeps its state across restarts (#14.9): documents, vendors and issued tokens
survive; a corrupt file is moved aside; unchanged state is not rewritten; the loader refuses
foreign classes; a failed write leaves the old file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox import snapshot
from sandbox.admin import AdminClient
from sandbox.server import SandboxServer
from sandbox.state import SandboxState
from sandbox.zoho import seed as zseed
from sandbox.zoho.store import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

MAIN_ORG = zseed.MAIN_ORG_ID


def _tokens(server: SandboxServer) -> dict[str, Any]:
    """A refresh and an access token issued the way the connector gets them (self client)."""
    grant = AdminClient(server.url).zoho_self_client_code(scope="ZohoBooks.fullaccess.all")
    answer = requests.post(
        f"{grant['accounts_server']}/oauth/v2/token",
        data={"grant_type": "authorization_code", "code": grant["code"],
              "client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET},
        timeout=10,
    )  # fmt: skip
    body = answer.json()
    assert "access_token" in body, body
    return body  # type: ignore[no-any-return]


def _get_bill(server: SandboxServer, api_domain: str, token: str, bill_id: str) -> Any:
    # Same path, another port: the api_domain of the first run names the old server.
    path = api_domain.split("/zoho/", 1)[1]
    return requests.get(
        f"{server.url}/zoho/{path}/books/v3/bills/{bill_id}",
        params={"organization_id": MAIN_ORG},
        headers={"Authorization": f"Zoho-oauthtoken {token}"},
        timeout=10,
    )


def test_documents_vendors_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    first = SandboxServer(state_dir=tmp_path).start()
    try:
        admin = AdminClient(first.url)
        tokens = _tokens(first)
        bill = admin._call("POST", f"/zoho/orgs/{MAIN_ORG}/bills", {})["bill"]
        admin.generate("concur_vendors", 3)
        vendors = {c: len(co.vendors) for c, co in first.state.concur.store.companies.items()}
        webhook = {"url": "http://127.0.0.1:9/hook", "secret": "a" * 40}
        admin._call("PUT", f"/zoho/orgs/{MAIN_ORG}/webhook", webhook)
        admin.add_fault("GET", "/zoho/*/api/books/v3/bills/*", 500, count=99)
        assert not first.keeper.restored  # type: ignore[union-attr]
    finally:
        first.stop()
    assert (tmp_path / snapshot.FILENAME).exists()

    second = SandboxServer(state_dir=tmp_path).start()
    try:
        assert second.keeper is not None and second.keeper.restored
        assert requests.get(f"{second.url}/_admin/snapshot", timeout=5).json()["restored"]
        got = _get_bill(second, tokens["api_domain"], tokens["access_token"], bill["bill_id"])
        assert got.status_code == 200, got.text  # the token and the bill, no fault
        assert got.json()["bill"]["bill_id"] == bill["bill_id"]
        restored = {c: len(co.vendors) for c, co in second.state.concur.store.companies.items()}
        assert restored == vendors
        assert second.state.zoho.webhooks[MAIN_ORG]["url"] == webhook["url"]
        refreshed = requests.post(
            f"{second.url}/zoho/{tokens['api_domain'].split('/zoho/')[1].split('/')[0]}"
            "/accounts/oauth/v2/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                  "client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET},
            timeout=10,
        ).json()  # fmt: skip
        assert "access_token" in refreshed, refreshed
        # Seeding again did not happen: no second copy of the demo tenant's documents.
        assert (
            second.state.zoho.orgs[MAIN_ORG].bills.keys()
            == first.state.zoho.orgs[MAIN_ORG].bills.keys()
        )
    finally:
        second.stop()


def _seeded_state() -> SandboxState:
    from sandbox.app import create_app

    state = SandboxState()
    create_app(state)  # registers the Concur half
    state.seed()
    return state


def test_a_corrupt_snapshot_is_moved_aside_and_the_sandbox_starts_seeded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / snapshot.FILENAME).write_bytes(b"\x80\x05 this is not a snapshot")
    state = _seeded_state()
    state.reset()
    keeper = snapshot.SnapshotKeeper(state, tmp_path)
    assert keeper.load() is False
    aside = list(tmp_path.glob(f"{snapshot.FILENAME}.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"\x80\x05 this")
    assert not (tmp_path / snapshot.FILENAME).exists()
    assert "unreadable" in caplog.text and "fresh seeded sandbox" in caplog.text
    server = SandboxServer(state_dir=tmp_path)
    (tmp_path / snapshot.FILENAME).write_bytes(b"garbage")
    server.start()
    try:
        assert MAIN_ORG in server.state.zoho.orgs  # seeded as fresh
        assert len(list(tmp_path.glob(f"{snapshot.FILENAME}.unreadable-*"))) == 2
    finally:
        server.stop()


def test_unchanged_state_is_not_rewritten(tmp_path: Path) -> None:
    state = _seeded_state()
    keeper = snapshot.SnapshotKeeper(state, tmp_path)
    assert keeper.save() is True
    mtime = (tmp_path / snapshot.FILENAME).stat().st_mtime_ns
    assert keeper.save() is False and keeper.writes == 1
    # Per-run things (limits, counters, list caches) are not state: touching them writes nothing.
    org = state.zoho.orgs[MAIN_ORG]
    org.daily_used += 5
    org.list_cache[("x",)] = (1, [])
    assert keeper.save() is False
    assert (tmp_path / snapshot.FILENAME).stat().st_mtime_ns == mtime
    state.zoho.put_record(org, "bills", {"bill_id": "B-NEW", "bill_number": "N-1"})
    assert keeper.save() is True and keeper.writes == 2


class Foreign:
    """A class the loader must never resolve."""


def test_the_loader_refuses_a_foreign_class(tmp_path: Path) -> None:
    blob = pickle.dumps({"format": snapshot.FORMAT, "zoho": {"x": Foreign()}})
    with pytest.raises(snapshot.SnapshotError, match="not allowed"):
        snapshot.loads(blob)
    evil = pickle.dumps({"format": snapshot.FORMAT, "zoho": {"x": os.getcwd}})
    with pytest.raises(snapshot.SnapshotError, match=r"(posix|os)\.getcwd"):
        snapshot.loads(evil)
    (tmp_path / snapshot.FILENAME).write_bytes(evil)
    assert snapshot.SnapshotKeeper(_seeded_state(), tmp_path).load() is False


def test_a_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _seeded_state()
    keeper = snapshot.SnapshotKeeper(state, tmp_path)
    keeper.save()
    before = (tmp_path / snapshot.FILENAME).read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot.os, "fsync", broken_fsync)
    org = state.zoho.orgs[MAIN_ORG]
    state.zoho.put_record(org, "bills", {"bill_id": "B-LOST", "bill_number": "N-2"})
    with pytest.raises(OSError, match="No space"):
        keeper.save()
    assert (tmp_path / snapshot.FILENAME).read_bytes() == before
    assert list(tmp_path.iterdir()) == [tmp_path / snapshot.FILENAME]  # no tmp file left
    monkeypatch.undo()
    assert keeper.save() is True  # the change was not forgotten: the next tick writes it
    assert (
        "B-LOST"
        in snapshot.loads((tmp_path / snapshot.FILENAME).read_bytes())["zoho"]["orgs"][
            MAIN_ORG
        ].bills
    )
