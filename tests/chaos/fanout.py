"""Scenario 7's fan-out proxy: every webhook delivered five times at once."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import requests


class FanOut:
    """Stands between the sandbox and the receiver: each webhook it receives is sent ``copies``
    times at once (threads released together by a barrier) to the same path on ``target``.

    The sender is answered 202 at once and the copies go out from a small pool (8 deliveries
    at a time), so the sandbox's one delivery thread is not what paces the scenario.
    ``groups()`` is the receiver's statuses per delivery; ``idle()`` says every one is done.
    """

    def __init__(self, target: str, *, copies: int = 5) -> None:
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.target = target.rstrip("/")
        self.copies = copies
        self._groups: list[list[int]] = []
        self._lock = threading.Lock()
        self._pending = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="fanout")

        def app(environ: Any, start_response: Any) -> Any:
            req = Request(environ)
            body = req.get_data()
            headers = {
                k: v for k, v in req.headers.items() if k.lower() not in ("host", "content-length")
            }
            query = req.query_string.decode()
            url = self.target + req.path + (f"?{query}" if query else "")
            with self._lock:
                self._pending += 1
            self._pool.submit(self._fan, url, body, headers)
            return Response(status=202)(environ, start_response)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _fan(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        barrier = threading.Barrier(self.copies)
        statuses = [0] * self.copies

        def send(i: int) -> None:
            try:
                barrier.wait(10)
                statuses[i] = requests.post(url, data=body, headers=headers, timeout=30).status_code
            except (requests.RequestException, threading.BrokenBarrierError):
                statuses[i] = 0

        threads = [threading.Thread(target=send, args=(i,)) for i in range(self.copies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with self._lock:
            self._groups.append(statuses)
            self._pending -= 1

    def __enter__(self) -> FanOut:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self._thread.join(10)
        self._pool.shutdown(wait=True)

    def idle(self) -> bool:
        with self._lock:
            return self._pending == 0

    def groups(self) -> list[list[int]]:
        with self._lock:
            return [list(g) for g in self._groups]
