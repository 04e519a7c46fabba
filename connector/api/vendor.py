"""``VendorClient``: what ``ZohoBooksClient`` and ``ConcurClient`` share, written once.

Both are an ``ApiClient`` for one tenant (a Zoho organization, a Concur company) at a host the
credential names, with the vendor's one error translator and its resources hung off the client.
Only those differences live in the subclasses, as class attributes and ``_attach``; the
constructor, and the recording of a dead credential (``ApiClient._record_dead``), are here and in
``connector.api.base``, so the two clients cannot drift apart (issue #16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import requests

from connector.api.base import ApiClient, AuthProvider, CallRecord, Throttle
from connector.errors import ApiError


class VendorClient(ApiClient):
    """One vendor tenant's client.

    Subclasses set ``SYSTEM``, ``vendor_translate`` (a ``staticmethod``) and, if the vendor needs them,
    ``API_PATH`` (appended to the host) and the correlation and request-id headers; ``_attach``
    stores the tenant id under the vendor's name for it and builds the resources.

    Args:
        host: the credential's API host (Zoho's ``api_domain``, Concur's geolocation).
        tenant_id: the organization or company; ``None`` while authorizing.
    """

    SYSTEM: ClassVar[str]
    API_PATH: ClassVar[str] = ""
    CORRELATION_HEADER: ClassVar[str] = "X-Correlation-Id"
    REQUEST_ID_HEADER: ClassVar[str | None] = None

    def __init__(
        self,
        host: str,
        tenant_id: str | None,
        *,
        auth: AuthProvider | None = None,
        throttle: Throttle | None = None,
        on_response: Callable[[CallRecord], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(
            host.rstrip("/") + self.API_PATH,
            self.SYSTEM,
            translator=self.vendor_translate,
            auth=auth,
            throttle=throttle,
            on_response=on_response,
            session=session,
            correlation_header=self.CORRELATION_HEADER,
            request_id_header=self.REQUEST_ID_HEADER,
        )
        self._attach(tenant_id)

    @staticmethod
    def vendor_translate(response: requests.Response) -> ApiError | None:
        """The vendor's one translator (``connector.<vendor>.errors.translate``)."""
        raise NotImplementedError

    def _attach(self, tenant_id: str | None) -> None:
        """Keep the tenant id and build the vendor's resources (``client.contacts``, ...)."""
        raise NotImplementedError
