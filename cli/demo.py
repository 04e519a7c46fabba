"""The sandbox set-up and the demo: one connection wired to the sandbox, then three records.

Two entry points:

- :func:`set_up` (run by ``connector run`` in sandbox mode, idempotently, before the web and
  worker processes start): the demo connection, both sides authorized against the sandbox
  (Zoho self client with the sandbox's grant code, Concur company bootstrap with the seeded
  company UUID and request token), the packaged rules file (``demo_rules.yml``), the sandbox's
  Zoho webhook pointed at the receiver with the connection's signing secret, and the ESS
  subscription for ``/webhooks/concur``.
- :func:`run_scenario` (``connector demo``): a new Zoho vendor (its contact webhook becomes a
  vendors record), a bill for it (the bill webhook), an expense report approved in Concur (the
  signed ESS event), each through the real receiver, broker and worker; then it waits for the
  three records and returns them with their states, targets and API calls.

Only HTTP to the sandbox (``/_admin``) and the connector's own modules are used: nothing here
imports the ``sandbox`` package (which is Flask), Flask or Celery.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from connector.config import Settings
from connector.db import Database

log = logging.getLogger(__name__)

#: The sandbox's seeded tenants (docs/sandbox.md, docs/sandbox-concur.md).
ZOHO_ORG = "10234695"  # Acme Corporation, us data centre, PREMIUM
CONCUR_COMPANY = "9d6f3a52-0c1e-4d7b-9a35-5b1f0c2e7a11"  # Sandbox Travel Co (US), us2
CONCUR_REQUEST_TOKEN = "sbx-us2-company-request-token"
#: The app credentials the sandbox accepts.
SANDBOX_CLIENTS = {
    "ZOHO_CLIENT_ID": "sandbox-zoho-client",
    "ZOHO_CLIENT_SECRET": "sandbox-zoho-secret",
    "CONCUR_CLIENT_ID": "sandbox-concur-client",
    "CONCUR_CLIENT_SECRET": "sandbox-concur-secret",
}
CONNECTION_NAME = "sandbox-demo"
#: The demo vendor's billing address (Concur needs a country; US with a state).
ADDRESS = {"address": "1 Demo Way", "city": "Austin", "state": "TX", "zip": "78701",
           "country": "U.S.A"}  # fmt: skip
ESS_SUBSCRIPTION_ID = "zoho-concur-connector.sandbox"
ZOHO_WEBHOOK_ENTITIES = ["bill", "invoice", "vendor"]
RULES_FILE = Path(__file__).with_name("demo_rules.yml")
PUBLIC_KEY_NAME = "concur-ess-sandbox.pem"
STATE_FILE = "run.json"


# =========================================================================== environment


def sandbox_env(sandbox_url: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables ``connector run`` gives its children in sandbox mode (existing values of
    ``environ`` win, except ``CONNECTOR_SANDBOX_URL``)."""
    env = dict(os.environ if environ is None else environ)
    env["CONNECTOR_SANDBOX_URL"] = sandbox_url
    env.setdefault("ZOHO_ACCOUNTS_URL", f"{sandbox_url}/zoho/us/accounts")
    env.setdefault("CONCUR_AUTH_URL", f"{sandbox_url}/concur/us2")
    for key, value in SANDBOX_CLIENTS.items():
        env.setdefault(key, value)
    return env


def embedded_env(environ: Mapping[str, str], var_dir: Path) -> dict[str, str]:
    """``environ`` without anything that points away from the embedded default (database,
    broker, keys, vendor credentials, public URL), rooted in ``var_dir``."""
    drop = ("CONNECTOR_", "DATABASE_", "REDIS_", "ZOHO_", "CONCUR_", "CELERY_", "OPS_", "PORT")
    env = {k: v for k, v in environ.items() if not k.startswith(drop)}
    env["CONNECTOR_VAR_DIR"] = str(var_dir)
    return env


def wait_until(url: str, *, timeout: float, alive: Callable[[], bool] | None = None) -> bool:
    """Poll ``url`` until it answers 200 (a server booting), or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return True
        time.sleep(0.2)  # waiting for a server to boot
    return False


def fetch_public_key(sandbox_url: str, var_dir: Path) -> Path:
    """Download the sandbox's ESS signing key (new per sandbox process) into ``var_dir``."""
    answer = requests.get(f"{sandbox_url}/_admin/concur/public-key.pem", timeout=10)
    answer.raise_for_status()
    var_dir.mkdir(parents=True, exist_ok=True)
    path = (var_dir / PUBLIC_KEY_NAME).resolve()
    path.write_bytes(answer.content)
    return path


# =========================================================================== run state file


@dataclass
class StackInfo:
    """What a running ``connector run`` publishes in ``var/run.json`` for ``connector demo``."""

    pid: int
    receiver: str
    sandbox: str | None
    connection_id: int | None
    var_dir: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def write_state(var_dir: Path, info: StackInfo) -> Path:
    path = var_dir / STATE_FILE
    path.write_text(json.dumps(info.as_dict(), indent=2))
    return path


def read_state(var_dir: Path) -> StackInfo | None:
    """The running stack of ``var_dir``, if its process is alive and its receiver answers."""
    path = var_dir / STATE_FILE
    try:
        data = json.loads(path.read_text())
        info = StackInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(info.pid, 0)
    except OSError:
        return None
    with contextlib.suppress(requests.RequestException):
        if requests.get(f"{info.receiver}/readyz", timeout=3).status_code == 200:
            return info
    return None


# =========================================================================== sandbox admin


class SandboxAdmin:
    """The few ``/_admin`` calls the set-up and the demo make (plain HTTP, loopback only)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.http.request(method, f"{self.base}/_admin{path}", json=body, timeout=30)
        if answer.status_code >= 400:
            raise RuntimeError(f"sandbox {method} {path} -> {answer.status_code}: {answer.text}")
        return answer.json() if answer.content else None

    def self_client_code(self, scope: str) -> dict[str, Any]:
        return self._call("POST", "/zoho/self-client", {"scope": scope})  # type: ignore[no-any-return]

    def set_zoho_webhook(self, org: str, url: str, secret: str, entities: list[str]) -> Any:
        body = {"url": url, "secret": secret, "entities": entities}
        return self._call("PUT", f"/zoho/orgs/{org}/webhook", body)

    def create_vendor(self, org: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", f"/zoho/orgs/{org}/vendors", fields)["contact"]  # type: ignore[no-any-return]

    def create_bill(self, org: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", f"/zoho/orgs/{org}/bills", fields)["bill"]  # type: ignore[no-any-return]

    def new_pending_report(self, company: str) -> str:
        answer = self._call(
            "POST",
            "/generate",
            {"kind": "reports", "n": 1, "company_id": company, "approval": "A_PEND",
             "payment": "P_NOTP", "entries": 2, "seed": secrets.randbelow(10**6)},
        )  # fmt: skip
        ids = [i for r in answer.get("results") or [] for i in r.get("ids") or []]
        if not ids:
            raise RuntimeError(f"the sandbox generated no report: {answer}")
        return str(ids[0])

    def approve_report(self, report_id: str) -> Any:
        return self._call("POST", f"/concur/reports/{report_id}/approve", {})

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")  # type: ignore[no-any-return]

    def duplicates(self) -> dict[str, Any]:
        return self._call("GET", "/duplicates")  # type: ignore[no-any-return]


# =========================================================================== set-up


@dataclass
class SetupReport:
    connection_id: int
    name: str
    done: list[str] = field(default_factory=list)


def _side_works(db: Database, settings: Settings, connection_id: int, system: str) -> bool:
    """One cheap authenticated read on ``system``; False when the credential does not work
    (never connected, or issued by an earlier sandbox process that no longer knows it)."""
    from connector import connections

    status = connections.show(db, connection_id)[system]["status"]
    if status != "connected":
        return False
    try:
        if system == "zoho":
            zoho = connections.zoho_client(db, settings, connection_id)
            try:
                zoho.organizations.get()
            finally:
                zoho.close()
        else:
            concur = connections.concur_client(db, settings, connection_id)
            try:
                concur.vendors.search(limit=1)
            finally:
                concur.close()
    except Exception as exc:  # any refusal: authorize again
        log.info("demo connection %s: %s side does not work (%s)", connection_id, system, exc)
        return False
    return True


def sandbox_restored(sandbox_url: str) -> bool:
    """True when the sandbox started from its snapshot (``--state-dir``): tokens it issued
    before the restart still work, so the demo connection keeps its credentials."""
    try:
        answer = requests.get(f"{sandbox_url}/_admin/snapshot", timeout=10)
        return bool(answer.ok and answer.json().get("restored"))
    except (requests.RequestException, ValueError):
        return False


def authorize(db: Database, settings: Settings, connection_id: int, sandbox_url: str,
              *, systems: tuple[str, ...] = ("zoho", "concur")) -> None:  # fmt: skip
    """Authorize the connection against the sandbox: Zoho by self client (grant code from the
    sandbox's API console stand-in), Concur by company bootstrap with the seeded request token.
    This is what tests' ``connected`` fixture does too."""
    from connector import authorize as auth
    from connector.zoho.auth import SCOPE

    if "zoho" in systems:
        grant = SandboxAdmin(sandbox_url).self_client_code(SCOPE)
        auth.connect_zoho_self_client(
            db, settings, connection_id, code=grant["code"], organization_id=ZOHO_ORG,
            accounts_server=grant["accounts_server"],
        )  # fmt: skip
    if "concur" in systems:
        auth.connect_concur(
            db, settings, connection_id, company_id=CONCUR_COMPANY,
            request_token=CONCUR_REQUEST_TOKEN,
        )  # fmt: skip


def demo_rules() -> dict[str, Any]:
    """The packaged rules document, as ``rules.import_rules`` stores its ``source``."""
    from connector import rules

    document = rules.parse_text(RULES_FILE.read_text(encoding="utf-8"))
    return json.loads(json.dumps(document, default=str))  # type: ignore[no-any-return]


def set_up(
    db: Database,
    settings: Settings,
    sandbox_url: str,
    receiver_url: str,
    *,
    name: str = CONNECTION_NAME,
    fresh_sandbox: bool = False,
) -> SetupReport:
    """Make the demo connection work against the sandbox; safe to run on every start.

    ``fresh_sandbox``: the sandbox was just started (its state is new), so stored credentials
    are re-issued without first trying them.
    """
    from connector import connections, rules
    from connector.concur import auth as concur_auth
    from connector.concur.client import ConcurClient
    from connector.errors import UnknownConnection
    from connector.zoho.catalog import ZohoCatalog
    from mappings.rules import register_flow_sections

    register_flow_sections()
    try:
        connection_id = connections.resolve(db, name).id
        report = SetupReport(connection_id, name)
    except UnknownConnection:
        connection_id = connections.create(db, name)
        report = SetupReport(connection_id, name, [f"created connection {connection_id} ({name})"])
    stale = tuple(
        system
        for system in ("zoho", "concur")
        if fresh_sandbox or not _side_works(db, settings, connection_id, system)
    )
    if stale:
        authorize(db, settings, connection_id, sandbox_url, systems=stale)
        report.done.append("authorized " + " and ".join(stale) + " against the sandbox")
    document = demo_rules()
    current = rules.load(db, connection_id)
    if current is None or current.source != document:
        client = connections.zoho_client(db, settings, connection_id)
        try:
            stored = rules.import_rules(db, connection_id, document, ZohoCatalog(client))
        finally:
            client.close()
        report.done.append(f"imported the demo rules (version {stored.version})")
    secret = connections.webhook_secret(db, settings, connection_id)
    hook = f"{receiver_url}/webhooks/zoho/{connection_id}"
    SandboxAdmin(sandbox_url).set_zoho_webhook(ZOHO_ORG, hook, secret, ZOHO_WEBHOOK_ENTITIES)
    report.done.append(f"sandbox Zoho webhook -> {hook}")
    base = connections.show(db, connection_id)["concur"].get("api_base_url")
    token, geolocation = concur_auth.app_token(settings, base or settings.concur_auth_url)
    from connector.api.oauth import StaticToken

    ess = ConcurClient(geolocation, None, auth=StaticToken(token))
    try:
        ess.subscriptions.put_webhook(ESS_SUBSCRIPTION_ID, f"{receiver_url}/webhooks/concur")
    finally:
        ess.close()
    report.done.append(f"Concur ESS subscription -> {receiver_url}/webhooks/concur")
    return report


# =========================================================================== the scenario


@dataclass
class Row:
    label: str
    flow: str
    source_id: str
    source_type: str | None = None
    record_id: int | None = None
    state: str = "not received"
    target_id: str | None = None
    api_calls: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.state in ("posted", "failed", "dead")


def _refresh(db: Database, connection_id: int, row: Row) -> None:
    """Read the row's record (the one the webhook made: for vendors the ``contact`` sync
    request) and count its API calls in the audit trail."""
    from connector.models import AuditEvent, SyncRecord

    with db.session() as session:
        query = select(SyncRecord).where(
            SyncRecord.connection_id == connection_id,
            SyncRecord.flow == row.flow,
            SyncRecord.source_id == row.source_id,
        )
        if row.source_type:
            query = query.where(SyncRecord.source_type == row.source_type)
        record = session.execute(query.order_by(SyncRecord.id.desc()).limit(1)).scalar_one_or_none()
        if record is None:
            return
        row.record_id, row.target_id = record.id, record.target_id
        row.state = record.state if record.lease_owner is None else f"{record.state} (working)"
        row.error = record.last_error_message
        calls = AuditEvent.http_method.is_not(None)
        mine = AuditEvent.record_id == record.id
        if row.flow == "vendors":
            # The vendor engine records its calls on the connection (step "vendors"), not on
            # the record: count those made while this record was being worked on.
            mine = mine | (
                (AuditEvent.connection_id == connection_id)
                & AuditEvent.record_id.is_(None)
                & (AuditEvent.step == "vendors")
                & (AuditEvent.at >= record.created_at)
                & (AuditEvent.at <= record.updated_at)
            )
        row.api_calls = session.execute(
            select(func.count()).select_from(AuditEvent).where(calls, mine)
        ).scalar_one()


def _wait(db: Database, connection_id: int, rows: list[Row], deadline: float,
          tick: Callable[[list[Row]], None] | None) -> None:  # fmt: skip
    while True:
        for row in rows:
            _refresh(db, connection_id, row)
        if tick is not None:
            tick(rows)
        if all(r.done for r in rows) or time.monotonic() > deadline:
            return
        time.sleep(0.5)  # polling the ledger for the worker's progress


def run_scenario(
    db: Database,
    sandbox_url: str,
    connection_id: int,
    *,
    timeout: float = 120.0,
    tick: Callable[[list[Row]], None] | None = None,
) -> list[Row]:
    """Vendor, bill and approved report through the real pipeline; the rows when all three
    finished or ``timeout`` passed."""
    admin = SandboxAdmin(sandbox_url)
    deadline = time.monotonic() + timeout
    tag = secrets.token_hex(3).upper()
    vendor = admin.create_vendor(
        ZOHO_ORG,
        contact_name=f"Demo Supplies {tag}",
        company_name=f"Demo Supplies {tag}",
        contact_number=f"DEMO{tag}",
        currency_code="USD",
        billing_address=ADDRESS,
    )
    rows = [
        Row(f"vendor {vendor['contact_name']}", "vendors", str(vendor["contact_id"]), "contact")
    ]
    # The bill's vendor must exist in Concur first: wait for the vendor before the bill (the
    # payables flow would also ask the vendors flow itself; this keeps the story in order).
    _wait(db, connection_id, rows, min(deadline, time.monotonic() + timeout / 2), tick)
    bill = admin.create_bill(
        ZOHO_ORG,
        vendor_id=vendor["contact_id"],
        bill_number=f"DEMO-{tag}",
        reference_number=f"demo {dt.date.today().isoformat()}",
        currency_code="USD",
    )
    rows.append(Row(f"bill {bill['bill_number']}", "payables", f"bill:{bill['bill_id']}"))
    report_id = admin.new_pending_report(CONCUR_COMPANY)
    admin.approve_report(report_id)
    rows.append(Row(f"expense report {report_id}", "expenses", report_id))
    _wait(db, connection_id, rows, deadline, tick)
    return rows


def table(rows: list[Row]) -> str:
    """The result table: record, flow, what, state, target id, API calls (audit rows)."""
    head = ("record", "flow", "what", "state", "target id", "API calls")
    body = [
        (
            str(r.record_id or "-"),
            r.flow,
            r.label,
            r.state,
            r.target_id or "-",
            str(r.api_calls),
        )
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(head), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in body]
    for r in rows:
        if r.state != "posted" and r.error:
            out.append(f"  {r.label}: {r.error}")
    return "\n".join(out)


def new_duplicates(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Entries of the sandbox's duplicates report (``GET /_admin/duplicates``) that were not
    there before: the seed has one on purpose (two Concur vendors named "Vandelay Industries")."""

    def entries(report: Mapping[str, Any]) -> set[str]:
        out = set()
        for system, lists in (report or {}).items():
            for kind, items in (lists or {}).items():
                for item in items or []:
                    out.add(f"{system} {kind}: {json.dumps(item, sort_keys=True)}")
        return out

    return sorted(entries(after) - entries(before))
