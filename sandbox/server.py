"""Run the sandbox on a real socket: in-process for tests, blocking for the CLI."""

from __future__ import annotations

import logging
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.app import create_app
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
        **state_options: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.state = state or SandboxState(**state_options)
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
        if self._seed:
            self.state.seed()
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


def serve(
    host: str = "127.0.0.1", port: int = 8765, *, seed: bool = True, verbose: bool = False
) -> None:
    """Blocking entry point for ``connector sandbox serve`` and ``python -m sandbox serve``."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    server = SandboxServer(host=host, port=port, seed=seed, quiet=not verbose)
    server.start()
    print(describe(server.url, server.state), flush=True)
    try:
        assert server._thread is not None
        while server._thread.is_alive():
            server._thread.join(timeout=0.5)
    except KeyboardInterrupt:
        print("stopping sandbox", flush=True)
    finally:
        server.stop()
