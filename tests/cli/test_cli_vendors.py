"""``connector vendors diff`` (text and ``--json``) and ``connector sync ID --flow vendors``,
as an operator runs them against the seeded sandbox."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import main
from connector import config
from connector.db import Database
from connector.models import AuditEvent, SyncCursor, SyncRecord, VendorLink
from connector.zoho.auth import SCOPE
from sandbox.concur import config as cc
from sandbox.zoho import seed as zoho_seed

TEST_KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'connector.sqlite'}",
        "CONNECTOR_SECRET_KEY": TEST_KEY,
        "CONNECTOR_VAR_DIR": str(tmp_path / "var"),
        "ZOHO_CLIENT_ID": "sandbox-zoho-client",
        "ZOHO_CLIENT_SECRET": "sandbox-zoho-secret",
        "ZOHO_ACCOUNTS_URL": f"{sandbox.url}/zoho/us/accounts",
        "CONCUR_CLIENT_ID": "sandbox-concur-client",
        "CONCUR_CLIENT_SECRET": "sandbox-concur-secret",
        "CONCUR_AUTH_URL": f"{sandbox.url}/concur/us2",
        "CONNECTOR_SANDBOX_URL": sandbox.url,
    }
    for key in [k for k in os.environ if k.startswith(("ZOHO_", "CONCUR_", "VENDORS_"))]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from connector.migrate import upgrade

    upgrade(env["DATABASE_URL"])
    config.get_settings(reload=True)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(main, list(args))
        assert result.exit_code == code, (result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    run.db = Database(env["DATABASE_URL"])  # type: ignore[attr-defined]
    yield run
    run.db.dispose()  # type: ignore[attr-defined]
    config._cached = None


def connect(cli: Any, admin: Any) -> str:
    cid = cli("connections", "create", "acme").output.strip()
    grant = admin.zoho_self_client_code(scope=SCOPE)
    cli("connect", "zoho", cid, "--code", grant["code"], "--accounts-server",
        grant["accounts_server"], "--organization-id", zoho_seed.MAIN_ORG_ID)  # fmt: skip
    cli("connect", "concur", cid, "--company-id", cc.SEED_US_COMPANY_ID,
        "--request-token", cc.SEED_US_REQUEST_TOKEN)  # fmt: skip
    return str(cid)


def counts(db: Database) -> tuple[int, int, int, int]:
    with db.session() as s:
        return (
            s.execute(select(func.count()).select_from(VendorLink)).scalar_one(),
            s.execute(select(func.count()).select_from(SyncRecord)).scalar_one(),
            s.execute(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.step == "vendors")
            ).scalar_one(),
            s.execute(select(func.count()).select_from(SyncCursor)).scalar_one(),
        )


def api_writes(admin: Any) -> int:
    return sum(
        n
        for k, n in admin.stats()["per_endpoint"].items()
        if k.startswith(("POST ", "PUT ", "DELETE ")) and "oauth" not in k and "token" not in k
    )


def test_diff_prints_the_plan_and_changes_nothing(cli: Any, admin: Any) -> None:
    cid = connect(cli, admin)
    db = cli.db
    before_db, before_writes = counts(db), api_writes(admin)

    text = cli("vendors", "diff", cid).output
    assert "Nothing was changed" in text
    assert "Linked (6, 6 new):" in text
    assert "Delta Air Lines: Zoho" in text and "= Concur DELTA/MAIN (matched by name)" in text
    assert "Would create in Concur (6):" in text and "Amazon Business" in text
    assert "Would create in Zoho (6):" in text and "Hooli Cloud Services" in text
    assert "Would update (6):" in text
    assert "Concur city: 'Atlanta' -> 'Springfield'  [changed on both sides: zoho wins]" in text
    assert "Zoho   state: (empty) -> 'GA'" in text
    assert "Ambiguous, left for a person to decide (1):" in text
    assert "same_name_in_concur" in text and "Concur VANDEL1/MAIN, Concur VANDEL2/MAIN" in text
    assert "GLOBEX/REMIT2" in text

    plan = json.loads(cli("vendors", "diff", "acme", "--json").output)
    assert {x["concur_vendor"] for x in plan["linked"]} == {
        "DELTA/MAIN", "MARRIOTT/MAIN", "HERTZ/MAIN", "UBER/MAIN", "STAPLES/MAIN", "VERIZON/MAIN",
    }  # fmt: skip
    assert len(plan["would_create_in_concur"]) == 6 and len(plan["would_create_in_zoho"]) == 6
    uber = next(u for u in plan["would_update"] if u["concur_vendor"] == "UBER/MAIN")
    assert {"side": "concur", "field": "name", "from": "Uber Technologies, Inc.",
            "to": "Uber Technologies", "conflict": True} in uber["changes"]  # fmt: skip
    assert plan["ambiguous"][0]["concur_vendors"] == ["VANDEL1/MAIN", "VANDEL2/MAIN"]

    assert counts(db) == before_db  # no link, record, audit row or cursor
    assert api_writes(admin) == before_writes

    # The real pass, then the diff is empty but for what stays ambiguous.
    out = cli("sync", cid, "--flow", "vendors").output
    assert out.startswith("vendors: 0 record(s) enqueued. ok: 6 linked (6 new)")
    plan = json.loads(cli("vendors", "diff", cid, "--json").output)
    assert len(plan["linked"]) == 18
    assert plan["would_create_in_concur"] == plan["would_create_in_zoho"] == []
    assert plan["would_update"] == []
    assert [a["reason"] for a in plan["ambiguous"]] == ["same_name_in_concur"]
    assert "Would update (0):" in cli("vendors", "diff", cid, "--full").output


def test_diff_of_an_unknown_connection_is_a_clean_error(cli: Any) -> None:
    out = cli("vendors", "diff", "nope", code=1).output
    assert "no connection with id or name 'nope'" in out


def test_beat_reconciles_vendors_on_the_configured_interval() -> None:
    import celeryconfig

    entry = celeryconfig.beat_schedule["reconcile-vendors"]
    assert entry["task"] == "sync.poll_all" and entry["args"] == ("vendors",)
    assert entry["schedule"] == config.get_settings().vendors_sync_interval
    env = {"CONNECTOR_SECRET_KEY": TEST_KEY, "CONNECTOR_VAR_DIR": "/tmp/unused-var"}
    assert config.Settings.from_env(env).vendors_sync_interval == 3600
    assert (
        config.Settings.from_env({**env, "VENDORS_SYNC_INTERVAL": "900"}).vendors_sync_interval
        == 900
    )
    assert celeryconfig.task_routes["vendors.*"] == {"queue": "default"}
