"""``connector ping``: can this connection still talk to both sides? One timed line per check."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector import connections
from connector.concur.resources import vendor_items
from connector.config import Settings
from connector.db import Database, utcnow
from connector.errors import ApiError, ConnectorError


@dataclass(frozen=True)
class Check:
    """One check's outcome; ``detail`` is the vendor's message when it failed."""

    system: str
    name: str
    ok: bool
    duration_ms: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "check": self.name,
            "ok": self.ok,
            "duration_ms": round(self.duration_ms, 1),
            "detail": self.detail,
        }


def failure_line(exc: ApiError) -> str:
    """``Class: METHOD URL -> status: vendor message``: which host refused, and what it said.

    The URL (no query string, secrets redacted) is what makes a wrong data centre or a stale
    sandbox port visible; without a call (a credential already marked dead) the message alone.
    """
    vendor = exc.context.get("vendor_message") or exc.message or type(exc).__name__
    call = exc.call()
    if call and call not in vendor:
        return f"{type(exc).__name__}: {call}: {vendor}"
    return f"{type(exc).__name__}: {vendor}"


def _run(system: str, name: str, fn: Callable[[], str]) -> Check:
    started = time.monotonic()
    try:
        detail = fn()
        ok = True
    except ApiError as exc:
        ok = False
        detail = failure_line(exc)
    except ConnectorError as exc:
        ok = False
        detail = f"{type(exc).__name__}: {exc}"
    return Check(system, name, ok, (time.monotonic() - started) * 1000, detail)


def _jwt_subject(token: str) -> str | None:
    """The ``sub`` claim of a JWT, read without verifying (we only compare it to our record)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return str(sub) if sub else None


def ping_zoho(db: Database, settings: Settings, connection_id: int) -> list[Check]:
    checks: list[Check] = []
    state: dict[str, Any] = {}

    def token() -> str:
        manager = connections.token_manager(db, settings, connection_id, connections.ZOHO)
        manager.access_token()
        view = manager.current()
        state["client"] = connections.zoho_client(db, settings, connection_id)
        left = (view.access_expires_at or utcnow()) - utcnow()
        region = connections.region_of(view) or "?"
        return f"valid for {int(left.total_seconds() // 60)} min ({region} data centre)"

    def organization() -> str:
        org = state["client"].organizations.get()
        return f"{org.get('organization_id')} {org.get('name')}"

    def accounts() -> str:
        body = state["client"].accounts.list()
        more = (body.get("page_context") or {}).get("has_more_page")
        count = len(body.get("chartofaccounts") or [])
        return f"{count}{'+' if more else ''} account(s) readable"

    checks.append(_run("zoho", "token", token))
    if checks[-1].ok:
        checks.append(_run("zoho", "organization", organization))
    if checks[-1].ok:
        checks.append(_run("zoho", "chart of accounts", accounts))
    if "client" in state:
        state["client"].close()
    return checks


def ping_concur(db: Database, settings: Settings, connection_id: int) -> list[Check]:
    checks: list[Check] = []
    state: dict[str, Any] = {}

    def token() -> str:
        manager = connections.token_manager(db, settings, connection_id, connections.CONCUR)
        state["token"] = manager.access_token()
        view = manager.current()
        state["view"] = view
        state["client"] = connections.concur_client(db, settings, connection_id)
        left = (view.access_expires_at or utcnow()) - utcnow()
        return f"valid for {int(left.total_seconds() // 60)} min at {view.api_base_url}"

    def company() -> str:
        with db.session() as session:
            company_id = connections.get(session, connection_id).concur_company_id
        subject = _jwt_subject(state["token"])
        if subject is not None and company_id and subject != company_id:
            raise ConnectorError(
                f"the token acts for {subject}, not for company {company_id}; re-authorize"
            )
        return f"company {company_id}" + (" (token subject matches)" if subject else "")

    def vendors() -> str:
        vendors = state["client"].vendors
        body = vendors.search(limit=1)
        found = vendor_items(body, url=vendors.url)  # an unreadable shape fails the check
        return f"{body.get('TotalCount', len(found))} vendor(s) readable"

    checks.append(_run("concur", "token", token))
    if checks[-1].ok:
        checks.append(_run("concur", "company", company))
    if checks[-1].ok:
        checks.append(_run("concur", "vendors", vendors))
    if "client" in state:
        state["client"].close()
    return checks


def ping(db: Database, settings: Settings, connection_id: int) -> list[Check]:
    """Every check of both sides; later checks of a side are skipped once one fails."""
    return ping_zoho(db, settings, connection_id) + ping_concur(db, settings, connection_id)
