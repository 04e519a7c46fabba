"""Issue #6, "done when": against the sandbox, with a real receiver, real workers and beat, 50 bills
and 10 invoices become exactly 60 payment requests (right vendor, total, currency and lines, in
USD and EUR), with and without faults on the payment-request POST and with every webhook
delivered three times; a bill for a vendor missing in Concur waits, then posts by itself."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from connector import connections
from connector.config import Settings
from connector.db import Database
from connector.models import SyncRecord, WebhookEvent
from tasks.launch import beat_argv
from tests.flows import payables_support as ps

pytestmark = pytest.mark.slow

PR_PATH = "/concur/*/api/v3.0/invoice/paymentrequest"
ZOHO_TENANT = f"zoho:{ps.ORG}"
CONCUR_TENANT = f"concur:{ps.US_COMPANY}"

#: (contact, currency) per document; bills cycle through five vendors, invoices through two.
BILL_VENDORS = [
    ("Delta Air Lines", "USD"),
    ("Marriott International", "USD"),
    ("Staples Business", "USD"),
    ("Deutsche Lufthansa AG", "EUR"),
    ("Accor Hotels Europe", "EUR"),
]
INVOICE_CUSTOMERS = [("Globex Corporation", "USD"), ("Soylent Nahrungsmittel GmbH", "EUR")]


# --------------------------------------------------------------------------- harness


def worker_env(stack_env: dict[str, str], sandbox: Any, **extra: str) -> dict[str, str]:
    """Production-shaped processes pointed at the sandbox, with short back-offs for a test."""
    return {
        **stack_env,
        "CONNECTOR_SANDBOX_URL": sandbox.url,
        "ZOHO_CLIENT_ID": "sandbox-zoho-client",
        "ZOHO_CLIENT_SECRET": "sandbox-zoho-secret",
        "ZOHO_ACCOUNTS_URL": f"{sandbox.url}/zoho/us/accounts",
        "CONCUR_CLIENT_ID": "sandbox-concur-client",
        "CONCUR_CLIENT_SECRET": "sandbox-concur-secret",
        "CONCUR_AUTH_URL": f"{sandbox.url}/concur/us2",
        "CONNECTOR_RETRY_BASE": "0.2",
        "CONNECTOR_RETRY_CAP": "2",
        "CONNECTOR_WAITING_BASE": "1",
        "CONNECTOR_WAITING_CAP": "2",
        "CONNECTOR_SWEEP_INTERVAL": "1",
        **extra,
    }


class Beat:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            beat_argv(schedule=env["CONNECTOR_VAR_DIR"] + "/beat-schedule"),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class TripleDelivery:
    """Stands between the sandbox and the receiver and delivers every webhook three times: once
    answering the sandbox, twice more from a background thread (as a sender's retries would)."""

    def __init__(self, target: str) -> None:
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.target = target
        self.extra: list[threading.Thread] = []

        def app(environ: Any, start_response: Any) -> Any:
            req = Request(environ)
            body, headers = (
                req.get_data(),
                {
                    k: v
                    for k, v in req.headers.items()
                    if k.lower() not in ("host", "content-length")
                },
            )
            url = self.target + (f"?{req.query_string.decode()}" if req.query_string else "")
            first = requests.post(url, data=body, headers=headers, timeout=10)

            def again() -> None:
                for _ in range(2):
                    requests.post(url, data=body, headers=headers, timeout=10)

            thread = threading.Thread(target=again, daemon=True)
            thread.start()
            self.extra.append(thread)
            return Response(first.content, status=first.status_code)(environ, start_response)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        for thread in self.extra:
            thread.join(10)
        self.server.shutdown()


@pytest.fixture
def stack(
    db: Database,
    connected: int,
    sandbox_settings: Any,
    sandbox: Any,
    admin: Any,
    stack_env: dict[str, str],
) -> Iterator[Any]:
    """A connected connection with rules and vendor links, the receiver on a real port enqueueing
    into Redis, and the sandbox's webhook pointed at it."""
    from celery import Celery

    assert db.dialect == "postgresql"
    ps.set_up(db, sandbox_settings, connected, sandbox.url)
    env = worker_env(stack_env, sandbox)
    settings = Settings.from_env(env)
    broker = Celery(broker=env["REDIS_URL"])

    def enqueue_event(event_id: int) -> None:
        broker.send_task(
            "intake.process", args=[event_id], task_id=f"event:{event_id}", queue="default"
        )

    secret = connections.webhook_secret(db, sandbox_settings, connected)

    class Stack:
        pass

    s = Stack()
    s.db, s.cid, s.sandbox, s.admin, s.env, s.secret = db, connected, sandbox, admin, env, secret
    s.settings = settings
    s.accounts = ps.zoho_accounts(db, sandbox_settings, connected)
    with ps.Receiver(settings, db, enqueue_event) as receiver:
        s.receiver = receiver
        admin.zoho_set_webhook(
            ps.ORG, receiver.hook(connected), secret, entities=["bill", "invoice"]
        )
        yield s
    broker.close()


def create_documents(
    stack: Any, *, bills: int, invoices: int, start: int = 0
) -> dict[str, dict[str, Any]]:
    """Documents created in Zoho (each fires its webhook); what Concur must end up with."""
    expected: dict[str, dict[str, Any]] = {}
    kinds = [("bill", i) for i in range(bills)] + [("invoice", i) for i in range(invoices)]
    for kind, i in kinds:
        n = start + i
        contact, currency = (BILL_VENDORS if kind == "bill" else INVOICE_CUSTOMERS)[
            n % (5 if kind == "bill" else 2)
        ]
        places = Decimal("0.01")
        lines = [
            (
                "Airfare" if kind == "bill" else "Consulting Income",
                Decimal(f"{100 + n}.{n % 100:02d}"),
                1 + n % 3,
            )
        ]
        if n % 4 == 0:
            lines.append(
                ("Office Supplies" if kind == "bill" else "Sales", Decimal(f"{7 + n % 11}.25"), 2)
            )
        number = f"E2E-{'B' if kind == 'bill' else 'I'}-{n:04d}"
        party = "vendor_name" if kind == "bill" else "customer_name"
        stack.admin.zoho_create(
            ps.ORG,
            kind,
            **{party: contact, f"{kind}_number": number},
            currency_code=currency,
            line_items=[
                {
                    "account_id": stack.accounts[a],
                    "description": f"{a} {n}",
                    "rate": float(rate),
                    "quantity": q,
                }
                for a, rate, q in lines
            ],
        )
        totals = [(rate * q).quantize(places) for _, rate, q in lines]
        expected[number] = {
            "vendor": ps.LINKS[contact][:2],
            "currency": currency,
            "total": str(sum(totals)),
            "lines": [(f"{a} {n}", str(t)) for (a, _, _), t in zip(lines, totals, strict=True)],
        }
    return expected


def wait_until_posted(db: Database, count: int, timeout: float) -> None:
    """Poll the ledger (the workers are other processes) until ``count`` records are posted."""
    deadline = time.monotonic() + timeout
    while True:
        with db.session() as s:
            states = dict(
                s.execute(
                    select(SyncRecord.state, func.count())
                    .where(SyncRecord.flow == "payables")
                    .group_by(SyncRecord.state)
                ).all()
            )
        if states.get("posted", 0) >= count:
            return
        if time.monotonic() > deadline:
            with db.session() as s:
                stuck = s.execute(
                    select(SyncRecord.source_ref, SyncRecord.state, SyncRecord.last_error_message)
                    .where(SyncRecord.state != "posted")
                    .limit(10)
                ).all()
            raise AssertionError(f"not all posted in {timeout}s: {states}; e.g. {stuck}")
        time.sleep(0.2)


def assert_concur_matches(stack: Any, expected: dict[str, dict[str, Any]]) -> None:
    requests_by_number: dict[str, list[dict[str, Any]]] = {}
    for request in ps.concur_requests(stack.sandbox):
        requests_by_number.setdefault(request.get("InvoiceNumber"), []).append(request)
    assert sorted(n for n in requests_by_number if n in expected) == sorted(expected)
    assert all(len(requests_by_number[n]) == 1 for n in expected), "a document was posted twice"
    created = stack.admin.created()["concur"]["payment_requests"]
    assert len(created) == len(expected)
    for number, want in expected.items():
        [request] = requests_by_number[number]
        ident = request["VendorRemitToIdentifier"]
        assert (ident["VendorCode"], ident["AddressCode"]) == want["vendor"], number
        assert request["CurrencyCode"] == want["currency"], number
        assert request["InvoiceAmount"] == want["total"], number
        assert [(x["Description"], x["TotalPrice"]) for x in ps.lines_of(request)] == want[
            "lines"
        ], number
    assert stack.admin.duplicates()["concur"]["payment_requests"] == []
    with stack.db.session() as s:
        payables = SyncRecord.flow == "payables"
        count = s.execute(select(func.count()).select_from(SyncRecord).where(payables)).scalar()
        targets = s.execute(select(SyncRecord.target_id).where(payables)).scalars().all()
    assert count == len(expected)
    assert len(set(targets)) == len(expected)


def calls(stats: dict[str, Any], tenant: str) -> dict[str, int]:
    return dict(stats["per_tenant_endpoint"].get(tenant, {}))


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_sixty_documents_become_sixty_payment_requests(stack: Any, start_worker: Any) -> None:
    worker = start_worker(env=stack.env, concurrency=4)
    beat = Beat(stack.env)
    try:
        before = stack.admin.stats()
        started = time.monotonic()
        expected = create_documents(stack, bills=50, invoices=10)
        try:
            wait_until_posted(stack.db, 60, timeout=60)
        except AssertionError:
            print(worker.log()[-20000:])  # shown by pytest on failure
            raise
        elapsed = time.monotonic() - started
        after = stack.admin.stats()
    finally:
        beat.stop()
    assert_concur_matches(stack, expected)
    zoho = delta(calls(after, ZOHO_TENANT), calls(before, ZOHO_TENANT))
    concur = delta(calls(after, CONCUR_TENANT), calls(before, CONCUR_TENANT))
    per_doc = (sum(zoho.values()) / 60, sum(concur.values()) / 60)
    print(f"\n60 documents in {elapsed:.1f}s; Zoho calls {zoho}; Concur calls {concur}; "
          f"per document: Zoho {per_doc[0]:.3f}, Concur {per_doc[1]:.3f}")  # fmt: skip
    assert zoho == {"GET /zoho/<dc>/api/books/v3/bills/<bill_id>": 50,
                    "GET /zoho/<dc>/api/books/v3/invoices/<invoice_id>": 10}  # fmt: skip
    assert concur == {"POST /concur/<geo>/api/v3.0/invoice/paymentrequest": 60}
    assert per_doc[0] <= 1.05 and per_doc[1] <= 1.05


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_faults_and_triple_deliveries_still_make_exactly_sixty(
    stack: Any, start_worker: Any
) -> None:
    tee = TripleDelivery(stack.receiver.hook(stack.cid))
    stack.admin.zoho_set_webhook(ps.ORG, tee.url, stack.secret, entities=["bill", "invoice"])
    env = {**stack.env, "PAYABLES_POLL_INTERVAL": "3"}  # the back-stop runs during the test too
    start_worker(env=env, concurrency=4)
    beat = Beat(env)
    before = stack.admin.stats()
    try:
        for kind, count in (
            ("429", 3),
            ("500", 3),
            ("503", 2),
            ("drop", 3),
            ("commit_then_fail", 4),
        ):
            stack.admin.add_fault("POST", PR_PATH, kind, count=count)
        stack.admin.add_fault("GET", "/zoho/*/api/books/v3/bills/*", "500", count=2)
        expected = create_documents(stack, bills=25, invoices=5)
        # more faults while the first half is in flight
        for kind, count in (("commit_then_fail", 3), ("500", 2), ("drop", 2), ("429", 2)):
            stack.admin.add_fault("POST", PR_PATH, kind, count=count)
        expected |= create_documents(stack, bills=25, invoices=5, start=100)
        wait_until_posted(stack.db, 60, timeout=90)
    finally:
        beat.stop()
        tee.close()
    after = stack.admin.stats()
    zoho = delta(calls(after, ZOHO_TENANT), calls(before, ZOHO_TENANT))
    concur = delta(calls(after, CONCUR_TENANT), calls(before, CONCUR_TENANT))
    print(f"\nwith faults: Zoho calls {zoho}; Concur calls {concur}")
    fired = [f["kind"] for f in stack.admin.faults()["history"]]
    assert {"commit_then_fail", "drop", "429", "500", "503"} <= set(fired)
    assert fired.count("commit_then_fail") == 7  # each one stored a request the client never saw
    attempts = stack.admin.deliveries()["attempts"]
    assert len([a for a in attempts if a["ok"]]) == 60
    assert_concur_matches(stack, expected)
    with stack.db.session() as s:
        events = s.execute(select(func.count()).select_from(WebhookEvent)).scalar()
    assert events == 60  # 180 deliveries, de-duplicated in the inbox


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_bill_for_a_missing_vendor_waits_then_posts_by_itself(
    stack: Any, start_worker: Any
) -> None:
    start_worker(env=stack.env, concurrency=2)
    beat = Beat(stack.env)
    try:
        bill = stack.admin.zoho_create(ps.ORG, "bill", vendor_name=ps.UNLINKED_VENDOR, amount=321.5)
        deadline = time.monotonic() + 30
        while True:
            with stack.db.session() as s:
                rec = s.execute(
                    select(SyncRecord).where(SyncRecord.flow == "payables")
                ).scalar_one_or_none()
                if rec is not None and rec.state == "waiting":
                    reason = rec.last_error_message
                    break
            assert time.monotonic() < deadline, "the bill never started waiting"
            time.sleep(0.2)
        assert (
            reason
            == f"vendor '{ps.UNLINKED_VENDOR}' (Zoho contact {bill['vendor_id']}) is not in Concur yet"
        )
        # The vendors flow creates the vendor in Concur and records the link.
        ps.create_concur_vendor(stack.sandbox.url, *ps.UNLINKED_CONCUR)
        ps.link(stack.db, stack.cid, bill["vendor_id"], "AMAZON", "MAIN",
                {"VendorName": "Amazon Business", "CountryCode": "US", "CurrencyCode": "USD"})  # fmt: skip
        wait_until_posted(stack.db, 1, timeout=30)
    finally:
        beat.stop()
    [request] = ps.requests_numbered(stack.sandbox, bill["bill_number"])
    assert request["VendorRemitToIdentifier"]["VendorCode"] == "AMAZON"
    assert request["InvoiceAmount"] == "321.50"
