"""``ConcurClient``: SAP Concur APIs of one company, at the credential's stored geolocation."""

from __future__ import annotations

from connector.api.vendor import VendorClient
from connector.concur import resources
from connector.concur.errors import CORRELATION_HEADER, translate
from connector.concur.expense import ExpenseReports
from connector.concur.payment_requests import PaymentRequests

SYSTEM = "concur"


class ConcurClient(VendorClient):
    """Concur for one company (or, with an app token, for the application).

    ``Concur-Correlationid`` carries our correlation id (a webhook's own id when a task binds it,
    sap-concur.md §5.3) and Concur echoes it back as the request id. The base URL is the stored
    geolocation; a refresh that moves the company is picked up by the next client built.
    Constructed as ``ConcurClient(geolocation, company_id, auth=..., ...)``
    (``connector.api.vendor.VendorClient``).
    """

    SYSTEM = SYSTEM
    vendor_translate = staticmethod(translate)
    CORRELATION_HEADER = CORRELATION_HEADER
    REQUEST_ID_HEADER = CORRELATION_HEADER

    def _attach(self, tenant_id: str | None) -> None:
        self.company_id = tenant_id
        self.vendors = resources.Vendors(self)
        self.subscriptions = resources.Subscriptions(self)
        self.payment_requests = PaymentRequests(self)
        self.expense_reports = ExpenseReports(self)
