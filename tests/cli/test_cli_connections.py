"""The connection commands as an operator runs them, against the real sandbox."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import main
from connector import config
from connector.zoho.auth import SCOPE
from sandbox.concur import config as cc
from sandbox.concur.admin import ConcurAdmin
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
        "CONNECTOR_PUBLIC_URL": "https://connector.example",
    }
    for key in [k for k in list(__import__("os").environ) if k.startswith(("ZOHO_", "CONCUR_"))]:
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

    yield run
    config._cached = None


def test_connect_both_sides_ping_and_show(cli: Any, admin: Any) -> None:
    cid = cli("connections", "create", "acme").output.strip()
    assert cid.isdigit()
    hint = cli("connect", "zoho", cid).output
    assert f"https://connector.example/oauth/zoho/start?connection={cid}" in hint
    grant = admin.zoho_self_client_code(scope=SCOPE)
    out = cli("connect", "zoho", cid, "--code", grant["code"], "--accounts-server",
              grant["accounts_server"], "--organization-id", zoho_seed.MAIN_ORG_ID).output  # fmt: skip
    assert "Acme Corporation" in out
    out = cli("connect", "concur", cid, "--company-id", cc.SEED_US_COMPANY_ID,
              "--request-token", cc.SEED_US_REQUEST_TOKEN).output  # fmt: skip
    assert "/concur/us2" in out
    lines = cli("ping", cid).output.strip().splitlines()
    assert len(lines) == 6 and all(" ok " in line and " ms " in line for line in lines)
    shown = json.loads(cli("connections", "show", cid, "--json").output)
    assert shown["zoho"]["status"] == "connected" and shown["concur"]["status"] == "connected"
    text = cli("connections", "show", "acme").output
    assert "organization 10234695 (Acme Corporation)" in text and "token expires in" in text
    listed = json.loads(cli("connections", "list", "--json").output)
    assert [c["name"] for c in listed] == ["acme"]
    assert "acme" in cli("connections", "list").output


def test_ping_fails_with_the_vendors_message(cli: Any, admin: Any) -> None:
    cid = cli("connections", "create", "--json", "dead").output
    cid = str(json.loads(cid)["id"])
    grant = admin.zoho_self_client_code(scope=SCOPE)
    cli("connect", "zoho", cid, "--code", grant["code"], "--accounts-server",
        grant["accounts_server"], "--organization-id", zoho_seed.MAIN_ORG_ID)  # fmt: skip
    for token in admin.zoho_tokens():
        admin.zoho_revoke(id=token["id"])
    out = cli("ping", cid, code=1).output
    assert "FAIL" in out and "invalid_code" in out
    assert "not connected yet" in out  # the Concur side was never authorized
    assert json.loads(cli("connections", "show", cid, "--json").output)["status"] == "needs_reauth"


def test_errors_are_one_line_without_traceback(cli: Any) -> None:
    result = cli("connections", "show", "999", code=1)
    assert result.output.strip() == "error: UnknownConnection: no connection with id or name '999'"
    cid = cli("connections", "create", "x").output.strip()
    bad = cli("connect", "zoho", cid, "--code", "1000.nope", "--organization-id", "1", code=1)
    assert bad.output.startswith("error: ReauthRequired: ") and "invalid_code" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_webhooks_subscriptions_mappings_and_delete(cli: Any, admin: Any, tmp_path: Path) -> None:
    cid = cli("connections", "create", "hooks").output.strip()
    hook = json.loads(cli("webhooks", "zoho", cid, "--json").output)
    assert hook["url"] == f"https://connector.example/webhooks/zoho/{cid}"
    assert json.loads(cli("webhooks", "zoho", cid, "--json").output)["secret"] == hook["secret"]
    rotated = json.loads(cli("webhooks", "zoho", cid, "--rotate", "--json").output)
    assert rotated["secret"] != hook["secret"]

    token = ConcurAdmin(admin.base_url).new_request_token(cc.SEED_US_COMPANY_ID)
    cli("connect", "concur", cid, "--company-id", cc.SEED_US_COMPANY_ID, "--request-token", token)
    out = cli("concur", "subscribe", cid, "--endpoint", "https://connector.example/webhooks/concur")
    assert "saved successfully" in out.output
    cli("concur", "subscribe", cid, "--endpoint", "https://connector.example/webhooks/concur2")
    subs = json.loads(cli("concur", "subscriptions", "--json").output)
    assert len(subs) == 1 and subs[0]["topic"] == "public.concur.expense.report"
    assert subs[0]["webHookConfig"]["endpoint"].endswith("/concur2")
    assert "public.concur.expense.report" in cli("concur", "subscriptions").output

    grant = admin.zoho_self_client_code(scope=SCOPE)
    cli("connect", "zoho", cid, "--code", grant["code"], "--accounts-server",
        grant["accounts_server"], "--organization-id", zoho_seed.MAIN_ORG_ID)  # fmt: skip
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "payables:\n  owner: {LedgerCode: DEFAULT}\n  expense_types: {Airfare: AIRFR}\n"
        "expenses:\n  default_account: Travel Expense\n"
        "  credit_accounts: {CASH: Employee Reimbursements}\n"
    )
    assert "rules version 1 stored" in cli("mappings", "import", cid, str(rules_file)).output
    exported = cli("mappings", "export", cid).output
    assert "Travel Expense" in exported and "LedgerCode" in exported
    assert json.loads(cli("mappings", "export", cid, "--json").output)["payables"]["owner"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"expenses": {"default_account": "Nope", "credit_accounts": {}},
                                  "payable": {}}))  # fmt: skip
    failed = cli("mappings", "import", cid, str(broken), code=1).output
    assert "payable: unknown section" in failed and "expenses.default_account" in failed
    assert "expenses.credit_accounts" in failed

    out = cli("connections", "delete", cid, "--yes").output
    assert "revoked the Zoho refresh token" in out
    cli("connections", "show", cid, code=1)


def test_request_token_never_echoes(cli: Any) -> None:
    cid = cli("connections", "create", f"c-{secrets.token_hex(2)}").output.strip()
    out = cli("connect", "concur", cid, "--company-id", cc.SEED_US_COMPANY_ID,
              "--request-token", "wrong-request-token-123", code=1).output  # fmt: skip
    assert "wrong-request-token-123" not in out and "refused the company request token" in out
