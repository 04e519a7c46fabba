"""Expenses flow (issue #7): approved SAP Concur expense reports become balanced Zoho Books journals.

How a report travels (docs/expenses.md):

1. **Trigger.** An ESS ``statusChanged`` event that reaches approval (``EXPENSES_APPROVAL_TRIGGER``)
   or the back-stop poll (v3 reports ``A_APPR`` + ``P_PROC`` modified after the cursor) names a
   report. Both create the ledger record with ``flows.expenses_intake.ensure_record``, keyed by the
   report id and its **approval version** (``approval_version``: ``ProcessingPaymentDate`` +
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

Intake and poll live in ``flows.expenses_intake``, the cached Zoho lists and rates in
``flows.expenses_lookups``; this module is the step handler and the flow's ``DEFINITION``.

A report sent back and re-approved after it was posted has a new approval version, hence a new
record; it posts a new journal, and the record and the audit trail are flagged with both journal
ids for the accountant to reverse the earlier one (docs/expenses.md, "Re-approval").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from connector import ledger, rules
from connector.concur.expense import ExpenseReports
from connector.db import Database
from connector.errors import (
    MappingError,
    ParkError,
    ValidationFailed,
)
from connector.models import RecordState, SyncRecord
from connector.registry import Flow
from connector.steps import StepContext
from connector.zoho.client import ZohoBooksClient
from flows.expenses_intake import APPROVED, FLOW, HOOKS, approval_version, poll
from flows.expenses_lookups import exchange_rate, lookups
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

#: Lookup problems a fresh copy of the Zoho lists can cure (rules problems cannot).
_RELOADABLE = frozenset({"account", "tag", "currency"})


class Superseded(ValidationFailed):
    """This version of the report will not be posted: Concur moved on (sent back, re-approved,
    or a newer version of it is already on its way)."""


# =========================================================================== the handler


def compact(item: Mapping[str, Any]) -> dict[str, Any]:
    """Drop nulls and link fields: Concur prints every Custom1-40 whether used or not."""
    return {k: v for k, v in item.items() if v not in (None, "", {}) and k != "URI"}


def load_rules(db: Database, connection_id: int) -> ExpensesRules:
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


def body_problems(body: Mapping[str, Any], lk: ZohoLookups) -> list[tuple[str, str, str]]:
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
        return ctx.concur(record, step).expense_reports

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
        entries = [compact(e) for e in api.entries(record.source_id)]
        allocations = [compact(a) for a in api.allocations(record.source_id)]
        report = assemble_report(header, entries, allocations)
        return {
            "report": compact(header),
            "entries": entries,
            "allocations": allocations,
            "content_version": report_version(report),
            "personal_entries": [e.id for e in report.personal_entries],
        }

    def map(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        report = _report(record)
        rules_ = load_rules(ctx.db, record.connection_id)
        zoho = ctx.zoho(record, "map")
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
        zoho = ctx.zoho(record, "validate")
        problems = body_problems(body, lookups(zoho))
        if problems:
            problems = body_problems(body, lookups(zoho, reload=True))
        if problems:
            kind, key, _ = problems[0]
            raise ParkError("; ".join(p[2] for p in problems), dependency=kind, key=key)

    def find_existing(self, ctx: StepContext, record: SyncRecord) -> str | None:
        """A journal with our reference that no other version of the report owns, and whose
        total is ours (a manual journal that happens to carry the report id is not adopted)."""
        zoho = ctx.zoho(record, "post")
        owned = {s.target_id for s in _siblings(ctx.db, record) if s.target_id}
        body = (record.mapped_payload or {}).get("journal") or {}
        total = sum(
            (to_wire_decimal(li["amount"]) for li in body.get("line_items") or []
             if li.get("debit_or_credit") == "debit"),
            Decimal(0),
        )  # fmt: skip
        for journal in zoho.journals.find_by_reference(record.stable_ref or record.source_id):
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
        zoho = ctx.zoho(record, "post")
        journal = zoho.journals.create((record.mapped_payload or {})["journal"])
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
