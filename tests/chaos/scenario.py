"""Shared set-up and checks of the fault-injection suite (``make chaos``, docs/chaos.md).

One ``Chaos`` is one scenario's whole stack, in OS processes, built on ``bench.stack``:

- PostgreSQL (a private schema, reached through a cuttable ``TcpProxy``), a private
  ``redis-server`` (restartable), the receiver (gunicorn), Celery workers and beat;
- the sandbox (this process's session sandbox, reset and seeded) standing in for Zoho and Concur;
- one connection authorized on both sides exactly as an operator does it (Zoho self client,
  Concur company bootstrap), its rules (payables, vendors, expenses), vendor links for the
  vendors the backlog uses, the Zoho workflow webhook (signed with the connection's secret) and
  the Concur ESS subscription (signature checked with the sandbox's public key).

The backlog is at least 200 bills (each announced by its Zoho webhook) and 50 reports approved
in Concur (each announced by an ESS ``statusChanged`` event); the beat's polling back-stops run
every few seconds as they would in production, only sooner. ``final_check`` is the issue's
"ends by asserting": each source record posted exactly once (the sandbox's duplicates report
empty, counts equal) and no record left in a non-terminal state.

The test process reads the ledger straight from PostgreSQL (not through the proxy), so it keeps
watching while the stack's database is cut.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy import func, select

from bench.stack import PG_SERVER, Proc, Stack
from connector import authorize, connections, rules
from connector.config import Settings
from connector.db import Database
from connector.models import RecordState, SyncRecord, WebhookEvent, WebhookStatus
from tests.chaos import seeds
from tests.chaos.timing import Deliveries, Stalled, Waits, wait_progress, wait_quiet
from tests.flows import payables_support as ps
from tests.flows.expenses_support import RULES as EXPENSES_RULES

ORG = ps.ORG
COMPANY = ps.US_COMPANY

#: Records in these states are still moving (or parked); none may be left at the end.
NON_TERMINAL = tuple(
    s.value
    for s in (
        RecordState.RECEIVED,
        RecordState.FETCHED,
        RecordState.MAPPED,
        RecordState.VALIDATED,
        RecordState.POSTING,
        RecordState.WAITING,
        RecordState.NEEDS_REAUTH,
    )
)

#: Bills cycle through the linked vendors (USD and EUR).
BILL_VENDORS = [
    ("Delta Air Lines", "USD"),
    ("Marriott International", "USD"),
    ("Staples Business", "USD"),
    ("Deutsche Lufthansa AG", "EUR"),
    ("Accor Hotels Europe", "EUR"),
]
BILL_ACCOUNTS = ["Airfare", "Office Supplies"]

#: Production settings, tuned for a test: no long back-offs, short leases and sweeps, polling
#: back-stops every few seconds. The Zoho per-organization limit is raised on both sides (the
#: sandbox's and the connector's shared limiter) so 250 records fit the time budget; scenario 5
#: brings the 429s back on purpose.
CHAOS_ENV: dict[str, str] = {
    "CONNECTOR_RETRY_BASE": "0.2",
    "CONNECTOR_RETRY_CAP": "2",
    "CONNECTOR_WAITING_BASE": "1",
    "CONNECTOR_WAITING_CAP": "2",
    "CONNECTOR_LEASE_SECONDS": "8",
    "CONNECTOR_SWEEP_INTERVAL": "1",
    "PAYABLES_POLL_INTERVAL": "5",
    "EXPENSES_POLL_INTERVAL": "5",
    "ZOHO_RATE_LIMIT": "100000/60s",
}

ZOHO_WEBHOOK_ATTEMPTS = 8
#: The sandbox's ESS sender (sandbox/concur/events.py, DELIVERY_ATTEMPTS).
ESS_ATTEMPTS = 5

#: One line per finished scenario, printed at the end of the run (tests/chaos/conftest.py).
REPORTS: list[str] = []


def rules_document() -> dict[str, Any]:
    """Payables (ps.RULES), vendors (link/update only) and expenses, in one document."""
    return {
        "payables": dict(ps.RULES),
        "vendors": dict(ps.VENDOR_RULES),
        "expenses": dict(EXPENSES_RULES["expenses"]),
    }


def direct_url(stack: Stack) -> str:
    """The stack's schema on the real server, bypassing the proxy (for the test's own reads)."""
    proxied = sa.engine.make_url(stack.database_url)
    server = sa.engine.make_url(PG_SERVER)
    return proxied.set(host=server.host, port=server.port).render_as_string(hide_password=False)


@dataclass
class Backlog:
    """What the scenario put in the sandbox: bill number -> expected request; report ids."""

    bills: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: list[str] = field(default_factory=list)


class Chaos:
    """One scenario's stack; ``start()`` brings it up connected, ``close()`` tears it down."""

    def __init__(
        self, name: str, sandbox: Any, admin: Any, *, rules: dict[str, Any] | None = None,
        **env: str,
    ) -> None:  # fmt: skip
        self.name = name
        self.rules = rules or {}
        self.sandbox = sandbox
        self.admin = admin
        self.stack = Stack(name=name)
        self.overrides = dict(env)
        self.env: dict[str, str] = {}
        self.workers: dict[str, Proc] = {}
        self.backlog = Backlog()
        self.receiver = ""
        self.cid = 0
        self.timings: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._db: Database | None = None
        #: Every random choice of the scenario (tests/chaos/seeds.py).
        self.rng = seeds.rng(name)
        self.deliveries = Deliveries(0.5, 2.0, 5.0, max(ZOHO_WEBHOOK_ATTEMPTS, ESS_ATTEMPTS))
        self.throttle = 0.0
        self.waits: Waits

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, workers: dict[str, int] | None = None) -> Chaos:
        started = time.monotonic()
        self.stack.start_services()
        sandbox = self.sandbox
        pem = self.stack.workdir / "concur-ess.pem"
        pem.write_bytes(
            requests.get(f"{sandbox.url}/_admin/concur/public-key.pem", timeout=10).content
        )
        self.env = {
            "CONNECTOR_SANDBOX_URL": sandbox.url,
            "ZOHO_CLIENT_ID": "sandbox-zoho-client",
            "ZOHO_CLIENT_SECRET": "sandbox-zoho-secret",
            "ZOHO_ACCOUNTS_URL": f"{sandbox.url}/zoho/us/accounts",
            "CONCUR_CLIENT_ID": "sandbox-concur-client",
            "CONCUR_CLIENT_SECRET": "sandbox-concur-secret",
            "CONCUR_AUTH_URL": f"{sandbox.url}/concur/us2",
            "CONCUR_WEBHOOK_PUBLIC_KEYS": str(pem),
            **CHAOS_ENV,
            **self.overrides,
        }
        self.stack.extra_env.update(self.env)
        self.settings = Settings.from_env(
            {**self.stack.env(), "DATABASE_URL": direct_url(self.stack)}
        )
        # The sandbox: no latency, room for the backlog, retries that outlast a short outage.
        self.admin.zoho_limits(per_minute=100000, reset_windows=True)
        self.configure_deliveries(base_delay=0.5, factor=2.0, timeout=5.0)
        self.baseline_duplicates = self.admin.duplicates()  # the seed's own (Vandelay pair)
        self.connect()
        self.receiver = self.stack.start_receiver(workers=2, threads=4)
        for name, concurrency in (workers or {"worker": 4}).items():
            self.start_worker(name, concurrency)
        self.stack.start_beat()
        self.admin.zoho_set_webhook(
            ORG,
            f"{self.receiver}/webhooks/zoho/{self.cid}",
            self.secret,
            entities=["bill", "invoice"],
            attempts=ZOHO_WEBHOOK_ATTEMPTS,
        )
        self.subscribe(f"{self.receiver}/webhooks/concur")
        self.timings["start"] = time.monotonic() - started
        return self

    def configure_deliveries(self, *, base_delay: float, factor: float, timeout: float) -> None:
        """The sandbox's webhook retry schedule; the waits follow it."""
        self.admin.configure_deliveries(base_delay=base_delay, factor=factor, timeout=timeout)
        self.deliveries = Deliveries(base_delay, factor, timeout, self.deliveries.attempts)
        self.waits = Waits.of(
            self.settings, self.deliveries, throttle=self.throttle,
            vendors_pass="VENDORS_SYNC_INTERVAL" in self.env,
        )  # fmt: skip

    def expect_throttling(self, seconds: float) -> None:
        """The scenario brings rate limits whose waits are not settings (Zoho's minute)."""
        self.throttle = seconds
        self.waits = self.waits.with_(throttle=seconds)

    def start_worker(self, name: str, concurrency: int = 4) -> Proc:
        proc = self.stack.start_worker(name, concurrency=concurrency)
        self.workers[name] = proc
        return proc

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
        self.stack.close()

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(direct_url(self.stack))
        return self._db

    # ------------------------------------------------------------------ set-up

    def connect(self) -> None:
        """The connection, authorized as an operator would, with rules and vendor links."""
        from connector.zoho.auth import SCOPE

        db, settings = self.db, self.settings
        self.cid = connections.create(db, f"chaos-{self.name}")
        grant = self.admin.zoho_self_client_code(scope=SCOPE)
        authorize.connect_zoho_self_client(
            db, settings, self.cid, code=grant["code"], organization_id=ORG,
            accounts_server=grant["accounts_server"],
        )  # fmt: skip
        self.reauthorize_concur()
        from mappings.rules import register_flow_sections

        register_flow_sections()
        document = rules_document()
        for section, values in self.rules.items():
            document[section] = {**document.get(section, {}), **values}
        rules.import_rules(db, self.cid, document, None)
        contacts = ps.zoho_contacts(db, settings, self.cid)
        for zoho_name, (code, address, name, country, currency, create) in ps.LINKS.items():
            if create:
                ps.create_concur_vendor(self.sandbox.url, code, address, name, country, currency)
            snapshot = {"VendorName": name, "CountryCode": country, "CurrencyCode": currency}
            ps.link(db, self.cid, contacts[zoho_name]["contact_id"], code, address, snapshot)
        self.accounts = ps.zoho_accounts(db, settings, self.cid)
        self.secret = connections.webhook_secret(db, settings, self.cid)

    def reauthorize_concur(self) -> Any:
        from sandbox.concur import config as concur_config

        return authorize.connect_concur(
            self.db, self.settings, self.cid, company_id=COMPANY,
            request_token=concur_config.SEED_US_REQUEST_TOKEN,
        )  # fmt: skip

    def subscribe(self, endpoint: str) -> None:
        """The ESS subscription, as ``connector concur subscribe`` makes it (an App token)."""
        from connector.api.oauth import StaticToken
        from connector.concur import auth as concur_auth
        from connector.concur.client import ConcurClient

        token, geo = concur_auth.app_token(self.settings)
        client = ConcurClient(geo, None, auth=StaticToken(token))
        try:
            sub_id = "chaos-" + "".join(ch if ch.isalnum() else "-" for ch in self.name.lower())
            client.subscriptions.put_webhook(sub_id[:40], endpoint)
        finally:
            client.close()

    # ------------------------------------------------------------------ backlog

    def create_bills(
        self, n: int, *, start: int = 0, threads: int = 4,
        vendors: list[tuple[str, str]] | None = None,
    ) -> dict[str, dict[str, Any]]:  # fmt: skip
        """``n`` bills created in Zoho (each fires its signed webhook); returns what Concur must
        end up with, by bill number. ``vendors`` (name, currency) default to the linked ones; a
        vendor without a link is linked (or created in Concur) by the vendors flow."""
        made: dict[str, dict[str, Any]] = {}
        cycle = vendors or BILL_VENDORS

        def one(i: int) -> tuple[str, dict[str, Any]]:
            contact, currency = cycle[i % len(cycle)]
            account = BILL_ACCOUNTS[i % len(BILL_ACCOUNTS)]
            rate = Decimal(f"{100 + i}.{i % 100:02d}")
            quantity = 1 + i % 3
            number = f"CH-{self.name[:12]}-{i:05d}"
            self.admin.zoho_create(
                ORG, "bill", vendor_name=contact, bill_number=number, currency_code=currency,
                line_items=[{"account_id": self.accounts[account], "description": f"{account} {i}",
                             "rate": float(rate), "quantity": quantity}],
            )  # fmt: skip
            return number, {
                "vendor": ps.LINKS[contact][:2] if contact in ps.LINKS else None,
                "currency": currency,
                "total": str((rate * quantity).quantize(Decimal("0.01"))),
            }

        order = list(range(start, start + n))
        self.rng.shuffle(order)  # the order Zoho announces them in (CHAOS_SEED)
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for number, want in pool.map(one, order):
                made[number] = want
        self.backlog.bills.update(made)
        return made

    def pending_reports(self, n: int) -> list[str]:
        """``n`` generated reports waiting for approval (currencies, splits, cash + card)."""
        company = self.sandbox.state.concur.store.company(COMPANY)
        before = set(company.reports)
        self.admin.generate(
            "reports", n, company_id=COMPANY, approval="A_PEND", payment="P_NOTP", entries=3,
            seed=len(before),
        )  # fmt: skip
        return sorted(set(company.reports) - before)

    def approve(self, report_ids: list[str], *, threads: int = 4) -> None:
        """Approve in Concur: each approval publishes a signed ``statusChanged`` to the ESS
        subscription."""
        from sandbox.concur.admin import ConcurAdmin

        concur = ConcurAdmin(self.sandbox.url)
        order = list(report_ids)
        self.rng.shuffle(order)  # the order ESS announces them in (CHAOS_SEED)
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(concur.approve, order))
        self.backlog.reports.extend(report_ids)

    def create_backlog(self, *, bills: int = 200, reports: int = 50, start: int = 0) -> Backlog:
        pending = self.pending_reports(reports)
        self.create_bills(bills, start=start)
        self.approve(pending)
        return self.backlog

    # ------------------------------------------------------------------ observing

    def states(self) -> dict[tuple[str, str], int]:
        with self.db.session() as s:
            rows = s.execute(
                select(SyncRecord.flow, SyncRecord.state, func.count()).group_by(
                    SyncRecord.flow, SyncRecord.state
                )
            ).all()
        return {(flow, state): n for flow, state, n in rows}

    def count(self, *, flow: str | None = None, states: tuple[str, ...] = ()) -> int:
        query = select(func.count()).select_from(SyncRecord)
        if flow:
            query = query.where(SyncRecord.flow == flow)
        if states:
            query = query.where(SyncRecord.state.in_(states))
        with self.db.session() as s:
            return int(s.execute(query).scalar() or 0)

    def summary(self) -> str:
        """The ledger by flow, state and last error, plus the inbox by status."""
        with self.db.session() as s:
            rows = s.execute(
                select(
                    SyncRecord.flow,
                    SyncRecord.state,
                    SyncRecord.last_error_code,
                    func.count(),
                    func.min(SyncRecord.last_error_message),
                )
                .group_by(SyncRecord.flow, SyncRecord.state, SyncRecord.last_error_code)
                .order_by(SyncRecord.flow, SyncRecord.state)
            ).all()
            inbox = s.execute(
                select(WebhookEvent.source, WebhookEvent.status, func.count()).group_by(
                    WebhookEvent.source, WebhookEvent.status
                )
            ).all()
        lines = ["ledger (flow, state, last error: count, e.g. message):"]
        lines += [
            f"  {f} {st} {code or '-'}: {n}  {(msg or '')[:160]}" for f, st, code, n, msg in rows
        ]
        lines += ["inbox (source, status: count):"]
        lines += [f"  {src} {st}: {n}" for src, st, n in inbox]
        return "\n".join(lines)

    def diagnostics(self) -> str:
        return f"{self.summary()}\n\n{self.stack.logs()}"

    def in_scope_reports(self) -> set[str]:
        """Every report Concur shows approved and awaiting payment: the ones approved here plus
        the seeded ones the expenses back-stop finds."""
        state = self.sandbox.state
        with state.lock:
            company = state.concur.store.company(COMPANY)
            return {
                r["ID"]
                for r in company.reports.values()
                if r["ApprovalStatusCode"] == "A_APPR" and r["PaymentStatusCode"] == "P_PROC"
            }

    def remaining(self) -> int:
        """Work left before the scenario is done: source records not yet posted, records not
        at rest, events not yet handed to intake."""
        reports = self.in_scope_reports()
        with self.db.session() as s:
            inbox = s.execute(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.status == WebhookStatus.RECEIVED.value)
            ).scalar()
        return (
            max(0, len(self.backlog.bills) - self.count(flow="payables", states=("posted",)))
            + max(0, len(reports) - self.count(flow="expenses", states=("posted",)))
            + self.count(states=NON_TERMINAL)
            + int(inbox or 0)
        )

    def settled(self) -> bool:
        """Everything expected is posted and nothing is still moving."""
        return self.remaining() == 0

    def fingerprint(self) -> tuple[Any, ...]:
        """Changes whenever the ledger or the inbox does (a state, a step, a new record)."""
        with self.db.session() as s:
            records = s.execute(
                select(func.count(), func.max(SyncRecord.updated_at), func.max(SyncRecord.id))
            ).one()
            events = s.execute(
                select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
            ).all()
        return (tuple(records), tuple(sorted(events)))

    def posted(self) -> int:
        return self.count(states=("posted",))

    def wait(self, predicate: Any, *, what: str, timeout: float | None = None) -> None:
        """A one-off event: ``timeout`` defaults to the derived deadline (tests/chaos/timing)."""
        limit = self.waits.deadline() if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {limit:.0f}s waiting for {what} "
                    f"({self.waits.formula()}; {seeds.replay_hint()})\n{self.diagnostics()}"
                )
            time.sleep(0.25)  # polling interval of the observer

    def wait_progress(self, done: Any, progress: Any, *, what: str) -> float:
        """Wait while ``progress()`` keeps reaching new bests (tests/chaos/timing)."""
        try:
            return wait_progress(done, progress, stall=self.waits.stall, what=what)
        except Stalled as exc:
            raise AssertionError(
                f"{exc} ({self.waits.formula()}; {seeds.replay_hint()})\n{self.diagnostics()}"
            ) from None

    def wait_posted(self, n: int) -> None:
        self.wait_progress(lambda: self.posted() >= n, self.posted, what=f"{n} records posted")

    # ------------------------------------------------------------------ the assertions

    def final_check(self) -> dict[str, Any]:
        """Every source record posted exactly once in the sandbox; nothing non-terminal.

        Waits while the remaining work keeps shrinking, then until the ledger has been at rest
        (nothing left, nothing changing) for ``waits.quiet``: the vendors pass still runs every
        poll interval, and a single sample could catch one of its creates between ``posting``
        and ``posted`` (issue #21).
        """
        waited = time.monotonic()
        self.wait_progress(self.settled, lambda: -self.remaining(), what="every record posted")
        try:
            wait_quiet(
                self.fingerprint, self.settled, quiet=self.waits.quiet, stall=self.waits.stall,
                what="the ledger at rest",
            )  # fmt: skip
        except Stalled as exc:
            raise AssertionError(f"{exc}; {seeds.replay_hint()}\n{self.diagnostics()}") from None
        self.timings["settle"] = time.monotonic() - waited
        try:
            return self._assert_final()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{seeds.replay_hint()}\n{self.diagnostics()}") from None

    def _assert_final(self) -> dict[str, Any]:
        state = self.sandbox.state
        duplicates = self.admin.duplicates()
        problems = {
            f"{vendor}.{kind}": [
                i for i in items if i not in self.baseline_duplicates[vendor][kind]
            ]
            for vendor, kinds in duplicates.items()
            for kind, items in kinds.items()
        }
        problems = {k: v for k, v in problems.items() if v}
        assert problems == {}, f"the sandbox reports duplicates: {json.dumps(problems)[:2000]}"

        # Concur: one live payment request per bill, with the right vendor, amount, currency.
        with state.lock:
            company = state.concur.store.company(COMPANY)
            requests_ = [
                pr for pr in company.payment_requests.values()
                if pr.get("IsPaymentRequestDeleted") != "true"
            ]  # fmt: skip
            by_number = Counter(str(pr.get("InvoiceNumber")) for pr in requests_)
            rendered = {
                str(pr.get("InvoiceNumber")): (
                    pr["_vendor_key"][:2],
                    pr.get("CurrencyCode"),
                    str(pr.get("InvoiceAmount")),
                )
                for pr in requests_
            }
        expected = self.backlog.bills
        assert len(requests_) == len(expected), (
            f"{len(requests_)} payment requests in Concur for {len(expected)} bills"
        )
        assert set(by_number) == set(expected), "payment requests do not match the bills"
        assert max(by_number.values()) == 1, "a bill became two payment requests"
        for number, want in expected.items():
            vendor, currency, amount = rendered[number]
            if want["vendor"] is not None:
                assert tuple(vendor) == tuple(want["vendor"]), number
            assert currency == want["currency"], number
            assert Decimal(amount) == Decimal(want["total"]), number

        # Zoho: one live journal per approved report, referenced by the report id.
        reports = self.in_scope_reports()
        assert set(self.backlog.reports) <= reports
        with state.lock:
            org = state.zoho.orgs[ORG]
            live = {jid for jid in org.journals}
            journals = {
                ref: [i for i in ids if i in live] for ref, ids in org.journals_by_ref.items()
            }
            created = [
                e for e in state.zoho.created
                if e["kind"] == "journals" and e["organization_id"] == ORG and e["id"] in live
            ]  # fmt: skip
        referenced = {ref for ref, ids in journals.items() if ids and ref in reports}
        assert referenced == reports, f"reports without a journal: {sorted(reports - referenced)}"
        assert all(len(journals[ref]) == 1 for ref in reports), "a report became two journals"
        assert len(created) == len(reports), (
            f"{len(created)} journals created through the API for {len(reports)} reports"
        )

        # The ledger: one posted record per source record, nothing left moving or parked.
        with self.db.session() as s:
            per_state = dict(
                s.execute(select(SyncRecord.state, func.count()).group_by(SyncRecord.state)).all()
            )
            posted = s.execute(
                select(SyncRecord.flow, SyncRecord.stable_ref, SyncRecord.source_id)
                .where(SyncRecord.state == "posted")
            ).all()  # fmt: skip
            events = dict(
                s.execute(
                    select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
                ).all()
            )
        stuck = {k: v for k, v in per_state.items() if k in NON_TERMINAL}
        assert stuck == {}, f"records left in non-terminal states: {stuck}"
        assert set(per_state) == {"posted"}, f"records not posted: {per_state}"
        payables = Counter(ref for flow, ref, _ in posted if flow == "payables")
        expenses = Counter(sid for flow, _, sid in posted if flow == "expenses")
        assert set(payables) == set(expected) and max(payables.values()) == 1, "payables ledger"
        assert set(expenses) == reports and max(expenses.values()) == 1, "expenses ledger"
        assert events.get(WebhookStatus.RECEIVED.value, 0) == 0, f"inbox not drained: {events}"
        # A failed event is one the connector gave up on: no fault in these scenarios warrants it.
        assert events.get(WebhookStatus.FAILED.value, 0) == 0, f"webhook events failed: {events}"
        return {
            "bills": len(expected),
            "reports": len(reports),
            "states": per_state,
            "inbox": events,
        }

    # ------------------------------------------------------------------ reporting

    def report(self, **extra: Any) -> str:
        """One line for the run's summary (printed by tests/chaos/conftest.py): timings, facts."""
        self.timings["total"] = time.monotonic() - self._t0
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        facts = ", ".join(f"{k}={v}" for k, v in {"seed": seeds.SEED, **extra}.items())
        line = f"{self.name}: {timing}" + (f"; {facts}" if facts else "")
        REPORTS.append(line)
        print(f"[chaos] {line}")
        return line
