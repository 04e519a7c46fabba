"""Zoho Books journals and currency exchange rates, for the expenses flow.

Plain JSON in and out. ``find_by_reference`` is the search brief §4 runs before any second
``POST /journals``: Zoho has no idempotency key, and ``reference_number`` (the Concur report id)
is the one field we control that its list filters on exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connector.api.base import segment
from connector.api.pagination import iter_pages_by_number

if TYPE_CHECKING:
    from connector.zoho.client import ZohoBooksClient

PER_PAGE = 200


class Journals:
    """``/journals`` of the client's organization."""

    def __init__(self, client: ZohoBooksClient) -> None:
        self.client = client

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /journals``; returns the created ``journal``."""
        answer = self.client.request("POST", "/journals", json=body)
        return dict((answer or {}).get("journal") or {})

    def get(self, journal_id: str) -> dict[str, Any]:
        answer = self.client.request("GET", f"/journals/{segment(journal_id)}")
        return dict((answer or {}).get("journal") or {})

    def iter_all(self, **filters: Any) -> Iterator[dict[str, Any]]:
        def page(number: int) -> dict[str, Any]:
            params = {**filters, "page": number, "per_page": PER_PAGE}
            return self.client.request("GET", "/journals", params=params)  # type: ignore[no-any-return]

        return iter_pages_by_number(page, items_key="journals")

    def find_by_reference(self, reference_number: str) -> list[dict[str, Any]]:
        """Every journal whose ``reference_number`` is exactly ``reference_number``.

        The filter is exact in Zoho's docs; the comparison is repeated here so that a server
        that treats it as a prefix or substring can never make us adopt someone else's journal.
        """
        return [
            j
            for j in self.iter_all(reference_number=reference_number)
            if str(j.get("reference_number") or "") == reference_number
        ]


class ExchangeRates:
    """``/settings/currencies/{currency_id}/exchangerates``."""

    def __init__(self, client: ZohoBooksClient) -> None:
        self.client = client

    def on_or_before(self, currency_id: str, day: str) -> dict[str, Any] | None:
        """The rate effective on ``day`` (``yyyy-mm-dd``) or the closest one before it.

        ``from_date`` asks Zoho for exactly that ("the exchange rate details from the given date
        or from previous closest match"); the answer is filtered again here so that a server
        returning every rate still yields the right one.
        """
        answer = self.client.request(
            "GET",
            f"/settings/currencies/{segment(currency_id)}/exchangerates",
            params={"from_date": day},
        )
        rates = [
            r
            for r in (answer or {}).get("exchange_rates") or []
            if str(r.get("effective_date") or "")[:10] <= day and r.get("rate") not in (None, "")
        ]
        if not rates:
            return None
        return max(rates, key=lambda r: str(r.get("effective_date") or ""))
