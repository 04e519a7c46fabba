"""Zoho Books bills and invoices (``/bills``, ``/invoices``): what the payables flow reads.

Plain dicts out, as every resource here; ``mappings.zoho_documents`` types them. Kept in its own
module (the payables flow owns it) and reached with :func:`documents` rather than as a client
attribute, so the shared client class needs no change.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connector.api.base import segment
from connector.zoho.resources import PER_PAGE, Resource

if TYPE_CHECKING:
    from connector.zoho.client import ZohoBooksClient

#: Document kind -> (collection path, envelope key of one document, list key, id field).
KINDS: dict[str, tuple[str, str, str, str]] = {
    "bill": ("/bills", "bill", "bills", "bill_id"),
    "invoice": ("/invoices", "invoice", "invoices", "invoice_id"),
}


class Documents(Resource):
    """Bills or invoices of the client's organization.

    Args:
        kind: ``"bill"`` or ``"invoice"``.
    """

    def __init__(self, client: ZohoBooksClient, kind: str) -> None:
        super().__init__(client)
        if kind not in KINDS:
            raise ValueError(f"unknown Zoho document kind {kind!r}")
        self.kind = kind
        self.path, self.key, self.list_key, self.id_field = KINDS[kind]

    def get(self, document_id: str) -> dict[str, Any]:
        """``GET /bills/{id}`` (or invoices): the full document, ``{}`` if the envelope is empty."""
        body = self.client.request("GET", f"{self.path}/{segment(document_id)}")
        return dict((body or {}).get(self.key) or {})

    def list(self, page: int = 1, **filters: Any) -> dict[str, Any]:
        """One page of the list (Zoho filters as keyword arguments), with ``page_context``."""
        params = {**filters, "page": page, "per_page": PER_PAGE}
        return self.client.request("GET", self.path, params=params)  # type: ignore[no-any-return]

    def iter_all(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every list item matching ``filters``, page by page (``page_context.has_more_page``)."""
        return self._iter(self.path, self.list_key, filters)
