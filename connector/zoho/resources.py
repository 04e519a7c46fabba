"""Zoho Books resources, one small class each, reached as ``client.<resource>``.

They return Zoho's JSON as plain dicts; typing the data is ``mappings/``'s job. The flows add
bills, invoices and journals here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connector.api.base import segment
from connector.api.pagination import iter_pages_by_number
from connector.api.shapes import KeyPath, first_list

if TYPE_CHECKING:
    from connector.zoho.client import ZohoBooksClient

#: Zoho's page-size cap for list endpoints.
PER_PAGE = 200


class Resource:
    def __init__(self, client: ZohoBooksClient) -> None:
        self.client = client

    def _iter(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        def page(number: int) -> dict[str, Any]:
            query = {**(params or {}), "page": number, "per_page": PER_PAGE}
            return self.client.request("GET", path, params=query)  # type: ignore[no-any-return]

        return iter_pages_by_number(page, items_key=key)


class Organizations(Resource):
    """``/organizations``: the organizations the token's user can see."""

    def list(self) -> list[dict[str, Any]]:
        body = self.client.request("GET", "/organizations", with_organization=False)
        return list(body.get("organizations") or [])

    def get(self, organization_id: str | None = None) -> dict[str, Any]:
        org_id = organization_id or self.client.organization_id
        body = self.client.request(
            "GET", f"/organizations/{segment(org_id)}", with_organization=False
        )
        return dict(body.get("organization") or {})


class ChartOfAccounts(Resource):
    """``/chartofaccounts``: every account, for mapping rules and journal lines."""

    def list(self, page: int = 1, **filters: Any) -> dict[str, Any]:
        params = {**filters, "page": page, "per_page": PER_PAGE}
        return self.client.request("GET", "/chartofaccounts", params=params)  # type: ignore[no-any-return]

    def iter_all(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self._iter("/chartofaccounts", "chartofaccounts", filters)


class ReportingTags(Resource):
    """``/reportingtags``: cost centres and the like, with their options."""

    def iter_all(self) -> Iterator[dict[str, Any]]:
        return self._iter("/reportingtags", "tags")

    def options(self, tag_id: str) -> list[dict[str, Any]]:
        path = f"/reportingtags/{segment(tag_id)}/options/all"
        body = self.client.request("GET", path)
        return read_tag_options(body, url=f"{self.client.base_url}{path}")


#: Where ``GET /reportingtags/{tag_id}/options/all`` may keep the options. The Books page was
#: not retrieved (shared/reference/zoho-books.md §4.8): the sandbox and Zoho's sister products
#: answer ``results``; ``options`` and ``reporting_tag.options`` are the other shapes seen.
TAG_OPTION_PATHS: tuple[KeyPath, ...] = (("results",), ("options",), ("reporting_tag", "options"))


def read_tag_options(body: Any, *, url: str) -> list[dict[str, Any]]:
    """A reporting tag's options from any documented answer shape.

    Raises:
        UnexpectedResponseError: none of ``TAG_OPTION_PATHS`` is present (names URL and keys).
    """
    return first_list(body, TAG_OPTION_PATHS, url=url, system="zoho", what="reporting tag options")


class Currencies(Resource):
    """``/settings/currencies``."""

    def iter_all(self) -> Iterator[dict[str, Any]]:
        return self._iter("/settings/currencies", "currencies")


class Contacts(Resource):
    """``/contacts``: vendors are contacts with ``contact_type=vendor``."""

    def iter_all(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self._iter("/contacts", "contacts", filters)

    def get(self, contact_id: str) -> dict[str, Any]:
        body = self.client.request("GET", f"/contacts/{segment(contact_id)}")
        return dict(body.get("contact") or {})
