"""SAP Concur resources, one small class each, reached as ``client.<resource>``.

Vendors (Invoice Vendor v3.1) and Event Subscription Service v4 subscriptions; the flows add
payment requests and expense reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connector.api.base import segment
from connector.api.pagination import iter_next_url
from connector.api.shapes import KeyPath, first_list

if TYPE_CHECKING:
    from connector.concur.client import ConcurClient

VENDORS_PATH = "/api/v3.1/invoice/vendors"
#: The documented maximum page size for vendor searches.
VENDOR_PAGE_MAX = 1000
EXPENSE_REPORT_TOPIC = "public.concur.expense.report"


#: Where a vendor search keeps the vendors: ``Items`` as the Vendor v3.1 reference documents it,
#: ``Vendor`` as the batch bodies name them, and the XML answer read as JSON,
#: ``{"Items": {"Vendor": [...]}}``. The nested path comes first so that the wrapper is never
#: taken for one vendor.
VENDOR_ITEM_PATHS: tuple[KeyPath, ...] = (("Items", "Vendor"), ("Items",), ("Vendor",))


def vendor_items(body: Any, *, url: str) -> list[dict[str, Any]]:
    """The vendors of one search answer, whichever documented shape it has.

    A single object becomes a one-element list and ``null`` none.

    Raises:
        UnexpectedResponseError: none of ``VENDOR_ITEM_PATHS`` is present (names URL and keys).
    """
    return first_list(body, VENDOR_ITEM_PATHS, url=url, system="concur", what="vendor search")


class Resource:
    def __init__(self, client: ConcurClient) -> None:
        self.client = client


class Vendors(Resource):
    """``/api/v3.1/invoice/vendors``: search (``Items``/``NextPage``/``TotalCount``)."""

    @property
    def url(self) -> str:
        """The search URL as error messages name it (no query string)."""
        return f"{self.client.base_url}{VENDORS_PATH}"

    def search(self, *, limit: int = 25, offset: int = 0, **filters: Any) -> dict[str, Any]:
        """The raw answer (``TotalCount``, ``NextPage``); read vendors with ``vendor_items``."""
        params = {**filters, "limit": limit, "offset": offset}
        return self.client.request("GET", VENDORS_PATH, params=params)  # type: ignore[no-any-return]

    def find(self, *, limit: int = 25, offset: int = 0, **filters: Any) -> list[dict[str, Any]]:
        """The vendors one search returns, as a list whatever the answer's shape."""
        return vendor_items(self.search(limit=limit, offset=offset, **filters), url=self.url)

    def iter_all(
        self, *, page_size: int = VENDOR_PAGE_MAX, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        return iter_next_url(
            lambda: self.search(limit=page_size, **filters),
            lambda url: self.client.request("GET", url),
            items_key=lambda body: vendor_items(body, url=self.url),
        )


class Subscriptions(Resource):
    """Event Subscription Service v4 (needs an app token: ``concur.auth.app_token``)."""

    def list(self) -> list[dict[str, Any]]:
        body = self.client.request("GET", "/events/v4/subscriptions")
        return list(body or [])

    def get(self, subscription_id: str) -> dict[str, Any]:
        return self.client.request("GET", f"/events/v4/subscriptions/{segment(subscription_id)}")  # type: ignore[no-any-return]

    def put_webhook(
        self,
        subscription_id: str,
        endpoint: str,
        *,
        topic: str = EXPENSE_REPORT_TOPIC,
        event_filter: str = ".*",
    ) -> dict[str, Any]:
        """Create or update (ESS has no POST) a webhook subscription."""
        body = {
            "id": subscription_id,
            "filter": event_filter,
            "topic": topic,
            "webHookConfig": {"endpoint": endpoint},
        }
        return self.client.request("PUT", "/events/v4/subscriptions/webhook", json=body)  # type: ignore[no-any-return]
