"""Approved SAP Concur expense reports become balanced Zoho Books journals (issue #7, mapping layer).

Pure functions only: the flow fetches the report (``mappings.concur_reports.assemble_report``) and
the organization's chart of accounts, reporting tags and currencies (:class:`ZohoLookups`), picks
an exchange rate, and calls :func:`map_report` then ``validate_journal``. The rules section is
parsed in :mod:`mappings.expenses_rules`, the organization's lists are
:mod:`mappings.expenses_lookups` and the last check is :mod:`mappings.expenses_validation`.
Nothing here talks
HTTP or touches the database, so every rule is testable with plain data.

Rounding rule (also in ``docs/expenses-mapping.md``): each entry's approved amount is rounded to
the currency's precision and split across its allocations with the largest-remainder method
(``money.split``), so the allocation lines of an entry add up to that entry exactly; the credit
of a payment type is the sum of that payment type's already-rounded debit lines. Debits equal
credits by construction and the journal total equals the sum of the approved business entries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from connector.errors import MappingError, ParkError, ValidationFailed
from mappings import money
from mappings.concur_reports import (
    ConcurAllocation,
    ConcurEntry,
    ConcurReport,
)
from mappings.expenses_lookups import ZohoAccount, ZohoLookups
from mappings.expenses_rules import CREDIT_ACCOUNT_TYPES, DEBIT_ACCOUNT_TYPES, ExpensesRules
from mappings.journals import (
    DESCRIPTION_MAX_LENGTH,
    NOTES_MAX_LENGTH,
    REFERENCE_MAX_LENGTH,
    render_amount,
    render_id,
    to_wire_decimal,
)

#: Which dependency a combined ParkError is filed under: the first one to fix.
_DEPENDENCY_ORDER = ("mapping", "account", "tag", "currency", "report")


# =========================================================================== problems


@dataclass(frozen=True)
class Problem:
    """One missing dependency: what kind, which key, and the sentence the accountant reads."""

    dependency: str
    key: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """Plain data for ``ParkError.context`` and the audit row."""
        return {"dependency": self.dependency, "key": self.key, "reason": self.reason}


class _Problems:
    """Collects problems once each, in the order found, so one ParkError lists them all."""

    def __init__(self) -> None:
        self._items: dict[str, Problem] = {}

    def add(self, dependency: str, key: str, reason: str) -> None:
        self._items.setdefault(reason, Problem(dependency, key, reason))

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        if not self._items:
            return
        problems = list(self._items.values())
        kinds = {p.dependency for p in problems}
        lead = next(p for d in _DEPENDENCY_ORDER for p in problems if p.dependency == d)
        if len(problems) == 1:
            reason = problems[0].reason
        else:
            reason = f"{len(problems)} problems: " + "; ".join(p.reason for p in problems)
        cls = MappingError if kinds == {"mapping"} else ParkError
        exc = cls(reason, dependency=lead.dependency, key=lead.key)
        exc.context["problems"] = [p.as_dict() for p in problems]
        raise exc


class NothingToPost(ValidationFailed):
    """Raised when a report has no business amount to journalise (all personal, or all zero);
    the flow records it as done without a target instead of parking or failing it."""


# =========================================================================== mapping


def stable_reference(report: ConcurReport) -> str:
    """The journal's ``reference_number``: the Concur report id (brief §4), searchable in Zoho
    with ``GET /journals?reference_number=`` after an ambiguous post.

    Raises:
        ValueError: the id is empty or longer than Zoho's reference field.
    """
    ref = report.id.strip()
    if not ref or len(ref) > REFERENCE_MAX_LENGTH:
        raise ValueError(f"Concur report id {report.id!r} cannot be a Zoho reference_number")
    return ref


def _plain(amount: Decimal) -> str:
    """``100.00`` and ``100`` hash the same; never scientific notation."""
    return format(amount.normalize(), "f") if amount else "0"


def report_version(report: ConcurReport) -> str:
    """The ledger ``source_version``: a hash of what the journal is made of and of the approval.

    Hashed: report id and currency; ``SubmitDate`` and ``ProcessingPaymentDate`` (a report sent
    back, resubmitted and re-approved gets new ones, hence a new version even if no amount
    changed); and every entry (personal ones too) with its expense type, payment type, approved
    amount, personal flag and allocations (percentage and custom fields). Not hashed: payment
    status, ``PaidDate`` and ``LastModifiedDate``, which move when Concur pays the report; a
    paid report must not look like a new version and post twice. Not hashed either: the
    ``approved_at`` the flow may pass from an ESS event, which the poll back-stop would not have.
    """

    def stamp(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    def alloc(a: ConcurAllocation) -> list[Any]:
        customs = {k: [v.code, v.value] for k, v in sorted(a.custom_fields.items())}
        return [a.id, _plain(a.percentage), customs]

    def entry(e: ConcurEntry) -> list[Any]:
        allocs = [alloc(a) for a in sorted(e.allocations, key=lambda a: a.id)]
        return [
            e.id,
            e.is_personal,
            e.expense_type_code,
            e.payment_type_code,
            _plain(e.approved_amount),
            allocs,
        ]

    entries = sorted((*report.entries, *report.personal_entries), key=lambda e: e.id)
    content = [
        "expenses/v1",
        report.id,
        report.currency.upper(),
        stamp(report.submit_date),
        stamp(report.processing_payment_date),
        [entry(e) for e in entries],
    ]
    digest = hashlib.sha256(json.dumps(content, separators=(",", ":")).encode()).hexdigest()
    return f"h1:{digest[:24]}"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_DATE_LABEL = {
    "approval": "approval date (ProcessingPaymentDate)",
    "submit": "submit date (SubmitDate)",
    "processing_payment": "processing-payment date (ProcessingPaymentDate)",
    "paid": "paid date (PaidDate)",
}


def journal_date_for(report: ConcurReport, rules: ExpensesRules) -> date | None:
    """The journal date ``map_report`` will use (the flow fetches the exchange rate for it)."""
    return _journal_date(report, rules.journal_date)


def _journal_date(report: ConcurReport, rule: str) -> date | None:
    if rule == "approval":
        return report.approval_date
    when = {
        "submit": report.submit_date,
        "processing_payment": report.processing_payment_date,
        "paid": report.paid_date,
    }[rule]
    return when.date() if when else None


class _Resolver:
    """Looks accounts and tag options up, turning every miss into a Problem (never stopping)."""

    def __init__(self, rules: ExpensesRules, lookups: ZohoLookups, problems: _Problems) -> None:
        self.rules = rules
        self.lookups = lookups
        self.problems = problems

    def account(self, ref: str, role: Literal["debit", "credit"]) -> ZohoAccount | None:
        matches = self.lookups.accounts_by_name.get(ref, ())
        if not matches and ref in self.lookups.accounts:
            matches = (self.lookups.accounts[ref],)
        if not matches:  # the rules loader also accepts an account code (``6120``)
            matches = tuple(a for a in self.lookups.accounts.values() if a.account_code == ref)
        if not matches:
            self.problems.add("account", ref, f"account '{ref}' not found in chart of accounts")
            return None
        if len(matches) > 1:
            self.problems.add(
                "account", ref, f"account name '{ref}' matches {len(matches)} accounts; use its id"
            )
            return None
        acc = matches[0]
        if not acc.is_active:
            self.problems.add("account", ref, f"account '{acc.account_name}' is inactive")
            return None
        if role == "debit" and acc.account_type not in DEBIT_ACCOUNT_TYPES:
            self.problems.add(
                "account",
                ref,
                f"account '{acc.account_name}' is of type '{acc.account_type}', "
                "which cannot be debited for an expense",
            )
            return None
        if role == "credit" and acc.account_type not in CREDIT_ACCOUNT_TYPES:
            self.problems.add(
                "account",
                ref,
                f"account '{acc.account_name}' is of type '{acc.account_type}', "
                "which cannot be credited for an expense payment",
            )
            return None
        return acc

    def debit_account(self, entry: ConcurEntry) -> ZohoAccount | None:
        ref = self.rules.account_for(entry.expense_type_code)
        if ref is None:
            self.problems.add(
                "mapping",
                entry.expense_type_code,
                f"expense type '{entry.expense_type_code}' has no account mapping "
                "and no default_account is set",
            )
            return None
        return self.account(ref, "debit")

    def credit_account(self, payment_type: str) -> ZohoAccount | None:
        ref = self.rules.credit_accounts.get(payment_type)
        if ref is None:
            label = f"payment type '{payment_type}'" if payment_type else "an empty payment type"
            self.problems.add(
                "mapping", payment_type, f"{label} has no account mapping in credit_accounts"
            )
            return None
        return self.account(ref, "credit")

    def cost_centre_tags(self, entry: ConcurEntry, alloc: ConcurAllocation | None) -> list[Any]:
        rule = self.rules.cost_centre
        if rule is None:
            return []
        tag = self.lookups.tags.get(rule.tag) or next(
            (t for t in self.lookups.tags.values() if t.tag_id == rule.tag), None
        )  # by name, or by id (the rules loader accepts both)
        if tag is None:
            self.problems.add("tag", rule.tag, f"reporting tag '{rule.tag}' not found")
            return []
        if not tag.is_active:
            self.problems.add("tag", rule.tag, f"reporting tag '{rule.tag}' is inactive")
            return []
        cf = alloc.custom(rule.field) if alloc is not None else None
        concur_key = None
        if cf is not None:
            concur_key = (cf.code or cf.value) if rule.match == "code" else (cf.value or cf.code)
        if not concur_key:
            if tag.is_mandatory:
                self.problems.add(
                    "tag",
                    f"{rule.tag}:{entry.id}",
                    f"entry '{entry.id}' ({entry.expense_type_code}) has no {rule.field} value "
                    f"for the mandatory reporting tag '{rule.tag}'",
                )
            return []
        name = rule.option_name(concur_key)
        option = tag.options.get(name) or next(
            (o for o in tag.options.values() if o.option_id == name), None
        )
        shown = f"'{name}'" if name == concur_key else f"'{name}' (Concur '{concur_key}')"
        if option is None:
            self.problems.add(
                "tag", f"{rule.tag}:{name}", f"tag option {shown} not found under '{rule.tag}'"
            )
            return []
        if not option.is_active:
            self.problems.add(
                "tag", f"{rule.tag}:{name}", f"tag option {shown} under '{rule.tag}' is inactive"
            )
            return []
        return [{"tag_id": render_id(tag.tag_id), "tag_option_id": render_id(option.option_id)}]


def _weights(entry: ConcurEntry, problems: _Problems) -> list[Decimal]:
    """Allocation percentages; they must cover the entry (100 %, give or take 0.01 point)."""
    if not entry.allocations:
        return [Decimal(100)]
    weights = [a.percentage for a in entry.allocations]
    total = sum(weights, Decimal(0))
    if any(w < 0 for w in weights) or abs(total - 100) > Decimal("0.01"):
        problems.add(
            "report",
            entry.id,
            f"allocations of entry '{entry.id}' ({entry.expense_type_code}) add up to "
            f"{_plain(total)}%, not 100%",
        )
        return []
    return weights


def _line(
    account: ZohoAccount,
    signed: Decimal,
    side: Literal["debit", "credit"],
    description: str,
    places: int,
    tags: list[Any] | None = None,
) -> dict[str, Any] | None:
    """A line with a positive amount; a negative one (a refund) goes to the other side."""
    if signed == 0:
        return None  # Zoho refuses zero lines; a 0.01 split three ways leaves two of them
    if signed < 0:
        side = "credit" if side == "debit" else "debit"
    line: dict[str, Any] = {
        "account_id": account.account_id,
        "description": _clip(description, DESCRIPTION_MAX_LENGTH),
        "amount": render_amount(abs(signed), places),
        "debit_or_credit": side,
    }
    if tags:
        line["tags"] = tags
    return line


def _entry_description(entry: ConcurEntry, share: Decimal | None) -> str:
    parts = [entry.expense_type_name or entry.expense_type_code]
    if entry.vendor:
        parts.append(entry.vendor)
    if entry.transaction_date:
        parts.append(entry.transaction_date.isoformat())
    text = " - ".join(parts)
    if share is None:
        return text
    return f"{text} ({_plain(share.quantize(Decimal('0.01')))}%)"


def map_report(
    report: ConcurReport,
    rules: ExpensesRules,
    lookups: ZohoLookups,
    *,
    exchange_rate: Decimal | None,
) -> dict[str, Any]:
    """The ``POST /journals`` body for one approved report.

    One debit line per (business entry, allocation) on the expense type's account with the
    cost-centre tag option, one credit line per payment type on its mapped account. See the
    module docstring for the rounding rule.

    Args:
        report: the assembled report (personal entries already set aside).
        rules: the connection's ``expenses:`` rules.
        lookups: the organization's accounts, tags and currencies.
        exchange_rate: units of the base currency per unit of the report currency, used only
            when the report currency is not the base currency. The flow takes it from Zoho
            (``GET /settings/currencies/{id}/exchangerates`` effective on the journal date) and
            records it and its source in the audit row.

    Raises:
        MappingError: only rules are missing (an expense or payment type without an account).
        ParkError: anything else is missing or inconsistent; ``reason`` lists every problem and
            ``context["problems"]`` has them as data.
        NothingToPost: no business amount is left to journalise.
    """
    if not any(e.approved_amount for e in report.entries):
        raise NothingToPost(
            f"report '{report.id}' has no approved business amount to post "
            f"({len(report.personal_entries)} personal entr(y/ies) excluded)"
        )
    problems = _Problems()
    resolve = _Resolver(rules, lookups, problems)
    code = report.currency.upper()

    currency = lookups.currencies.get(code)
    if currency is None:
        problems.add("currency", code, f"currency '{code}' is not enabled in the organization")
    places = currency.precision if currency else money.precision(code)
    foreign = code != lookups.base_currency.upper()
    if foreign and (exchange_rate is None or not exchange_rate.is_finite() or exchange_rate <= 0):
        problems.add(
            "currency",
            f"{code}/{lookups.base_currency}",
            f"no exchange rate from {code} to {lookups.base_currency} is available",
        )

    journal_date = _journal_date(report, rules.journal_date)
    if journal_date is None:
        problems.add(
            "report",
            f"journal_date:{rules.journal_date}",
            f"report has no {_DATE_LABEL[rules.journal_date]} yet "
            f"(journal_date: {rules.journal_date})",
        )
    if (
        report.reported_approved_total is not None
        and report.reported_approved_total != report.approved_total
    ):
        problems.add(
            "report",
            report.id,
            f"Concur's TotalApprovedAmount {report.reported_approved_total} {code} does not "
            f"match the approved entries' sum {report.approved_total} {code}",
        )

    debit_lines: list[dict[str, Any]] = []
    credits: dict[str, Decimal] = {}  # payment type -> signed sum of its rounded debit lines
    credit_names: dict[str, str] = {}
    for entry in report.entries:
        account = resolve.debit_account(entry)
        credit_account = resolve.credit_account(entry.payment_type_code)
        weights = _weights(entry, problems)
        allocs: list[ConcurAllocation | None] = list(entry.allocations) or [None]
        tags = [resolve.cost_centre_tags(entry, a) for a in allocs]
        if not weights or account is None or credit_account is None:
            continue
        parts = money.split(entry.approved_amount, weights, code, places)
        several = len(allocs) > 1
        for alloc, part, tag in zip(allocs, parts, tags, strict=True):
            share = alloc.percentage if (several and alloc is not None) else None
            line = _line(account, part, "debit", _entry_description(entry, share), places, tag)
            if line is not None:
                debit_lines.append(line)
        pt = entry.payment_type_code
        credits[pt] = credits.get(pt, Decimal(0)) + sum(parts, Decimal(0))
        credit_names.setdefault(pt, entry.payment_type_name or pt)
    problems.raise_if_any()
    if journal_date is None or currency is None:  # pragma: no cover - reported as problems
        raise RuntimeError("journal date or currency missing without a problem")

    credit_lines = []
    for pt, amount in credits.items():
        acc = resolve.credit_account(pt)
        if acc is None:  # pragma: no cover - resolved above without a problem
            raise RuntimeError(f"credit account for {pt!r} vanished")
        label = credit_names[pt] if credit_names[pt] == pt else f"{credit_names[pt]} ({pt})"
        text = f"{label} - {report.name}" if report.name else label
        line = _line(acc, amount, "credit", text, places)
        if line is not None:
            credit_lines.append(line)
    lines = debit_lines + credit_lines
    if not lines:
        raise NothingToPost(f"report '{report.id}' rounds to zero in {code}")

    _check_invariants(lines, places, sum(credits.values(), Decimal(0)), report, code)

    owner = report.owner_name or report.owner_login_id or "unknown owner"
    if report.owner_name and report.owner_login_id:
        owner = f"{report.owner_name} ({report.owner_login_id})"
    notes = f"SAP Concur expense report '{report.name}' by {owner}; Concur report ID {report.id}"
    body: dict[str, Any] = {
        "journal_date": journal_date.isoformat(),
        "reference_number": stable_reference(report),
        "notes": _clip(notes, NOTES_MAX_LENGTH),
        "journal_type": "both",
        "currency_id": currency.currency_id,
        "status": rules.status,
        "line_items": lines,
    }
    if foreign and exchange_rate is not None:
        body["exchange_rate"] = float(exchange_rate) if exchange_rate % 1 else int(exchange_rate)
    return body


def _check_invariants(
    lines: list[dict[str, Any]], places: int, net: Decimal, report: ConcurReport, code: str
) -> None:
    """Debits equal credits and the total is the approved sum; a failure here is our bug."""
    side = {"debit": Decimal(0), "credit": Decimal(0)}
    for line in lines:
        side[line["debit_or_credit"]] += to_wire_decimal(line["amount"])
    debit, credit = side["debit"], side["credit"]
    expected = sum(
        (money.quantize(e.approved_amount, code, places) for e in report.entries), Decimal(0)
    )
    if debit != credit or net != expected:
        raise RuntimeError(
            f"unbalanced journal for report {report.id}: debits {debit}, credits {credit}, "
            f"net {net}, approved {expected}"
        )
