"""A whole connector stack in OS processes, with handles to hurt it.

Used by the fault-injection suite (``tests/chaos``) and the benchmarks. Each stack gets:

- its own PostgreSQL schema, reached through a ``TcpProxy`` so a test can make the database
  unreachable (``db_proxy.cut()``) without stopping the machine's shared server;
- its own ``redis-server`` on a free port, so a test can restart Redis without touching anyone
  else's (it keeps nothing on disk, like a restarted cache: lost messages must come back from
  the ledger through the sweeper);
- the sandbox, the receiver (gunicorn), workers and beat as processes in their own sessions, so
  ``kill -9`` takes a worker's pool children down with it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tasks.launch import QUEUES, beat_argv, worker_argv

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET_KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it holds or ``timeout`` passes (for other processes' progress)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut()`` drops every connection and refuses new
    ones until ``restore()`` — what a database outage looks like to the application."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"proxy-{self.port}", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in list(self._pairs):
                self._close(sock)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for sock in list(self._pairs):
                self._close(sock)
        self._listener.close()

    def _close(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            with contextlib.suppress(OSError):
                s.close()
            self._pairs.pop(s, None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                    continue
                with self._lock:
                    peer = self._pairs.get(sock)
                    if peer is None:
                        continue
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._close(sock)
                        continue
                    try:
                        peer.sendall(data)
                    except OSError:
                        self._close(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._cut.is_set():
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            for s in (client, upstream):
                s.setblocking(True)
                self._selector.register(s, selectors.EVENT_READ, None)
            self._pairs[client] = upstream
            self._pairs[upstream] = client


# --------------------------------------------------------------------------- Redis


class PrivateRedis:
    """A ``redis-server`` of our own on a free port, restartable at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="stack-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, timeout=10, what="redis-server")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """``kill -9`` the process and everything it started (a worker and its pool)."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float = 20) -> None:
        self.signal(signal.SIGTERM)
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    """Everything a scenario needs, torn down by ``close()``."""

    name: str
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="stack-")))
    procs: dict[str, Proc] = field(default_factory=dict)
    redis: PrivateRedis | None = None
    db_proxy: TcpProxy | None = None
    database_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    # ---------------------------------------------------------------- services

    def start_services(self) -> Stack:
        import sqlalchemy as sa

        from connector.migrate import upgrade

        self.redis = PrivateRedis().start()
        server = sa.engine.make_url(PG_SERVER)
        self.db_proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
        schema = f"stack_{self.name}_{os.getpid()}"
        engine = sa.create_engine(PG_SERVER)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"'
            )
        engine.dispose()
        proxied = server.set(host="127.0.0.1", port=self.db_proxy.port)
        self.database_url = (
            proxied.render_as_string(hide_password=False)
            + ("&" if "?" in str(proxied) else "?")
            + f"options=-csearch_path%3D{schema}"
        )
        self._schema = schema
        upgrade(self.database_url)
        return self

    def env(self, **extra: str) -> dict[str, str]:
        assert self.redis is not None
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONNECTOR_", "CELERY_", "DATABASE_", "REDIS_"))
        }
        var = self.workdir / "var"
        var.mkdir(exist_ok=True)
        env["CONNECTOR_PUBLIC_URL"] = "http://127.0.0.1:5000"  # required in production mode
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis.url,
            CONNECTOR_SECRET_KEY=SECRET_KEY,
            CONNECTOR_VAR_DIR=str(var),
            PYTHONPATH=str(ROOT),
            LOG_LEVEL="INFO",
            **self.extra_env,
            **extra,
        )
        return env

    # ---------------------------------------------------------------- processes

    def start(self, name: str, argv: list[str], **env: str) -> Proc:
        proc = Proc(name, argv, self.env(**env), self.workdir / f"{name}.log").start()
        self.procs[name] = proc
        return proc

    def start_worker(
        self,
        name: str = "worker",
        *,
        concurrency: int = 2,
        queues: str = QUEUES,
        **env: str,
    ) -> Proc:
        proc = self.start(
            name,
            worker_argv(concurrency=concurrency, queues=queues, name=f"{name}-{os.getpid()}@%h"),
            **env,
        )
        wait_until(
            lambda: " ready." in proc.tail(200) or not proc.alive, timeout=60, what=f"{name} ready"
        )
        if not proc.alive:
            raise RuntimeError(f"{name} died:\n{proc.tail()}")
        return proc

    def start_beat(self, **env: str) -> Proc:
        return self.start(
            "beat",
            beat_argv(schedule=str(self.workdir / "beat-schedule")),
            **env,
        )

    def start_receiver(self, *, workers: int = 2, threads: int = 4, **env: str) -> str:
        port = free_port()
        self.start(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "webhooks.wsgi:app",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--log-level",
                "warning",
            ],
            **env,
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/healthz"), timeout=60, what="receiver")
        return url

    def start_sandbox(self, **env: str) -> str:
        port = free_port()
        self.start(
            "sandbox", [sys.executable, "-m", "sandbox", "serve", "--port", str(port)], **env
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/_admin/stats"), timeout=60, what="sandbox")
        return url

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout=15)
        if self.db_proxy is not None:
            self.db_proxy.close()
        if self.redis is not None:
            self.redis.close()
        if getattr(self, "_schema", None):
            import sqlalchemy as sa

            engine = sa.create_engine(PG_SERVER)
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')
            engine.dispose()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{proc.tail()}" for name, proc in self.procs.items())


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


@contextlib.contextmanager
def running_stack(name: str, **extra_env: str) -> Iterator[Stack]:
    stack = Stack(name=name, extra_env=dict(extra_env)).start_services()
    try:
        yield stack
    finally:
        stack.close()


def database(stack: Stack) -> Any:
    from connector.db import Database

    return Database(stack.database_url)


# --------------------------------------------------------------------------- chaos helpers


def child_pids(proc: Proc) -> list[int]:
    """Direct children of a process (a Celery worker's pool processes), read from /proc."""
    if not proc.alive:
        return []
    assert proc.popen is not None
    pids: list[int] = []
    for task in Path(f"/proc/{proc.popen.pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.extend(int(p) for p in task.read_text().split())
    return sorted(p for p in set(pids) if _running(p))


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped (a killed pool process, for a moment)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
