"""The ``expenses:`` section of a connection's rules file, parsed and checked (docs/expenses-mapping.md).

A rules mistake must stop at import, with every problem named, rather than park a report
halfway through a month's run; the section is validated here once into an immutable
:class:`ExpensesRules` the mapping reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from connector.errors import ValidationFailed
from mappings.concur_reports import (
    canonical_field_name,
)

JournalDateRule = Literal["approval", "submit", "processing_payment", "paid"]
JOURNAL_DATE_OPTIONS: tuple[str, ...] = ("approval", "submit", "processing_payment", "paid")
STATUS_OPTIONS: tuple[str, ...] = ("published", "draft")

#: Accounts an expense may be debited to (Zoho ``account_type`` values, incl. the IFRS ones).
DEBIT_ACCOUNT_TYPES = frozenset(
    {
        "expense",
        "other_expense",
        "cost_of_goods_sold",
        "manufacturing_expense",
        "impairment_expense",
        "depreciation_expense",
        "employee_benefit_expense",
        "lease_expense",
        "finance_expense",
        "tax_expense",
    }
)
#: Accounts a payment type may be credited to: what the company owes the employee or the card
#: issuer, or what it paid from. ``accounts_payable`` is left out on purpose: Zoho wants a
#: vendor on every journal line that touches it, and an employee reimbursement has none.
CREDIT_ACCOUNT_TYPES = frozenset(
    {
        "other_current_liability",
        "credit_card",
        "bank",
        "cash",
        "other_liability",
        "long_term_liability",
        "employee_benefit_liability",
        "financial_liability",
    }
)


@dataclass(frozen=True)
class CostCentreRule:
    """Which allocation custom field holds the cost centre, and the Zoho tag it becomes."""

    field: str  # canonical name (``Custom1``), see ``canonical_field_name``
    tag: str  # Zoho reporting tag name, e.g. "Cost Center"
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)  # Concur -> Zoho name
    match: Literal["code", "value"] = "code"  # read the list item's Code (CC-100) or Value

    def option_name(self, concur_key: str) -> str:
        """The Zoho option for a Concur value: the mapped name, or the same name when unlisted."""
        return self.options.get(concur_key, concur_key)


@dataclass(frozen=True)
class ExpensesRules:
    """The ``expenses:`` section of a connection's rules file, parsed."""

    credit_accounts: Mapping[str, str]
    accounts: Mapping[str, str] = field(default_factory=dict)
    default_account: str | None = None
    cost_centre: CostCentreRule | None = None
    journal_date: JournalDateRule = "approval"
    status: Literal["published", "draft"] = "published"

    def account_for(self, expense_type_code: str) -> str | None:
        """The Zoho account (name or id) for a Concur expense type, or ``None`` to wait."""
        return self.accounts.get(expense_type_code) or self.default_account


def _custom_field_name(value: str) -> None:
    try:
        canonical_field_name(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


_NAME = fields.String(validate=validate.Length(min=1))


class CostCentreSchema(Schema):
    """``expenses.cost_centre``."""

    class Meta:
        unknown = RAISE

    field = fields.String(required=True, validate=_custom_field_name)
    tag = fields.String(required=True, validate=validate.Length(min=1))
    options = fields.Dict(keys=fields.String(), values=_NAME, load_default=dict)
    match = fields.String(load_default="code", validate=validate.OneOf(["code", "value"]))


class ExpensesSectionSchema(Schema):
    """``expenses:`` in the rules file; ``unknown = RAISE`` so a misspelt key is reported, not
    ignored. Loading collects every problem at once (marshmallow's error dict)."""

    class Meta:
        unknown = RAISE

    accounts = fields.Dict(keys=fields.String(), values=_NAME, load_default=dict)
    default_account = fields.String(
        allow_none=True, load_default=None, validate=validate.Length(min=1)
    )
    credit_accounts = fields.Dict(
        keys=fields.String(),
        values=_NAME,
        required=True,
        validate=validate.Length(min=1, error="map at least one payment type to an account"),
    )
    cost_centre = fields.Nested(CostCentreSchema, allow_none=True, load_default=None)
    journal_date = fields.String(
        load_default="approval", validate=validate.OneOf(JOURNAL_DATE_OPTIONS)
    )
    status = fields.String(load_default="published", validate=validate.OneOf(STATUS_OPTIONS))

    @validates_schema
    def _some_account(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("accounts") and not data.get("default_account"):
            raise ValidationError(
                "set accounts (expense type -> account) or default_account", "accounts"
            )


def flatten_errors(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error dict as ``path: message`` lines."""
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, value in messages.items():
            path = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            out.extend(flatten_errors(value, path))
        return out
    if isinstance(messages, list | tuple):
        return [line for m in messages for line in flatten_errors(m, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]


def parse_expenses_rules(section: Mapping[str, Any] | None) -> ExpensesRules:
    """Validate and parse the ``expenses:`` section (the rules-file loader calls this).

    Raises:
        ValidationFailed: every problem at once; ``errors`` is marshmallow's dict and the message
            lists them as ``expenses.<key>: <problem>`` lines.
    """
    try:
        data = ExpensesSectionSchema().load(dict(section or {}))
    except ValidationError as exc:
        problems = flatten_errors(exc.messages, "expenses")
        raise ValidationFailed(
            f"expenses rules are invalid ({len(problems)} problem(s)): " + "; ".join(problems),
            errors=exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages},
        ) from exc
    cc = data.pop("cost_centre")
    cost_centre = None
    if cc is not None:
        cost_centre = CostCentreRule(
            field=canonical_field_name(cc["field"]),
            tag=cc["tag"],
            options=dict(cc["options"]),
            match=cc["match"],
        )
    return ExpensesRules(cost_centre=cost_centre, **data)
