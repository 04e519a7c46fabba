"""``ZohoBooksClient``: the Books v3 API of one organization, at the credential's ``api_domain``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import requests

from connector.api.base import ApiClient, AuthProvider, CallRecord, Throttle
from connector.errors import ConfigurationError, ReauthRequired
from connector.zoho import resources
from connector.zoho.errors import translate

SYSTEM = "zoho"
API_PATH = "/books/v3"


class ZohoBooksClient(ApiClient):
    """Zoho Books for one organization.

    Every call carries ``organization_id`` (Zoho requires it everywhere but ``/organizations``)
    and ``Authorization: Zoho-oauthtoken …`` from the auth provider. Resources hang off the
    client: ``client.accounts.iter_all()``, ``client.contacts.get(id)``.

    Args:
        api_domain: the token response's ``api_domain`` (already allow-listed).
        organization_id: the organization chosen for the connection; ``None`` only while
            authorizing, when the client may call ``organizations`` alone.
    """

    def __init__(
        self,
        api_domain: str,
        organization_id: str | None,
        *,
        auth: AuthProvider | None = None,
        throttle: Throttle | None = None,
        on_response: Callable[[CallRecord], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(
            api_domain.rstrip("/") + API_PATH,
            SYSTEM,
            translator=translate,
            auth=auth,
            throttle=throttle,
            on_response=on_response,
            session=session,
        )
        self.organization_id = organization_id
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
        """``ApiClient.request`` plus ``organization_id``; a dead credential is recorded.

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
        try:
            return super().request(method, path, params=query, **kwargs)
        except ReauthRequired as exc:
            # A refusal the token manager already recorded (the credential was needs_reauth,
            # or its refresh was refused) is not news; recording it again here could condemn
            # a credential re-authorized in the meantime.
            dead = getattr(self.auth, "credential_dead", None)
            if callable(dead) and not exc.recorded:
                dead(str(exc))
                exc.recorded = True
            raise
