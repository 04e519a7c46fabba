"""Expenses flow (issue #7): approved SAP Concur expense reports become balanced Zoho Books journals.

How a report travels (docs/expenses.md):

1. **Trigger.** An ESS ``statusChanged`` event that reaches approval (``EXPENSES_APPROVAL_TRIGGER``)
   or the back-stop poll (v3 reports ``A_APPR`` + ``P_PROC`` modified after the cursor) names a
   report. Both create the ledger record with :func:`ensure_record`, keyed by the report id and
   its **approval version** (:func:`approval_version`: ``ProcessingPaymentDate`` +
   ``SubmitDate`` from the v3 header). The poll reads the header from the list it already has;
   the event path reads it with one ``GET /expense/reports/{id}`` in the intake task (never in
   the web view). Same header, same key: an event and a poll meet on one record.
2. **fetch** (concur queue): the header again (still approved? still this version?), every page
   of entries and allocations; ``mappings.concur_reports.assemble_report`` joins them and sets
   personal entries aside.
3. **map** (default queue): the ``expenses:`` rules, the organization's chart of accounts,
   reporting tags and currencies (cached per process; reloaded once on a miss so an account the
   accountant just added is seen), Zoho's exchange rate for the journal date when the report is
   in a foreign currency (cached per currency and day; rate, source and date go in an audit
   row), then ``mappings.expenses.map_report``. Anything missing parks the record in
   ``waiting`` with the exact reason; the sweeper retries it with exponential back-off.
4. **validate** (zoho queue): ``validate_journal`` (schema, balance, precision) and the body's
   accounts, tag options and currency against the organization again.
5. **post** (zoho queue): brief §4. ``GET /journals?reference_number=`` before any re-post after
   an ambiguous failure, adopting only a journal no other version of the report owns.

A report sent back and re-approved after it was posted has a new approval version, hence a new
record; it posts a new journal, and the record and the audit trail are flagged with both journal
ids for the accountant to reverse the earlier one (docs/expenses.md, "Re-approval").
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from connector import audit, connections, intake, ledger, rules, sync
from connector.concur.expense import ExpenseReports
from connector.config import Settings
from connector.db import Database
from connector.errors import (
    MappingError,
    NotFoundError,
    ParkError,
    ReauthRequired,
    TokenExpiredError,
    ValidationFailed,
)
from connector.models import RecordState, Step, SyncRecord, WebhookEvent
from connector.registry import Flow, IntakeHook
from connector.steps import StepContext
from connector.zoho.catalog import ZohoCatalog
from connector.zoho.client import ZohoBooksClient
from connector.zoho.journals import ExchangeRates, Journals
from mappings import rules as flow_rules
from mappings.concur_reports import ConcurReport, assemble_report
from mappings.expenses import journal_date_for, map_report, report_version
from mappings.expenses_lookups import ZohoLookups
from mappings.expenses_rules import (
    CREDIT_ACCOUNT_TYPES,
    DEBIT_ACCOUNT_TYPES,
    ExpensesRules,
    parse_expenses_rules,
)
from mappings.expenses_validation import validate_journal
from mappings.journals import to_wire_decimal

log = logging.getLogger(__name__)

FLOW = "expenses"
SOURCE_TYPE = "expense_report"
APPROVED = "A_APPR"
PROCESSING_PAYMENT = "P_PROC"

#: The poll asks for reports modified after its cursor minus this margin: a report written in
#: the same instant as the last one seen is not skipped (the ledger de-duplicates the overlap).
POLL_OVERLAP = dt.timedelta(seconds=60)
#: Zoho lists (chart of accounts, tags, currencies) are re-read after this long at the latest.
LOOKUPS_MAX_AGE = 900.0
#: A day's exchange rate is re-read after this long (the accountant may correct it).
RATE_MAX_AGE = 3600.0
#: Lookup problems a fresh copy of the Zoho lists can cure (rules problems cannot).
_RELOADABLE = frozenset({"account", "tag", "currency"})


class Superseded(ValidationFailed):
    """This version of the report will not be posted: Concur moved on (sent back, re-approved,
    or a newer version of it is already on its way)."""


# =========================================================================== identity


def _stamp(value: Any) -> str | None:
    """A v3 timestamp at millisecond precision, zone dropped (v3 prints UTC without a zone)."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text[:23]
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed.isoformat(timespec="milliseconds")


def approval_version(header: Mapping[str, Any]) -> str | None:
    """The ledger ``source_version`` of a report: which approval of it this is.

    Built from the v3 header's ``ProcessingPaymentDate`` ("completed all approvals") and
    ``SubmitDate``, which the reports list (poll) and the single read (event) both carry, so
    the two triggers compute the same key. A report sent back and re-approved gets a new
    ``ProcessingPaymentDate`` (and a resubmission a new ``SubmitDate``): a new version. Paying
    the report moves neither, so ``P_PAID`` never looks like a new version. ``None`` when the
    report carries neither date (never approved).
    """
    pp, sub = _stamp(header.get("ProcessingPaymentDate")), _stamp(header.get("SubmitDate"))
    if pp is None and sub is None:
        return None
    return f"pp={pp or '-'};sub={sub or '-'}"


def ensure_record(
    session: Any, connection_id: int, header: Mapping[str, Any], *, trigger: str
) -> tuple[SyncRecord, bool] | None:
    """The record of this report version, created once whoever asks first (event or poll)."""
    version = approval_version(header)
    report_id = str(header.get("ID") or "")
    if version is None or not report_id:
        return None
    return ledger.get_or_create(
        session,
        connection_id=connection_id,
        flow=FLOW,
        source_system="concur",
        source_type=SOURCE_TYPE,
        source_id=report_id,
        source_version=version,
        target_system="zoho",
        source_ref=(str(header.get("Name") or report_id))[:255],
        stable_ref=report_id,
        trigger=trigger,
    )


# =========================================================================== trigger (ESS)


def reaches_approval(facts: Mapping[str, Any], trigger: str) -> bool:
    """Whether a ``statusChanged`` event moves the report into approval, per the setting.

    ``approval``: ``currentApprovalStatus`` becomes ``A_APPR``; ``payment``:
    ``currentPaymentStatus`` becomes ``P_PROC``; ``either``: one of them. "Becomes" means the
    previous value (when the event carries it) was different, so the event Concur sends when it
    pays an approved report (``A_APPR`` -> ``A_APPR``, ``P_PROC`` -> ``P_PAID``) is not an approval.
    """
    approval = facts.get("currentApprovalStatus") == APPROVED and (
        facts.get("previousApprovalStatus") != APPROVED
    )
    payment = facts.get("currentPaymentStatus") == PROCESSING_PAYMENT and (
        facts.get("previousPaymentStatus") != PROCESSING_PAYMENT
    )
    if trigger == "approval":
        return approval
    if trigger == "payment":
        return payment
    return approval or payment


def _describe(facts: Mapping[str, Any]) -> str:
    return (
        f"approval {facts.get('previousApprovalStatus') or '?'} -> "
        f"{facts.get('currentApprovalStatus') or '?'}, payment "
        f"{facts.get('previousPaymentStatus') or '?'} -> {facts.get('currentPaymentStatus') or '?'}"
    )


def prepare_event(
    db: Database, settings: Settings, event: WebhookEvent, payload: dict[str, Any]
) -> dict[str, Any]:
    """Intake, outside any transaction: decide, and for an approval read the report header."""
    facts = payload.get("facts") if isinstance(payload.get("facts"), dict) else {}
    assert isinstance(facts, dict)
    trigger = settings.expenses_approval_trigger
    if not reaches_approval(facts, trigger):
        return {
            "ignored": f"statusChanged without approval ({_describe(facts)}; "
            f"EXPENSES_APPROVAL_TRIGGER={trigger})"
        }
    report_id = str(facts.get("reportId") or "").strip()
    if not report_id:
        return {"ignored": "statusChanged without facts.reportId"}
    if event.connection_id is None:
        return {"ignored": "event is not routed to a connection"}
    if not enabled(db, event.connection_id):
        return {"ignored": NOT_ENABLED}
    try:
        client = connections.concur_client(db, settings, event.connection_id)
        header = ExpenseReports(client).get(report_id)
    except NotFoundError:
        return {"ignored": f"report {report_id} is not in Concur any more"}
    except (ReauthRequired, TokenExpiredError) as exc:
        return {
            "ignored": f"Concur credential needs re-authorization ({exc}); the expenses poll "
            "picks the report up after the connection is re-authorized"
        }
    return {"header": header}


def handle_event(
    session: Any, event: WebhookEvent, payload: dict[str, Any], prepared: dict[str, Any]
) -> intake.IntakeResult:
    if prepared.get("ignored"):
        return intake.IntakeResult([], ignored=str(prepared["ignored"]))
    header = prepared["header"]
    status = header.get("ApprovalStatusCode")
    if status != APPROVED:
        return intake.IntakeResult(
            [], ignored=f"report {header.get('ID')} is {status} in Concur now, not approved"
        )
    made = ensure_record(
        session, int(event.connection_id or 0), header, trigger=f"ESS event {event.dedupe_key}"
    )
    if made is None:
        return intake.IntakeResult([], ignored=f"report {header.get('ID')} has no approval date")
    record, created = made
    # A record that already exists is on its way (or done): link the event, enqueue nothing new
    # unless it has not started (a duplicate fetch message is harmless; the claim decides).
    if created or record.state == RecordState.RECEIVED.value:
        return intake.IntakeResult([(record.id, Step.FETCH)])
    return intake.IntakeResult([])


HOOKS = {("concur", "statusChanged"): IntakeHook(handle_event, prepare=prepare_event)}


# =========================================================================== poll (back-stop)


def _v3_time(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds")


def _parse_v3(value: Any) -> dt.datetime | None:
    text = _stamp(value)
    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def enabled(db: Database, connection_id: int) -> bool:
    """The flow runs for a connection once its rules have an ``expenses:`` section.

    A connection that only syncs payables or vendors must not collect expense records that
    would wait forever. Reports approved before the import are found by the first poll after
    it (the cursor does not move while the flow is off).
    """
    return bool(rules.section(db, connection_id, FLOW))


NOT_ENABLED = (
    "the expenses flow is off for this connection (its rules have no expenses: section); "
    "the first poll after `connector mappings import` picks the report up"
)


def poll(db: Database, settings: Settings, connection_id: int) -> sync.PassResult:
    """List approved reports (``A_APPR`` + ``P_PROC``, ``user=ALL``) modified after the cursor.

    The first pass looks back ``EXPENSES_POLL_LOOKBACK_DAYS``. Each report gets its record by
    :func:`ensure_record` from the list item itself (no per-report call); the cursor becomes the
    newest ``LastModifiedDate`` seen, written after the records are committed.
    """
    if not enabled(db, connection_id):
        return sync.PassResult([], NOT_ENABLED)
    cursor = _parse_v3(sync.read_cursor(db, connection_id, FLOW))
    if cursor is None:
        since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(
            days=settings.expenses_poll_lookback_days
        )
    else:
        since = cursor - POLL_OVERLAP
    client = connections.concur_client(db, settings, connection_id)
    items = list(ExpenseReports(client).iter_approved(modified_after=_v3_time(since)))
    records: list[tuple[int, Step]] = []
    newest = cursor
    with db.session() as session:
        for item in items:
            made = ensure_record(session, connection_id, item, trigger="poll")
            if made is not None and made[1]:
                records.append((made[0].id, Step.FETCH))
            modified = _parse_v3(item.get("LastModifiedDate"))
            if modified is not None and (newest is None or modified > newest):
                newest = modified
    if newest is not None and newest != cursor:
        sync.write_cursor(db, connection_id, FLOW, _v3_time(newest))
    return sync.PassResult(
        records, f"{len(items)} approved report(s) listed, {len(records)} new record(s)"
    )


# =========================================================================== Zoho lookups (cached)

_lock = threading.Lock()
_currencies: dict[str, tuple[float, list[dict[str, Any]]]] = {}
_rates: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}


def _org_key(client: ZohoBooksClient) -> str:
    return f"{client.base_url}|{client.organization_id}"


def clear_caches() -> None:
    """Forget cached currencies and exchange rates (tests)."""
    with _lock:
        _currencies.clear()
        _rates.clear()


def lookups(client: ZohoBooksClient, *, reload: bool = False) -> ZohoLookups:
    """The organization's accounts, tags (with options) and currencies, cached per process."""
    lists = ZohoCatalog(client).lists(reload=reload)
    key = _org_key(client)
    with _lock:
        cached = _currencies.get(key)
    if cached is None or reload or time.monotonic() - cached[0] > LOOKUPS_MAX_AGE:
        currencies = list(client.currencies.iter_all())
        with _lock:
            _currencies[key] = (time.monotonic(), currencies)
    else:
        currencies = cached[1]
    return ZohoLookups.from_api(
        accounts=lists["accounts"], tags=lists["tags"], currencies=currencies
    )


def exchange_rate(
    client: ZohoBooksClient, lookups_: ZohoLookups, code: str, day: dt.date
) -> dict[str, Any] | None:
    """Zoho's rate for ``code`` on ``day``: base-currency units per unit of ``code``.

    Source: ``GET /settings/currencies/{id}/exchangerates?from_date=`` (the rate effective on
    the journal date or the closest before it); when Zoho has none, the currency's current
    ``exchange_rate`` from ``GET /settings/currencies``. Cached per currency and day.
    """
    currency = lookups_.currencies.get(code)
    if currency is None:
        return None
    key = (_org_key(client), currency.currency_id, day.isoformat())
    with _lock:
        cached = _rates.get(key)
    if cached is not None and time.monotonic() - cached[0] < RATE_MAX_AGE:
        return cached[1]
    found = ExchangeRates(client).on_or_before(currency.currency_id, day.isoformat())
    info: dict[str, Any] | None
    if found is not None:
        info = {
            "rate": str(found["rate"]),
            "source": "zoho:exchangerates",
            "effective_date": str(found.get("effective_date") or "")[:10],
            "exchange_rate_id": str(found.get("exchange_rate_id") or ""),
        }
    else:
        with _lock:
            listed = _currencies.get(_org_key(client), (0.0, []))[1]
        row = next((c for c in listed if str(c.get("currency_code")).upper() == code), None)
        info = None
        if row is not None and row.get("exchange_rate") not in (None, "", 0):
            info = {
                "rate": str(row["exchange_rate"]),
                "source": "zoho:currency",
                "effective_date": str(row.get("effective_date") or "")[:10],
            }
    if info is not None:
        with _lock:
            _rates[key] = (time.monotonic(), info)
    return info


# =========================================================================== the handler


def _compact(item: Mapping[str, Any]) -> dict[str, Any]:
    """Drop nulls and link fields: Concur prints every Custom1-40 whether used or not."""
    return {k: v for k, v in item.items() if v not in (None, "", {}) and k != "URI"}


def _rules(db: Database, connection_id: int) -> ExpensesRules:
    section = rules.section(db, connection_id, FLOW)
    if not section:
        raise MappingError(
            "the connection's rules have no expenses: section (import one with "
            "`connector mappings import`)",
            dependency="mapping",
            key="expenses",
        )
    try:
        return parse_expenses_rules(section)
    except ValidationFailed as exc:
        raise MappingError(str(exc), dependency="mapping", key="expenses") from exc


def _report(record: SyncRecord) -> ConcurReport:
    payload = record.source_payload or {}
    return assemble_report(payload["report"], payload["entries"], payload["allocations"])


def _siblings(db: Database, record: SyncRecord) -> list[SyncRecord]:
    """Other records (versions) of the same report on this connection."""
    with db.session() as session:
        rows = session.execute(
            select(SyncRecord).where(
                SyncRecord.connection_id == record.connection_id,
                SyncRecord.flow == FLOW,
                SyncRecord.source_id == record.source_id,
                SyncRecord.id != record.id,
            )
        ).scalars()
        out = list(rows)
        for row in out:
            session.expunge(row)
        return out


def _body_problems(body: Mapping[str, Any], lk: ZohoLookups) -> list[tuple[str, str, str]]:
    """Everything in a mapped body Zoho would refuse that the current lists can tell."""
    problems: list[tuple[str, str, str]] = []
    if not any(c.currency_id == str(body.get("currency_id")) for c in lk.currencies.values()):
        problems.append(
            ("currency", str(body.get("currency_id")), "the journal's currency is not enabled")
        )
    tags_by_id = {t.tag_id: t for t in lk.tags.values()}
    for line in body.get("line_items") or []:
        acc = lk.accounts.get(str(line.get("account_id")))
        if acc is None:
            problems.append(
                ("account", str(line.get("account_id")), f"account {line.get('account_id')} "
                 "not found in chart of accounts")
            )  # fmt: skip
            continue
        if not acc.is_active:
            problems.append(
                ("account", acc.account_name, f"account '{acc.account_name}' is inactive")
            )
            continue
        allowed = DEBIT_ACCOUNT_TYPES | CREDIT_ACCOUNT_TYPES
        if acc.account_type not in allowed:
            problems.append(
                ("account", acc.account_name, f"account '{acc.account_name}' is of type "
                 f"'{acc.account_type}', which an expense journal cannot use")
            )  # fmt: skip
        for tag_ref in line.get("tags") or []:
            tag = tags_by_id.get(str(tag_ref.get("tag_id")))
            option_id = str(tag_ref.get("tag_option_id"))
            if tag is None or not tag.is_active:
                problems.append(("tag", str(tag_ref.get("tag_id")), "reporting tag not found"))
            elif not any(o.option_id == option_id and o.is_active for o in tag.options.values()):
                problems.append(
                    ("tag", option_id, f"tag option {option_id} not found under '{tag.tag_name}'")
                )
    return problems


class ExpensesFlow:
    name = FLOW

    def queue_for(self, step: str) -> str:
        return {"fetch": "concur", "validate": "zoho", "post": "zoho"}.get(step, "default")

    # ------------------------------------------------------------------ clients

    def _concur(self, ctx: StepContext, record: SyncRecord, step: str) -> ExpenseReports:
        observer = audit.recorder(ctx.db, record_id=record.id, step=step, task_id=ctx.task_id)
        client = connections.concur_client(
            ctx.db, ctx.settings, record.connection_id, on_response=observer
        )
        return ExpenseReports(client)

    def _zoho(self, ctx: StepContext, record: SyncRecord, step: str) -> ZohoBooksClient:
        observer = audit.recorder(ctx.db, record_id=record.id, step=step, task_id=ctx.task_id)
        return connections.zoho_client(
            ctx.db, ctx.settings, record.connection_id, on_response=observer
        )

    # ------------------------------------------------------------------ steps

    def fetch(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        api = self._concur(ctx, record, "fetch")
        header = api.get(record.source_id)
        status = header.get("ApprovalStatusCode")
        if status != APPROVED:
            raise Superseded(
                f"report {record.source_id} is {status} in Concur now, not approved; "
                "its next approval is recorded as a new version"
            )
        current = approval_version(header)
        if current != record.source_version:
            raise Superseded(
                f"report {record.source_id} was approved again since this version was recorded "
                f"(now {current}); that approval is its own record"
            )
        entries = [_compact(e) for e in api.entries(record.source_id)]
        allocations = [_compact(a) for a in api.allocations(record.source_id)]
        report = assemble_report(header, entries, allocations)
        return {
            "report": _compact(header),
            "entries": entries,
            "allocations": allocations,
            "content_version": report_version(report),
            "personal_entries": [e.id for e in report.personal_entries],
        }

    def map(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        report = _report(record)
        rules_ = _rules(ctx.db, record.connection_id)
        zoho = self._zoho(ctx, record, "map")
        try:
            return self._map(ctx, record, zoho, report, rules_, reload=False)
        except ParkError as exc:
            if exc.dependency not in _RELOADABLE and not _reloadable(exc):
                raise
            # The accountant may just have added the account, tag option or currency.
            return self._map(ctx, record, zoho, report, rules_, reload=True)

    def _map(
        self,
        ctx: StepContext,
        record: SyncRecord,
        zoho: ZohoBooksClient,
        report: ConcurReport,
        rules_: ExpensesRules,
        *,
        reload: bool,
    ) -> dict[str, Any]:
        lk = lookups(zoho, reload=reload)
        code = report.currency.upper()
        rate_info = None
        day = journal_date_for(report, rules_)
        if code != lk.base_currency and code in lk.currencies and day is not None:
            rate_info = exchange_rate(zoho, lk, code, day)
        rate = Decimal(rate_info["rate"]) if rate_info else None
        body = map_report(report, rules_, lk, exchange_rate=rate)
        precision = lk.currencies[code].precision
        if rate_info is not None:
            with ctx.db.session() as session:
                live = session.get(SyncRecord, record.id)
                ledger.audit(
                    session,
                    live,
                    step="map",
                    outcome="exchange_rate",
                    task_id=ctx.task_id,
                    message=f"1 {code} = {rate_info['rate']} {lk.base_currency} "
                    f"({rate_info['source']}, effective {rate_info['effective_date'] or '?'}) "
                    f"for journal date {day}",
                    details={"currency": code, "base_currency": lk.base_currency, **rate_info},
                )
        payload = record.source_payload or {}
        return {
            "journal": body,
            "precision": precision,
            "exchange_rate": rate_info,
            "content_version": payload.get("content_version"),
        }

    def validate(self, ctx: StepContext, record: SyncRecord) -> None:
        mapped = record.mapped_payload or {}
        body = mapped["journal"]
        validate_journal(body, currency_precision=int(mapped["precision"]))
        newer = [
            s
            for s in _siblings(ctx.db, record)
            if s.created_at > record.created_at and s.state not in (RecordState.FAILED.value,)
        ]
        if newer:
            raise Superseded(
                f"a newer version of report {record.source_id} is recorded "
                f"({newer[0].source_version}); this one is not posted"
            )
        zoho = self._zoho(ctx, record, "validate")
        problems = _body_problems(body, lookups(zoho))
        if problems:
            problems = _body_problems(body, lookups(zoho, reload=True))
        if problems:
            kind, key, _ = problems[0]
            raise ParkError("; ".join(p[2] for p in problems), dependency=kind, key=key)

    def find_existing(self, ctx: StepContext, record: SyncRecord) -> str | None:
        """A journal with our reference that no other version of the report owns, and whose
        total is ours (a manual journal that happens to carry the report id is not adopted)."""
        zoho = self._zoho(ctx, record, "post")
        owned = {s.target_id for s in _siblings(ctx.db, record) if s.target_id}
        body = (record.mapped_payload or {}).get("journal") or {}
        total = sum(
            (to_wire_decimal(li["amount"]) for li in body.get("line_items") or []
             if li.get("debit_or_credit") == "debit"),
            Decimal(0),
        )  # fmt: skip
        for journal in Journals(zoho).find_by_reference(record.stable_ref or record.source_id):
            jid = str(journal.get("journal_id") or "")
            if not jid or jid in owned:
                continue
            try:
                theirs = Decimal(str(journal.get("total")))
            except (ArithmeticError, ValueError):
                continue
            if theirs == total:
                self._flag_new_version(ctx, record, jid)
                return jid
            log.warning(
                "record %s: journal %s has reference %s but total %s, not %s; not adopted",
                record.id, jid, record.stable_ref, theirs, total,
            )  # fmt: skip
        return None

    def post(self, ctx: StepContext, record: SyncRecord) -> str:
        zoho = self._zoho(ctx, record, "post")
        journal = Journals(zoho).create((record.mapped_payload or {})["journal"])
        jid = str(journal.get("journal_id") or "")
        if not jid:
            raise ValidationFailed("Zoho answered POST /journals without a journal_id")
        self._flag_new_version(ctx, record, jid)
        return jid

    # ------------------------------------------------------------------ re-approval flag

    def _flag_new_version(self, ctx: StepContext, record: SyncRecord, journal_id: str) -> None:
        earlier = [s for s in _siblings(ctx.db, record) if s.target_id and s.state == "posted"]
        if not earlier:
            return
        previous = [
            {"record_id": s.id, "source_version": s.source_version, "journal_id": s.target_id}
            for s in sorted(earlier, key=lambda s: s.id)
        ]
        ids = ", ".join(str(p["journal_id"]) for p in previous)
        message = (
            f"report {record.source_id} changed after it was posted (re-approved): journal "
            f"{journal_id} posted for version {record.source_version}; earlier journal(s) {ids} "
            "remain in Zoho: review and reverse the one that no longer applies"
        )
        with ctx.db.session() as session:
            live = session.get(SyncRecord, record.id)
            assert live is not None
            live.flags = {
                **(live.flags or {}),
                "new_version": {"journal_id": journal_id, "previous": previous},
            }
            ledger.audit(
                session,
                live,
                step="post",
                outcome="new_version",
                task_id=ctx.task_id,
                message=message,
                details={"journal_id": journal_id, "previous": previous},
            )
        log.warning("record %s: %s", record.id, message)


def _reloadable(exc: ParkError) -> bool:
    problems = exc.context.get("problems") or []
    return any(p.get("dependency") in _RELOADABLE for p in problems)


handler = ExpensesFlow()
flow_rules.register_flow_sections()

#: What the engine runs for this flow (``flows.FLOWS``).
DEFINITION = Flow(handler, intake=HOOKS, poll=poll)
