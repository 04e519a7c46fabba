"""``ZohoBooksClient``: the Books v3 API of one organization, at the credential's ``api_domain``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.api.vendor import VendorClient
from connector.errors import ConfigurationError
from connector.zoho import resources
from connector.zoho.errors import translate

SYSTEM = "zoho"
API_PATH = "/books/v3"


class ZohoBooksClient(VendorClient):
    """Zoho Books for one organization.

    Every call carries ``organization_id`` (Zoho requires it everywhere but ``/organizations``)
    and ``Authorization: Zoho-oauthtoken …`` from the auth provider. Resources hang off the
    client: ``client.accounts.iter_all()``, ``client.contacts.get(id)``.

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
