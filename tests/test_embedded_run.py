"""`connector run` on the embedded default: no servers, the receiver answers /readyz, and a
record goes through the SQLite broker and a real worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connector_run_embedded_is_ready_and_processes_work(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONNECTOR_", "DATABASE_", "REDIS_", "ZOHO_", "CONCUR_"))
    }
    env["CONNECTOR_VAR_DIR"] = str(tmp_path / "var")
    port, sandbox_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector.cli",
            "run",
            "--port",
            str(port),
            "--sandbox-port",
            str(sandbox_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.3)  # waiting for a server to boot, not for a race
        assert ready is not None and ready.status_code == 200, ready.text if ready else "no answer"
        assert ready.json()["checks"]["broker"]["ok"]
        assert (
            requests.get(f"http://127.0.0.1:{sandbox_port}/_admin/stats", timeout=5).status_code
            == 200
        )
        # connector run declares its loopback bind (WEB_BIND), so /ops is open to this machine
        # without OPS_BASIC_AUTH; without the declaration it would answer 503 (issue #12 item 4).
        ops = requests.get(f"http://127.0.0.1:{port}/ops/", timeout=10)
        assert ops.status_code == 200, ops.text
        selftest = subprocess.run(
            [sys.executable, "-m", "connector.cli", "selftest", "--timeout", "60"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert selftest.returncode == 0, selftest.stdout + selftest.stderr
        assert '"state": "posted"' in selftest.stdout
        assert (tmp_path / "var" / "connector.sqlite").exists() and (
            tmp_path / "var" / "broker.sqlite"
        ).exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert "Traceback" not in out, out[-3000:]
    # The start-up output links the operator's page and the sandbox's page, and the sandbox
    # set-up (connection, authorization, rules, webhook, ESS subscription) ran.
    assert f"http://127.0.0.1:{port}/ops" in out, out[-3000:]
    assert f"sandbox page:          http://127.0.0.1:{sandbox_port}/" in out, out[-3000:]
    assert "create a bill on the sandbox page" in out.lower()
    assert "set-up: connection 1 (sandbox-demo) is ready" in out, out[-3000:]
