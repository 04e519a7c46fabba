"""The last check on a Zoho journal body before it is posted (docs/expenses-mapping.md).

Zoho accepts some unbalanced or malformed journals and rejects others with terse messages; the
body is checked here first, with every problem listed, so a record fails with a reason a person
can act on and nothing half-valid reaches the ledger of the organization.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from connector.errors import ValidationFailed
from mappings.expenses_rules import flatten_errors
from mappings.journals import (
    ZohoJournalSchema,
    to_wire_decimal,
)


def validate_journal(body: Mapping[str, Any], *, currency_precision: int) -> None:
    """Check a journal body before ``POST /journals``: everything Zoho would refuse that we can
    see without asking it.

    Schema (``ZohoJournalSchema``, strict types and known keys only), then business rules:
    ``reference_number`` present (the stable reference), ``journal_date`` a real date, every
    amount > 0 with at most ``currency_precision`` decimals, at least one debit and one credit,
    debits equal to credits to the last unit, and a positive ``exchange_rate`` when given.

    Raises:
        ValidationFailed: every problem at once; ``errors`` holds marshmallow's dict plus
            ``_rules`` for the business rules.
    """
    errors: dict[str, Any] = dict(ZohoJournalSchema().validate(dict(body)))
    rules: list[str] = []
    if not body.get("reference_number"):
        rules.append("reference_number is required: it is how a retry finds this journal")
    raw_date = body.get("journal_date")
    if isinstance(raw_date, str) and "journal_date" not in errors:
        try:
            date.fromisoformat(raw_date)
        except ValueError:
            rules.append(f"journal_date {raw_date!r} is not a calendar date")
    rate = body.get("exchange_rate")
    if rate is not None and "exchange_rate" not in errors and to_wire_decimal(rate) <= 0:
        rules.append("exchange_rate must be greater than zero")

    quantum = Decimal(1).scaleb(-currency_precision)
    totals = {"debit": Decimal(0), "credit": Decimal(0)}
    lines = body.get("line_items")
    for n, line in enumerate(lines if isinstance(lines, list) else []):
        if not isinstance(line, Mapping):
            continue
        try:
            amount = to_wire_decimal(line.get("amount"))
        except ValueError:
            continue  # the schema already reports it
        if amount <= 0:
            rules.append(f"line_items[{n}].amount must be greater than zero (is {amount})")
        if amount != amount.quantize(quantum):
            rules.append(
                f"line_items[{n}].amount {amount} has more than {currency_precision} decimal(s)"
            )
        side = line.get("debit_or_credit")
        if side in totals:
            totals[side] += amount
    if isinstance(lines, list) and lines:
        if not totals["debit"] or not totals["credit"]:
            rules.append("a journal needs at least one debit and one credit line")
        elif totals["debit"] != totals["credit"]:
            rules.append(
                f"journal is not balanced: debits {totals['debit']} != credits {totals['credit']}"
            )
    if rules:
        errors["_rules"] = rules
    if errors:
        problems = flatten_errors({k: v for k, v in errors.items() if k != "_rules"}) + rules
        raise ValidationFailed(
            f"journal is invalid ({len(problems)} problem(s)): " + "; ".join(problems),
            errors=errors,
        )
