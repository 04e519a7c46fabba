"""``connector webhooks zoho``: Zoho-valid secret and token, and ``--inspect-last`` (#14.1-2),
the procedure docs/security.md gives an operator to confirm Books' signature scheme."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import main
from connector import config
from connector.db import Database
from sandbox.zoho.webhooks import build_request
from webhooks import create_app

TEST_KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'connector.sqlite'}",
        "CONNECTOR_SECRET_KEY": TEST_KEY,
        "CONNECTOR_VAR_DIR": str(tmp_path / "var"),
        "CONNECTOR_PUBLIC_URL": "https://connector.example",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ZOHO_WEBHOOK_SIGNATURE_ENCODING", raising=False)
    from connector.migrate import upgrade

    upgrade(env["DATABASE_URL"])
    config.get_settings(reload=True)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(main, list(args))
        assert result.exit_code == code, (result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    run.env = env  # type: ignore[attr-defined]
    yield run
    config._cached = None


def test_secret_token_rotate_and_inspect_last(cli: Any) -> None:
    cid = cli("connections", "create", "hooks").output.strip()
    assert (
        "no Zoho delivery recorded yet"
        in cli("webhooks", "zoho", cid, "--inspect-last", code=1).output
    )
    hook = json.loads(cli("webhooks", "zoho", cid, "--json").output)
    assert re.fullmatch(r"[A-Za-z0-9]{40,50}", hook["secret"]) and hook["token"] != hook["secret"]
    rotated = json.loads(cli("webhooks", "zoho", cid, "--rotate", "--json").output)
    assert re.fullmatch(r"[A-Za-z0-9]{40,50}", rotated["secret"])
    assert rotated["secret"] != hook["secret"] and rotated["token"] != hook["token"]
    text = cli("webhooks", "zoho", cid).output
    assert rotated["secret"] in text and rotated["token"] in text

    # One real-looking delivery signed in base64 while we verify hex: refused, and the
    # operator learns from --inspect-last which setting makes it pass.
    from webhooks import zoho as zoho_receiver

    zoho_receiver._diagnosed.clear()  # the once-a-minute throttle is per process
    settings = config.get_settings(reload=True)
    db = Database(settings.database_url)
    app = create_app(settings, db=db, config={"ENQUEUE_EVENT": lambda _id: None}).test_client()
    webhook = {"url": f"http://r/webhooks/zoho/{cid}?token={rotated['token']}&org=1",
               "secret": rotated["secret"]}  # fmt: skip
    url, body, headers = build_request(webhook, "bill", {"bill_id": "7"}, "base64")
    assert app.post(url.removeprefix("http://r"), data=body, headers=headers).status_code == 401
    out = cli("webhooks", "zoho", cid, "--inspect-last").output
    assert "outcome: refused" in out and "X-Zoho-Webhook-Signature" in out
    assert "ZOHO_WEBHOOK_SIGNATURE_ENCODING=base64" in out and "MATCHES (base64)" in out
    assert rotated["secret"] not in out and rotated["token"] not in out
    assert ("token", "***") in [tuple(q) for q in json.loads(
        cli("webhooks", "zoho", cid, "--inspect-last", "--json").output)["query"]]  # fmt: skip
    db.dispose()
