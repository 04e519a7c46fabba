"""Concur-specific fixtures: a harness around the running sandbox and a webhook receiver.

Imported by the ``test_concur_*`` modules; the shared ``sandbox`` fixture (reset + seeded server)
comes from ``conftest.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from sandbox.concur import config
from sandbox.concur.admin import ConcurAdmin

US = config.SEED_US_COMPANY_ID
EU = config.SEED_EU_COMPANY_ID


@dataclass
class ConcurHarness:
    """Talks to the sandbox over HTTP the way a connector would."""

    url: str
    state: Any
    admin: ConcurAdmin
    http: requests.Session = field(default_factory=requests.Session)

    def geo(self, geo: str = "us2") -> str:
        return f"{self.url}/concur/{geo}"

    def token(self, geo: str = "us2", **form: str) -> requests.Response:
        data = {"client_id": config.CLIENT_ID, "client_secret": config.CLIENT_SECRET, **form}
        return self.http.post(f"{self.geo(geo)}/oauth2/v0/token", data=data, timeout=10)

    def bootstrap(
        self,
        geo: str = "us2",
        company: str = US,
        request_token: str = config.SEED_US_REQUEST_TOKEN,
    ) -> requests.Response:
        return self.token(
            geo,
            grant_type="password",
            username=company,
            password=request_token,
            credtype="authtoken",
        )

    def company_token(self, geo: str = "us2") -> dict[str, Any]:
        if geo == "eu2":
            resp = self.bootstrap("eu2", EU, config.SEED_EU_REQUEST_TOKEN)
        else:
            resp = self.bootstrap(geo)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def headers(self, geo: str = "us2") -> dict[str, str]:
        tok = self.company_token(geo)
        return {"Authorization": f"Bearer {tok['access_token']}", "Accept": "application/json"}

    def app_headers(self, geo: str = "us2") -> dict[str, str]:
        resp = self.token(geo, grant_type="client_credentials")
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def advance(self, seconds: float) -> None:
        self.state.clock.advance(seconds)


@pytest.fixture
def concur(sandbox: Any) -> ConcurHarness:
    url = sandbox if isinstance(sandbox, str) else sandbox.url
    state = getattr(sandbox, "state", None)
    return ConcurHarness(url=url.rstrip("/"), state=state, admin=ConcurAdmin(url))


@dataclass
class ConcurReceiver:
    """A real HTTP server standing in for the connector's ``/webhooks/concur``."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)  # statuses to answer first, then 200
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``n`` requests have arrived (a Condition, never a sleep loop)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.requests) >= n, timeout=timeout)
        assert ok, f"expected {n} webhook calls, got {len(self.requests)}"
        return list(self.requests)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        req = Request(environ)
        body = req.get_data()
        with self._cond:
            status = self.script.pop(0) if self.script else 200
            self.requests.append(
                {
                    "headers": dict(req.headers),
                    "body": body,
                    "json": json.loads(body or b"null"),
                    "status": status,
                }
            )
            self._cond.notify_all()
        return Response("ok", status=status)(environ, start_response)


@pytest.fixture
def concur_receiver() -> Iterator[ConcurReceiver]:
    rec = ConcurReceiver(url="")
    server: BaseWSGIServer = make_server("127.0.0.1", 0, rec, threaded=True)
    rec.url = f"http://127.0.0.1:{server.server_port}/webhooks/concur"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
