"""``ZohoBooksClient``: the Books v3 API of one organization, at the credential's ``api_domain``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.api.vendor import VendorClient
from connector.errors import ConfigurationError
from connector.zoho import resources
from connector.zoho.documents import Documents
from connector.zoho.errors import translate
from connector.zoho.journals import ExchangeRates, Journals

SYSTEM = "zoho"
API_PATH = "/books/v3"


class ZohoBooksClient(VendorClient):
    """Zoho Books for one organization.

    Every call carries ``organization_id`` (Zoho requires it everywhere but ``/organizations``)
    and ``Authorization: Zoho-oauthtoken …`` from the auth provider. Resources hang off the
    client (one way to reach a vendor resource, issue #16): ``client.accounts.iter_all()``,
    ``client.contacts.get(id)``, ``client.bills.get(id)``, ``client.journals.create(body)``.

    Constructed as ``ZohoBooksClient(api_domain, organization_id, auth=..., ...)``
    (``connector.api.vendor.VendorClient``): ``api_domain`` is the token response's (already
    allow-listed); ``organization_id`` is ``None`` only while authorizing, when the client may
    call ``organizations`` alone.
    """

    SYSTEM = SYSTEM
    API_PATH = API_PATH
    vendor_translate = staticmethod(translate)

    def _attach(self, tenant_id: str | None) -> None:
        self.organization_id = tenant_id
        self.organizations = resources.Organizations(self)
        self.accounts = resources.ChartOfAccounts(self)
        self.reporting_tags = resources.ReportingTags(self)
        self.currencies = resources.Currencies(self)
        self.contacts = resources.Contacts(self)
        self.bills = Documents(self, "bill")
        self.invoices = Documents(self, "invoice")
        self.journals = Journals(self)
        self.exchange_rates = ExchangeRates(self)

    def documents(self, kind: str) -> Documents:
        """``client.documents("bill")`` is ``client.bills``: the payables flow reads by kind."""
        return {"bill": self.bills, "invoice": self.invoices}[kind]

    def request(  # type: ignore[override]
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        with_organization: bool = True,
        **kwargs: Any,
    ) -> Any:
        """``ApiClient.request`` plus ``organization_id``.

        Args:
            with_organization: False only for ``GET /organizations`` (the one call that
                needs no organization).
        """
        query = dict(params or {})
        if with_organization:
            if not self.organization_id:
                raise ConfigurationError(
                    "no Zoho organization chosen for this connection; finish the authorization"
                )
            query["organization_id"] = self.organization_id
        return super().request(method, path, params=query, **kwargs)
