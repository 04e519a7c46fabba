"""SAP Concur Invoice v3.0 payment requests: create, read, update, and digests by invoice number.

``POST``/``PUT /api/v3.0/invoice/paymentrequest`` answer ``CreateResponse {ID, URI}``; the PUT
carries the id in the body (``RequestID``), not in the path (sap-concur.md §2.1).
``paymentrequestdigests?vendorInvoiceNumber=`` is how a post whose answer was lost is found
again (brief §4, sap-concur.md §2.3). Owned by the payables flow; reached with
:func:`payment_requests` so the shared client class needs no change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connector.api.base import segment
from connector.api.pagination import iter_next_url
from connector.concur.resources import Resource
from connector.errors import RetryableError

if TYPE_CHECKING:
    pass

PAYMENT_REQUEST_PATH = "/api/v3.0/invoice/paymentrequest"
DIGESTS_PATH = "/api/v3.0/invoice/paymentrequestdigests"
#: Approval statuses in which a payment request can still be changed with ``PUT``: not yet
#: submitted, and sent back. UNCONFIRMED for real tenants (the docs list the statuses, not which
#: are editable); a PUT Concur refuses still fails the record with Concur's message.
EDITABLE_APPROVAL_STATUSES = frozenset({"A_NOTF", "A_RESU"})


class PaymentRequests(Resource):
    """``/api/v3.0/invoice/paymentrequest`` and its digests."""

    def create(self, body: dict[str, Any]) -> str:
        """``POST``; returns the new request's ``ID``."""
        answer = self.client.request("POST", PAYMENT_REQUEST_PATH, json=body)
        return _created_id(answer, "POST")

    def update(self, body: dict[str, Any]) -> str:
        """``PUT`` with ``RequestID`` in ``body``; returns the request's ``ID``."""
        answer = self.client.request("PUT", PAYMENT_REQUEST_PATH, json=body)
        return _created_id(answer, "PUT")

    def get(self, request_id: str) -> dict[str, Any]:
        """``GET /paymentrequest/{id}``: the full request (``ApprovalStatus``, ``LineItems``...)."""
        return dict(
            self.client.request("GET", f"{PAYMENT_REQUEST_PATH}/{segment(request_id)}") or {}
        )

    def digests(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Digests matching ``filters`` (e.g. ``vendorInvoiceNumber=``), following ``NextPage``."""
        return iter_next_url(
            lambda: self.client.request("GET", DIGESTS_PATH, params=filters),
            lambda url: self.client.request("GET", url),
            items_key=lambda body: body.get("Items") or body.get("PaymentRequestDigest"),
        )

    def by_invoice_number(self, invoice_number: str) -> list[dict[str, Any]]:
        """Every digest whose vendor invoice number is ``invoice_number``."""
        return list(self.digests(vendorInvoiceNumber=invoice_number))


def _created_id(answer: Any, method: str) -> str:
    ident = answer.get("ID") if isinstance(answer, dict) else None
    if not ident:
        # A 2xx without an id: the write may have happened; the caller's retry searches first.
        raise RetryableError(
            f"concur {method} {PAYMENT_REQUEST_PATH}: the answer carries no ID",
            system="concur",
            ambiguous=True,
        )
    return str(ident)
