"""Fault injection for every sandbox route, both vendors.

Faults live in WSGI middleware rather than Flask hooks because two of them (``drop`` and
``commit_then_fail``) must act on the socket after or instead of the whole Flask response, and
because a fault must fire even for URLs no view matches.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from sandbox.stats import RequestStats

log = logging.getLogger(__name__)

ERROR_KINDS = {"429": 429, "500": 500, "502": 502, "503": 503}
KINDS = frozenset({*ERROR_KINDS, "delay", "drop", "commit_then_fail", "unexpected_shape"})

#: What an ``unexpected_shape`` fault answers: 200, a success by both vendors' standards (Zoho's
#: ``code`` 0), but with none of the keys any documented reader looks for. It plays a vendor
#: changing or mis-documenting a shape; the connector must fail the record with a clear message.
UNEXPECTED_SHAPE_BODY = {"code": 0, "message": "success", "unexpected": {"sandbox": "fault"}}

# A body factory builds the error answer for one vendor: (status, path) -> Response or
# (body, headers) where a dict body is sent as JSON.
BodyFactory = Callable[[int, str], "Response | tuple[Any, dict[str, str]]"]


@dataclass
class Fault:
    """One armed fault; ``remaining`` counts down on each matching request."""

    id: int
    method: str
    path: str
    kind: str
    remaining: int
    delay: float = 0.0
    fired: int = 0
    created_at: float = field(default_factory=time.time)

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method):
            return False
        return fnmatch.fnmatchcase(path, self.path)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "kind": self.kind,
            "remaining": self.remaining,
            "delay": self.delay,
            "fired": self.fired,
        }


def _normalise_kind(kind: str | int) -> str:
    k = str(kind).strip().lower().replace("-", "_")
    aliases = {"timeout": "delay", "commit_and_fail": "commit_then_fail", "reset": "drop"}
    k = aliases.get(k, k)
    if k not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
    return k


class FaultRegistry:
    """Armed faults, matched in the order they were added; the first match wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1
        self.history: deque[dict[str, Any]] = deque(maxlen=1000)
        self._bodies: dict[str, BodyFactory] = {}

    def add(
        self,
        method: str,
        path_glob: str,
        kind: str | int,
        count: int = 1,
        delay: float = 0.0,
    ) -> Fault:
        k = _normalise_kind(kind)
        if int(count) < 1:
            raise ValueError("count must be at least 1")
        if k == "delay" and float(delay) <= 0:
            raise ValueError("a delay fault needs delay > 0 seconds")
        with self._lock:
            fault = Fault(
                id=self._next_id,
                method=(method or "*").upper(),
                path=path_glob or "*",
                kind=k,
                remaining=int(count),
                delay=float(delay),
            )
            self._next_id += 1
            self._faults.append(fault)
            return fault

    @property
    def armed(self) -> bool:
        """Lock-free check so the common no-fault request pays almost nothing."""
        return bool(self._faults)

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching this request, if any."""
        if not self._faults:  # fast path: no lock when nothing is armed
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    fault.fired += 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    self.history.append(
                        {"id": fault.id, "kind": fault.kind, "method": method, "path": path}
                    )
                    return fault
        return None

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.history.clear()

    def register_body_factory(self, prefix: str, fn: BodyFactory) -> None:
        """Let a vendor shape injected error bodies for paths under ``prefix`` (e.g. ``/concur/``)."""
        self._bodies[prefix] = fn

    def error_response(self, status: int, path: str) -> Response:
        for prefix in sorted(self._bodies, key=len, reverse=True):
            if path.startswith(prefix):
                made = self._bodies[prefix](status, path)
                if isinstance(made, Response):
                    return made
                body, headers = made
                if isinstance(body, (dict, list)):
                    resp = Response(json.dumps(body), status=status, mimetype="application/json")
                else:
                    resp = Response(body, status=status)
                for k, v in headers.items():
                    resp.headers[k] = v
                return resp
        return Response(
            json.dumps({"error": f"injected {status}"}), status=status, mimetype="application/json"
        )


def drop_connection(environ: WSGIEnvironment) -> None:
    """Make the client see a reset connection with no HTTP answer at all.

    SO_LINGER(1, 0) turns the eventual close into a TCP RST; the shutdown stops anything werkzeug
    might still try to write. Raising ConnectionAbortedError afterwards is what werkzeug's dev
    server treats as "client went away" and swallows silently.
    """
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionAbortedError("sandbox fault: connection dropped")


class FaultMiddleware:
    """WSGI wrapper that applies armed faults before (or after) the Flask app."""

    def __init__(
        self,
        app: WSGIApplication,
        registry: FaultRegistry,
        stats: RequestStats | None = None,
        endpoint_of: Callable[[WSGIEnvironment], tuple[str, str | None]] | None = None,
    ) -> None:
        self.app = app
        self.registry = registry
        self.stats = stats
        self.endpoint_of = endpoint_of

    def _count(self, environ: WSGIEnvironment, status: int) -> None:
        if self.stats is not None and self.endpoint_of is not None:
            endpoint, tenant = self.endpoint_of(environ)
            self.stats.record(endpoint, tenant, status)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_admin") or not self.registry.armed:
            return self.app(environ, start_response)
        fault = self.registry.take(environ.get("REQUEST_METHOD", "GET"), path)
        if fault is None:
            return self.app(environ, start_response)
        environ["sandbox.fault"] = fault.as_dict()
        if fault.kind in ERROR_KINDS:
            status = ERROR_KINDS[fault.kind]
            self._count(environ, status)
            return self.registry.error_response(status, path)(environ, start_response)
        if fault.kind == "unexpected_shape":
            self._count(environ, 200)
            answer = Response(
                json.dumps(UNEXPECTED_SHAPE_BODY), status=200, mimetype="application/json"
            )
            return answer(environ, start_response)
        if fault.kind == "delay":
            time.sleep(fault.delay)
            return self.app(environ, start_response)
        if fault.kind == "drop":
            self._count(environ, 0)
            drop_connection(environ)

        # commit_then_fail: let the view run to completion (the write is stored), then lose the
        # answer so the client cannot tell whether it happened.
        def swallow(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return lambda data: None

        body = self.app(environ, swallow)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        drop_connection(environ)
        return []  # unreachable: drop_connection always raises
