"""Run the sandbox on a real socket: in-process for tests, blocking for the CLI."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.app import create_app
from sandbox.snapshot import SnapshotKeeper
from sandbox.state import SandboxState

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """Skips werkzeug's per-request access log: it costs time in benchmarks and floods tests."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SandboxServer:
    """A sandbox listening on ``host:port`` (port 0 = any free port) in a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: bool = True,
        *,
        state: SandboxState | None = None,
        quiet: bool = True,
        state_dir: str | os.PathLike[str] | None = None,
        **state_options: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.state = state or SandboxState(**state_options)
        #: With a state directory the sandbox keeps its documents and tokens across restarts
        #: (sandbox/snapshot.py); without one it starts fresh every time, as tests want.
        self.keeper = SnapshotKeeper(self.state, state_dir) if state_dir is not None else None
        self.state.snapshot = self.keeper
        self.app = create_app(self.state)
        self._seed = seed
        self._quiet = quiet
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("sandbox server is not started")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
        return f"http://{host}:{self._server.server_port}"

    def start(self) -> SandboxServer:
        if self._server is not None:
            return self
        self._server = make_server(
            self.host,
            self.port,
            self.app,
            threaded=True,
            request_handler=_QuietHandler if self._quiet else WSGIRequestHandler,
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.port = self._server.server_port
        self.state.base_url = self.url
        restored = self.keeper.load() if self.keeper is not None else False
        if self._seed and not restored:
            self.state.seed()
        if self.keeper is not None:
            self.keeper.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.state.deliverer.flush(timeout=1)
        if self.keeper is not None:
            self.keeper.stop()  # no request runs any more: this write is the final state
        self._server = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def describe(url: str, state: SandboxState) -> str:
    """Human summary of where everything lives, printed by ``serve``."""
    from sandbox.zoho.dc import DATA_CENTRES

    lines = [
        f"Sandbox running at {url}",
        f"  HTML page (records, new bill / edit):  {url}/",
        f"  Admin API (loopback only):             {url}/_admin/",
        "  Zoho data centres (accounts server | api_domain):",
    ]
    for dc in DATA_CENTRES:
        lines.append(f"    {dc:3} {url}/zoho/{dc}/accounts | {url}/zoho/{dc}/api")
    lines.append("  Zoho client: client_id=sandbox-zoho-client client_secret=sandbox-zoho-secret")
    concur = state.extensions.get("concur")
    describe_concur = getattr(concur, "describe", None)
    if callable(describe_concur):
        lines.append(str(describe_concur(url)))
    else:
        lines.append("  SAP Concur geolocations:")
        for geo in ("us2", "eu2"):
            lines.append(f"    {geo} {url}/concur/{geo}")
    return "\n".join(lines)


class _Terminated(Exception):
    """SIGTERM, turned into an exception so ``serve`` stops the way Ctrl-C does."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    seed: bool = True,
    verbose: bool = False,
    state_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Blocking entry point for ``connector sandbox serve`` and ``python -m sandbox serve``.

    Ctrl-C and SIGTERM (what ``connector run`` sends) both stop cleanly, so the final
    snapshot is written when there is a ``state_dir``.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    server = SandboxServer(host=host, port=port, seed=seed, quiet=not verbose, state_dir=state_dir)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        server.start()
        print(describe(server.url, server.state), flush=True)
        if server.keeper is not None:
            how = "restored from" if server.keeper.restored else "kept in"
            print(f"  State {how} {server.keeper.path}", flush=True)
        assert server._thread is not None
        while server._thread.is_alive():
            server._thread.join(timeout=0.5)
    except (KeyboardInterrupt, _Terminated):
        print("stopping sandbox", flush=True)
    finally:
        # A second SIGTERM is usual (a process group is signalled, then ``connector run``
        # terminates its children too); raised inside ``stop`` it would cut the final snapshot
        # write short and lose the last second of state. One request to stop is enough.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.stop()
        signal.signal(signal.SIGTERM, previous)
