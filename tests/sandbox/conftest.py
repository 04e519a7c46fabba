"""Shared sandbox fixtures: one real server per session, reset and re-seeded before each test.

Tests talk to it over HTTP with ``requests`` exactly as the connector would; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from sandbox.server import SandboxServer
from sandbox.zoho import seed as zseed

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"
CLIENT_ID = "sandbox-zoho-client"
CLIENT_SECRET = "sandbox-zoho-secret"
REDIRECT = "http://127.0.0.1:9/oauth/callback"
MAIN_ORG = zseed.MAIN_ORG_ID
LABS_ORG = zseed.LABS_ORG_ID
EU_ORG = zseed.EU_ORG_ID
IN_ORG = zseed.IN_ORG_ID


# ``sandbox_server``, ``sandbox`` and ``admin`` live in tests/conftest.py (shared by every suite).


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    if not SPECS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"API specs missing at {SPECS} (required in CI)")
        pytest.skip(f"API specs not found at {SPECS}; conformance checks need ../shared/specs")
    return SPECS


# --- Zoho helpers --------------------------------------------------------------------------


@dataclass
class Zoho:
    """A minimal Zoho client driving the sandbox the way the connector does."""

    base: str
    http: requests.Session = field(default_factory=requests.Session)
    access_token: str = ""
    refresh_token: str = ""
    api_domain: str = ""

    def accounts(self, dc: str = "us") -> str:
        return f"{self.base}/zoho/{dc}/accounts"

    def authorize(
        self,
        *,
        dc: str = "us",
        user: str | None = None,
        scope: str = "ZohoBooks.fullaccess.all",
        access_type: str = "offline",
        prompt: str | None = None,
        state: str = "s1",
        **extra: str,
    ) -> dict[str, str]:
        params = {
            "scope": scope,
            "client_id": CLIENT_ID,
            "response_type": "code",
            "access_type": access_type,
            "redirect_uri": REDIRECT,
            "state": state,
            **extra,
        }
        if prompt:
            params["prompt"] = prompt
        if user:
            params["login_hint"] = user
        r = self.http.get(
            f"{self.accounts(dc)}/oauth/v2/auth", params=params, allow_redirects=False, timeout=10
        )
        assert r.status_code == 302, r.text
        loc = r.headers["Location"]
        assert loc.startswith(REDIRECT)
        return {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}

    def token(self, accounts_server: str, **data: str) -> requests.Response:
        form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **data}
        return self.http.post(f"{accounts_server}/oauth/v2/token", data=form, timeout=10)

    def exchange(self, redirect: dict[str, str]) -> dict[str, Any]:
        r = self.token(
            redirect["accounts-server"],
            grant_type="authorization_code",
            code=redirect["code"],
            redirect_uri=REDIRECT,
        )
        body = r.json()
        assert "error" not in body, body
        return body

    def login(self, **kwargs: Any) -> Zoho:
        redirect = self.authorize(**kwargs)
        body = self.exchange(redirect)
        self.access_token = body["access_token"]
        self.refresh_token = body.get("refresh_token", "")
        self.api_domain = body["api_domain"]
        self.accounts_server = redirect["accounts-server"]
        return self

    def refresh(self) -> dict[str, Any]:
        return self.token(
            self.accounts_server, grant_type="refresh_token", refresh_token=self.refresh_token
        ).json()

    def books_url(self, path: str, dc: str | None = None) -> str:
        domain = f"{self.base}/zoho/{dc}/api" if dc else self.api_domain
        return f"{domain}/books/v3{path}"

    def call(
        self,
        method: str,
        path: str,
        *,
        org: str | None = MAIN_ORG,
        dc: str | None = None,
        token: str | None = None,
        params: dict[str, Any] | None = None,
        **kw: Any,
    ) -> requests.Response:
        q = dict(params or {})
        if org is not None:
            q["organization_id"] = org
        headers = {
            "Authorization": f"Zoho-oauthtoken {token or self.access_token}",
            **kw.pop("headers", {}),
        }
        return self.http.request(
            method, self.books_url(path, dc), params=q, headers=headers, timeout=10, **kw
        )

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.call("POST", path, **kw)

    def lookup(self, org: str = MAIN_ORG) -> dict[str, Any]:
        """Names → ids for accounts, currencies and tag options of an org."""
        accts = self.get("/chartofaccounts", org=org).json()["chartofaccounts"]
        curr = self.get("/settings/currencies", org=org).json()["currencies"]
        tags = self.get("/reportingtags", org=org).json()["tags"]
        options = {}
        for t in tags:
            for o in self.get(f"/reportingtags/{t['tag_id']}/options/all", org=org).json()[
                "results"
            ]:
                options[(t["tag_name"], o["option_name"])] = (t["tag_id"], o["option_id"])
        return {
            "accounts": {a["account_name"]: a["account_id"] for a in accts},
            "currencies": {c["currency_code"]: c["currency_id"] for c in curr},
            "options": options,
        }


@pytest.fixture
def zoho(sandbox: SandboxServer) -> Zoho:
    """Logged in as the US user (two organizations) with full access."""
    return Zoho(sandbox.url).login()


@pytest.fixture
def zoho_anon(sandbox: SandboxServer) -> Zoho:
    return Zoho(sandbox.url)


# --- webhook receiver ----------------------------------------------------------------------


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    form: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A real HTTP endpoint standing in for the connector's webhook route."""

    def __init__(self) -> None:
        self.requests: queue.Queue[Received] = queue.Queue()
        self.statuses: list[int] = []  # answered in order, then 200
        self._lock = threading.Lock()
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        body = req.get_data()
        self.requests.put(
            Received(req.path, dict(req.args), dict(req.headers), body, dict(req.form))
        )
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else 200
        return Response("ok", status=status)(environ, start_response)

    def get(self, timeout: float = 5.0) -> Received:
        return self.requests.get(timeout=timeout)

    def drain(self) -> list[Received]:
        out = []
        while not self.requests.empty():
            out.append(self.requests.get_nowait())
        return out


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()


@pytest.fixture
def receiver(_receiver_server: Receiver) -> Receiver:
    _receiver_server.drain()
    _receiver_server.statuses.clear()
    return _receiver_server
