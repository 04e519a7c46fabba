"""``ConcurClient``: SAP Concur APIs of one company, at the credential's stored geolocation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from connector.api.base import ApiClient, AuthProvider, CallRecord, Throttle
from connector.concur import resources
from connector.concur.errors import CORRELATION_HEADER, translate
from connector.errors import ReauthRequired

SYSTEM = "concur"


class ConcurClient(ApiClient):
    """Concur for one company (or, with an app token, for the application).

    ``Concur-Correlationid`` carries our correlation id (a webhook's own id when a task binds it,
    sap-concur.md §5.3) and Concur echoes it back as the request id. The base URL is the stored
    geolocation; a refresh that moves the company is picked up by the next client built.
    """

    def __init__(
        self,
        geolocation: str,
        company_id: str | None,
        *,
        auth: AuthProvider | None = None,
        throttle: Throttle | None = None,
        on_response: Callable[[CallRecord], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(
            geolocation,
            SYSTEM,
            translator=translate,
            auth=auth,
            throttle=throttle,
            on_response=on_response,
            session=session,
            correlation_header=CORRELATION_HEADER,
            request_id_header=CORRELATION_HEADER,
        )
        self.company_id = company_id
        self.vendors = resources.Vendors(self)
        self.subscriptions = resources.Subscriptions(self)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return super().request(method, path, **kwargs)
        except ReauthRequired as exc:
            # A refusal the token manager already recorded (the credential was needs_reauth,
            # or its refresh was refused) is not news; recording it again here could condemn
            # a credential re-authorized in the meantime.
            dead = getattr(self.auth, "credential_dead", None)
            if callable(dead) and not exc.recorded:
                dead(str(exc))
                exc.recorded = True
            raise
