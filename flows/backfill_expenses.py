"""The expenses backfill source: approved Concur reports, recorded and dry-run through the
expenses flow's own intake and map logic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from connector.errors import ConfigurationError, ParkError
from flows import expenses, expenses_intake, expenses_lookups
from flows.backfill_source import Page, Source, existing_record, midnight, problem_result


class ExpensesSource(Source):
    """Approved Concur reports modified since the date (the expenses poll's filter and
    ``ensure_record``), by offset."""

    flow = "expenses"
    parts = ("report",)
    first_position = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not expenses_intake.enabled(self.db, self.connection_id):
            raise ConfigurationError(
                f"connection {self.connection_id}: {expenses_intake.NOT_ENABLED.split(';')[0]}"
            )

    def overlap(self, position: int) -> int:
        return max(0, position - self.page_size)

    def page(self, part: int, position: int) -> Page:
        from connector.concur.expense import APPROVED_FILTER, REPORTS_PATH

        since = midnight(self.since).replace(tzinfo=None)
        body = self.concur().request(
            "GET", REPORTS_PATH,
            params={**APPROVED_FILTER, "modifiedDateAfter": expenses_intake.v3_time(since),
                    "limit": self.page_size, "offset": position},
        )  # fmt: skip
        items = [dict(i) for i in (body or {}).get("Items") or []]
        return Page(items, bool((body or {}).get("NextPage")) and bool(items),
                    position + len(items))  # fmt: skip

    def ensure(self, session: Session, part: int, item: Mapping[str, Any]) -> Any:
        return expenses_intake.ensure_record(session, self.connection_id, item, trigger="backfill")

    def dry_run(self, part: int, item: Mapping[str, Any]) -> dict[str, Any]:
        from mappings.concur_reports import assemble_report
        from mappings.expenses import journal_date_for, map_report
        from mappings.expenses_validation import validate_journal

        report_id = str(item.get("ID") or "")
        version = expenses_intake.approval_version(item)
        out: dict[str, Any] = {
            "flow": self.flow,
            "source_id": report_id,
            "source_ref": str(item.get("Name") or report_id),
            "source_version": version,
            "ledger": existing_record(self.db, self.connection_id, self.flow, report_id, version),
        }
        try:
            api = self.concur().expense_reports  # fetch: header, entries, allocations
            header = api.get(report_id)
            entries = [expenses.compact(x) for x in api.entries(report_id)]
            allocations = [expenses.compact(x) for x in api.allocations(report_id)]
            report = assemble_report(expenses.compact(header), entries, allocations)
            rules_ = expenses.load_rules(self.db, self.connection_id)  # map
            lk = expenses_lookups.lookups(self.zoho())
            code = report.currency.upper()
            day = journal_date_for(report, rules_)
            rate_info = None
            if code != lk.base_currency and code in lk.currencies and day is not None:
                rate_info = expenses_lookups.exchange_rate(self.zoho(), lk, code, day)
            from decimal import Decimal

            rate = Decimal(rate_info["rate"]) if rate_info else None
            body = map_report(report, rules_, lk, exchange_rate=rate)
            out["target_payload"] = body
            validate_journal(body, currency_precision=lk.currencies[code].precision)  # validate
            problems = expenses.body_problems(body, lk)
            if problems:
                kind, key, _ = problems[0]
                raise ParkError("; ".join(p[2] for p in problems), dependency=kind, key=key)
        except Exception as exc:
            out["result"], out["problems"] = problem_result(exc)
            return out
        out.update(result="would_post", problems=[])
        return out
