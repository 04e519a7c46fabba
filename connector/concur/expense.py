"""SAP Concur expense reports (v3.0 lists and single reads, v4 report detail) for the expenses flow.

Plain JSON in and out; typing the data is ``mappings.concur_reports``'s job. Every list follows
``NextPage`` (Concur's full-URL link carrying ``offset``/``limit``) until it is empty, with the
largest page size each endpoint accepts: 100 (reports and entries are clamped there by Concur,
allocations refuse more with a 400).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connector.api.base import segment
from connector.api.pagination import iter_next_url

if TYPE_CHECKING:
    from connector.concur.client import ConcurClient

REPORTS_PATH = "/api/v3.0/expense/reports"
ENTRIES_PATH = "/api/v3.0/expense/entries"
ALLOCATIONS_PATH = "/api/v3.0/expense/allocations"
V4_REPORT_PATH = "/expensereports/v4/users/{user_id}/context/{context}/reports/{report_id}"

#: Largest page each v3 list accepts (allocations document 100 as their maximum).
PAGE_SIZE = 100

#: The back-stop's filter: approved and handed to payment (sap-concur.md §4.1).
APPROVED_FILTER = {"approvalStatusCode": "A_APPR", "paymentStatusCode": "P_PROC", "user": "ALL"}


class ExpenseReports:
    """Expense v3.0 reports, entries and allocations of one company."""

    def __init__(self, client: ConcurClient) -> None:
        self.client = client

    def _iter(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        query = {**params, "limit": PAGE_SIZE, "offset": 0}
        return iter_next_url(
            lambda: self.client.request("GET", path, params=query),
            lambda url: self.client.request("GET", url),
            items_key="Items",
        )

    def iter_reports(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """``GET /expense/reports`` with ``filters`` (``user=ALL`` is the caller's choice)."""
        return self._iter(REPORTS_PATH, filters)

    def iter_approved(self, *, modified_after: str | None = None) -> Iterator[dict[str, Any]]:
        """Every report approved and processing payment, modified after the watermark."""
        filters = dict(APPROVED_FILTER)
        if modified_after:
            filters["modifiedDateAfter"] = modified_after
        return self._iter(REPORTS_PATH, filters)

    def get(self, report_id: str) -> dict[str, Any]:
        """``GET /expense/reports/{id}``: the report header (no entries)."""
        return self.client.request("GET", f"{REPORTS_PATH}/{segment(report_id)}")  # type: ignore[no-any-return]

    def entries(self, report_id: str) -> list[dict[str, Any]]:
        """Every entry of the report (every page), personal ones included."""
        return list(self._iter(ENTRIES_PATH, {"reportID": report_id}))

    def allocations(self, report_id: str) -> list[dict[str, Any]]:
        """Every allocation of the report's entries (every page)."""
        return list(self._iter(ALLOCATIONS_PATH, {"reportID": report_id}))

    def v4_detail(
        self, user_id: str, report_id: str, *, context: str = "TRAVELER"
    ) -> dict[str, Any]:
        """v4 ``ReportDetails`` (``reportVersion``, ``isSentBack``...); needs the owner's UUID.

        The v3 reads carry everything the journal needs, so the flow does not call this in the
        happy path; it is here for diagnostics and tenants whose v3 data lacks a field.
        """
        path = V4_REPORT_PATH.format(
            user_id=segment(user_id), context=segment(context), report_id=segment(report_id)
        )
        return self.client.request("GET", path)  # type: ignore[no-any-return]
