"""Server lifecycle, the CLI entry point and the shared building blocks."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from sandbox.clock import Clock
from sandbox.delivery import Deliverer
from sandbox.server import SandboxServer
from sandbox.stats import RateWindow

ROOT = Path(__file__).resolve().parents[2]


def test_server_starts_on_a_free_port_and_stops() -> None:
    with SandboxServer(seed=True) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.state.base_url == server.url
        r = requests.get(f"{server.url}/zoho/us/accounts/oauth/serverinfo", timeout=5)
        assert r.status_code == 200
        url = server.url
    try:
        requests.get(url, timeout=1)
        raise AssertionError("server still answering after stop()")
    except requests.ConnectionError:
        pass


def test_cli_serve_prints_where_everything_lives() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Sandbox running at http://127.0.0.1:"), first
        url = first.split()[-1]
        lines = [proc.stdout.readline() for _ in range(12)]
        text = "".join(lines)
        assert "/zoho/eu/accounts" in text and "/_admin/" in text
        orgs = requests.get(f"{url}/_admin/zoho/orgs", timeout=5).json()["organizations"]
        assert len(orgs) == 4
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_rate_window_tracks_max_in_window() -> None:
    now = [0.0]
    w = RateWindow(3, 10.0, clock=lambda: now[0])
    assert [w.hit("a") for _ in range(4)] == [True, True, True, False]
    assert w.max_in_window("a") == 3 and w.count("a") == 3
    now[0] = 10.5
    assert w.hit("a") and w.count("a") == 1
    w.set_limit(1, key="b")
    assert [w.hit("b"), w.hit("b")] == [True, False]
    assert w.max_in_window("a") == 3


def test_clock_only_moves_forward() -> None:
    c = Clock()
    t = c.now()
    c.advance(100)
    assert c.now() >= t + 100
    try:
        c.advance(-1)
        raise AssertionError("negative advance accepted")
    except ValueError:
        pass
    c.reset()
    assert c.offset == 0


def test_deliverer_flush_waits_without_polling() -> None:
    d = Deliverer(base_delay=0.01)
    done = threading.Event()

    def flush() -> None:
        d.flush(timeout=5)
        done.set()

    d.submit("http://127.0.0.1:9/nothing", b"{}", {}, attempts=2)
    t = threading.Thread(target=flush)
    t.start()
    t.join(timeout=5)
    assert done.is_set() and d.pending() == 0
    assert [e["attempt"] for e in d.entries()] == [1, 2]
    start = time.monotonic()
    assert d.flush(timeout=1) and time.monotonic() - start < 0.5
