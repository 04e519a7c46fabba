"""Zoho Books contact writes and lookups the vendor sync needs (``client.contacts`` reads).

``POST /contacts`` and ``PUT /contacts/{id}`` take JSON bodies and answer ``{"contact": {...}}``.
``find_by_name`` is the search-before-create lookup after a create whose answer was lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connector.api.base import segment
from connector.zoho.resources import PER_PAGE

if TYPE_CHECKING:
    from connector.zoho.client import ZohoBooksClient


def create(client: ZohoBooksClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.request("POST", "/contacts", json=body) or {}
    return dict(answer.get("contact") or {})


def update(client: ZohoBooksClient, contact_id: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.request("PUT", f"/contacts/{segment(contact_id)}", json=body) or {}
    return dict(answer.get("contact") or {})


def get(client: ZohoBooksClient, contact_id: str) -> dict[str, Any]:
    return client.contacts.get(contact_id)


def iter_vendors(
    client: ZohoBooksClient, *, modified_since: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every vendor contact (list shape), oldest change first; only those changed at or after
    ``modified_since`` (Zoho's ``last_modified_time`` filter) when given."""
    filters: dict[str, Any] = {
        "contact_type": "vendor",
        "sort_column": "last_modified_time",
        "sort_order": "A",
    }
    if modified_since:
        filters["last_modified_time"] = modified_since
    return client.contacts.iter_all(**filters)


def find_by_name(client: ZohoBooksClient, name: str) -> list[dict[str, Any]]:
    """Vendor contacts whose ``contact_name`` is exactly ``name`` (one page is plenty)."""
    body = client.request(
        "GET",
        "/contacts",
        params={"contact_type": "vendor", "contact_name": name, "per_page": PER_PAGE},
    )
    return [dict(c) for c in (body or {}).get("contacts") or []]


def currency_ids(client: ZohoBooksClient) -> dict[str, str]:
    """Currency code -> ``currency_id`` for the organization."""
    return {
        str(c.get("currency_code") or "").upper(): str(c.get("currency_id"))
        for c in client.currencies.iter_all()
        if c.get("currency_code")
    }
