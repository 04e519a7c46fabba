"""No secret in gunicorn's access log (#12.2): the Procfile's ``web`` line, run as the platform
runs it (gunicorn picks up ``gunicorn.conf.py`` from the working directory), receives a webhook
with ``?token=`` and an OAuth callback with ``?code=&state=``; the access log shows the paths
and none of the values."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from cli.demo import wait_until
from connector.config import Settings
from connector.db import Database
from connector.migrate import upgrade
from connector.webhook_secrets import webhook_credentials

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


def _procfile_web() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no web process in the Procfile")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_access_log_of_the_procfile_web_process_has_no_secret(
    tmp_path: Path, redis_url: str
) -> None:
    env: dict[str, Any] = {
        "CONNECTOR_SECRET_KEY": KEY,
        "CONNECTOR_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'connector.sqlite'}",
        "REDIS_URL": redis_url,
    }
    upgrade(env["DATABASE_URL"])
    settings = Settings.from_env(env)
    db = Database(settings.database_url)
    from connector import connections

    cid = connections.create(db, "access-log")
    creds = webhook_credentials(db, settings, cid)
    db.dispose()

    port = _free_port()
    log_path = tmp_path / "web.log"
    bin_dir = str(Path(sys.executable).parent)
    proc_env = {**os.environ, **env, "PORT": str(port), "WEB_CONCURRENCY": "1",
                "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}  # fmt: skip
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {_procfile_web()}"], cwd=ROOT, env=proc_env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            assert wait_until(f"{base}/healthz", timeout=60, alive=lambda: proc.poll() is None)
            hook = requests.post(
                f"{base}/webhooks/zoho/{cid}?token={creds.token}&src=books",
                json={"bill": {"bill_id": "1", "last_modified_time": "2026-12-01T10:00:00+0000"}},
                timeout=30,
            )
            assert hook.status_code in (200, 202), hook.text
            refused = requests.post(f"{base}/webhooks/zoho/{cid}?token={creds.secret}",
                                    json={"bill": {"bill_id": "2"}}, timeout=30)  # fmt: skip
            assert refused.status_code == 401
            requests.get(f"{base}/oauth/zoho/callback?code=1000.grantcode.secret&state=st4te",
                         headers={"Referer": f"{base}/ops?token={creds.token}"},
                         timeout=30)  # fmt: skip
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    text = log_path.read_text(errors="replace")
    assert f'"POST /webhooks/zoho/{cid} HTTP/1.1" 20' in text, text  # the access log was read
    assert "/oauth/zoho/callback HTTP/1.1" in text
    for secret in (creds.token, creds.secret, "1000.grantcode.secret", "st4te"):
        assert secret not in text, f"{secret[:6]}... in the access log"
