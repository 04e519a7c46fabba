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
            "cli.main",
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
            [sys.executable, "-m", "cli.main", "selftest", "--timeout", "60"],
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


# --------------------------------------------------------------------------- restart (#14.9)


def _start_stack(env: dict[str, str], port: int, sandbox_port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", "--port", str(port),
         "--sandbox-port", str(sandbox_port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.3)  # waiting for a server to boot, not for a race
    out = _stop_stack(proc)
    raise AssertionError(f"connector run did not get ready:\n{out[-3000:]}")


def _stop_stack(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the stack's process group (what Ctrl-C / a service manager does); its output."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out


def test_a_restart_keeps_the_documents_a_record_points_at(tmp_path: Path) -> None:
    import sqlite3

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONNECTOR_", "DATABASE_", "REDIS_", "ZOHO_", "CONCUR_"))
    }
    var = tmp_path / "var"
    env["CONNECTOR_VAR_DIR"] = str(var)
    port, sandbox_port = free_port(), free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}/_admin"
    proc = _start_stack(env, port, sandbox_port)
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "cli.main", "demo", "--timeout", "150"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert requests.get(f"{sandbox}/snapshot", timeout=5).json()["restored"] is False
    finally:
        first = _stop_stack(proc)
    assert "set-up: authorized zoho and concur against the sandbox" in first, first[-3000:]
    assert (var / "sandbox" / "sandbox.snapshot").exists()
    with sqlite3.connect(var / "connector.sqlite") as ledger:
        posted = ledger.execute(
            "SELECT source_id, target_id FROM sync_records WHERE flow = 'payables' "
            "AND state = 'posted' AND target_id IS NOT NULL"
        ).fetchall()
    assert posted, "the demo posted no bill"
    source_id, request_id = posted[0]
    bill_id = source_id.rsplit(":", 1)[-1]  # "bill:<id>"

    proc = _start_stack(env, port, sandbox_port)
    try:
        assert requests.get(f"{sandbox}/snapshot", timeout=5).json()["restored"] is True
        created = requests.get(f"{sandbox}/created", timeout=10).json()["concur"]
        request = next((p for p in created["payment_requests"] if p["id"] == request_id), None)
        assert request is not None, (
            f"payment request {request_id} not in the restored sandbox "
            f"({[p['id'] for p in created['payment_requests']]}); first run's output:\n"
            f"{first[-3000:]}"
        )
        assert request["ApprovalStatus"] is not None  # the payment request still exists
        orgs = requests.get(f"{sandbox}/zoho/orgs", timeout=10).json()["organizations"]
        assert sum(o["counts"]["bills"] for o in orgs) > 0
        bill = requests.patch(f"{sandbox}/zoho/orgs/10234695/bills/{bill_id}", json={}, timeout=10)
        assert bill.status_code == 200, bill.text  # the Zoho bill the record came from exists
        ping = subprocess.run(
            [sys.executable, "-m", "cli.main", "ping", "1"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        second = _stop_stack(proc)
    assert "Traceback" not in second, second[-3000:]
    # The stored credentials still work against the restored sandbox: no re-authorization.
    assert "set-up: authorized" not in second, second[-3000:]
    assert "set-up: connection 1 (sandbox-demo) is ready" in second, second[-3000:]
