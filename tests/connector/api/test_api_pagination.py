"""Page iterators: lazy, stop where the vendor says, and refuse to loop forever."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses

from connector.api.base import ApiClient
from connector.api.pagination import iter_next_url, iter_offset, iter_pages_by_number
from connector.errors import RetryableError

Body = dict[str, Any]


def zoho_page(items: list[int], *, more: bool) -> Body:
    return {"code": 0, "bills": items, "page_context": {"page": 1, "has_more_page": more}}


class Pages:
    """Fetch double recording which pages/offsets/urls were asked for."""

    def __init__(self, bodies: dict[Any, Body]) -> None:
        self.bodies = bodies
        self.asked: list[Any] = []

    def __call__(self, key: Any) -> Body:
        self.asked.append(key)
        return self.bodies[key]


# --------------------------------------------------------------------------- page numbers


def test_pages_by_number_until_has_more_is_false() -> None:
    fetch = Pages(
        {
            1: zoho_page([1, 2], more=True),
            2: zoho_page([3, 4], more=True),
            3: zoho_page([5], more=False),
        }
    )
    assert list(iter_pages_by_number(fetch, items_key="bills")) == [1, 2, 3, 4, 5]
    assert fetch.asked == [1, 2, 3]


def test_pages_by_number_is_lazy() -> None:
    fetch = Pages({1: zoho_page([1, 2], more=True), 2: zoho_page([3], more=False)})
    items = iter_pages_by_number(fetch, items_key="bills")

    assert next(items) == 1
    assert next(items) == 2
    assert fetch.asked == [1]


def test_pages_by_number_without_page_context_is_one_page() -> None:
    fetch = Pages({1: {"code": 0, "currencies": ["EUR", "USD"]}})
    assert list(iter_pages_by_number(fetch, items_key="currencies")) == ["EUR", "USD"]
    assert fetch.asked == [1]


def test_pages_by_number_accepts_custom_items_and_has_more() -> None:
    fetch = Pages(
        {
            0: {"data": {"rows": [1]}, "next": True},
            1: {"data": {"rows": [2]}, "next": False},
        }
    )
    items = iter_pages_by_number(
        fetch,
        items_key=lambda body: body["data"]["rows"],
        has_more=lambda body: body["next"],
        first_page=0,
    )
    assert list(items) == [1, 2]


def test_pages_by_number_repeating_page_raises() -> None:
    fetch = Pages({1: zoho_page([1, 2], more=True), 2: zoho_page([1, 2], more=True)})
    with pytest.raises(RetryableError, match="pagination loop: page 2 repeats page 1"):
        list(iter_pages_by_number(fetch, items_key="bills"))


def test_pages_by_number_empty_page_claiming_more_raises() -> None:
    fetch = Pages({1: zoho_page([1], more=True), 2: zoho_page([], more=True)})
    with pytest.raises(RetryableError, match="empty but says more"):
        list(iter_pages_by_number(fetch, items_key="bills"))


def test_pages_by_number_page_cap_raises() -> None:
    def endless(page: int) -> Body:
        return zoho_page([page], more=True)

    with pytest.raises(RetryableError, match="more than 3 pages"):
        list(iter_pages_by_number(endless, items_key="bills", max_pages=3))


def test_pages_by_number_missing_items_key_is_a_bug_not_an_empty_list() -> None:
    fetch = Pages({1: {"code": 0, "invoices": [1]}})
    with pytest.raises(KeyError):
        list(iter_pages_by_number(fetch, items_key="bills"))


# --------------------------------------------------------------------------- offsets


def test_offset_stops_on_a_short_page() -> None:
    fetch = Pages({0: {"Vendor": [1, 2]}, 2: {"Vendor": [3, 4]}, 4: {"Vendor": [5]}})
    assert list(iter_offset(fetch, items_key="Vendor", page_size=2)) == [1, 2, 3, 4, 5]
    assert fetch.asked == [0, 2, 4]


def test_offset_exact_multiple_ends_on_an_empty_page() -> None:
    fetch = Pages({0: {"Items": [1, 2]}, 2: {"Items": None}})
    assert list(iter_offset(fetch, items_key="Items", page_size=2)) == [1, 2]
    assert fetch.asked == [0, 2]


def test_offset_server_ignoring_offset_raises() -> None:
    fetch = Pages({0: {"Items": [1, 2]}, 2: {"Items": [1, 2]}})
    with pytest.raises(RetryableError, match="offset 2 returned the same page"):
        list(iter_offset(fetch, items_key="Items", page_size=2))


def test_offset_page_cap_raises() -> None:
    def endless(offset: int) -> Body:
        return {"Items": [offset, offset + 1]}

    with pytest.raises(RetryableError, match="more than 2 pages"):
        list(iter_offset(endless, items_key="Items", page_size=2, max_pages=2))


def test_offset_rejects_non_positive_page_size() -> None:
    with pytest.raises(ValueError, match="page_size"):
        list(iter_offset(lambda _o: {"Items": []}, items_key="Items", page_size=0))


# --------------------------------------------------------------------------- next links


def test_next_url_follows_until_null() -> None:
    first = {"Items": [1], "NextPage": "https://h/p2"}
    fetch_url = Pages({"https://h/p2": {"Items": [2], "NextPage": "https://h/p3"},
                       "https://h/p3": {"Items": [3], "NextPage": None}})  # fmt: skip
    assert list(iter_next_url(lambda: first, fetch_url)) == [1, 2, 3]
    assert fetch_url.asked == ["https://h/p2", "https://h/p3"]


@pytest.mark.parametrize(
    "last", [{"Items": [2]}, {"Items": [2], "NextPage": ""}], ids=["missing", "empty"]
)
def test_next_url_missing_or_empty_link_ends(last: Body) -> None:
    fetch_url = Pages({"u2": last})
    assert list(iter_next_url(lambda: {"Items": [1], "NextPage": "u2"}, fetch_url)) == [1, 2]


def test_next_url_repeating_link_raises_and_redacts() -> None:
    link = "https://h/p2?access_token=leakyleakyleaky"
    fetch_url = Pages({link: {"Items": [2], "NextPage": link}})
    with pytest.raises(RetryableError, match="already followed") as caught:
        list(iter_next_url(lambda: {"Items": [1], "NextPage": link}, fetch_url))
    assert "leakyleakyleaky" not in str(caught.value)
    assert caught.value.ambiguous is False


def test_next_url_page_cap_raises() -> None:
    counter = iter(range(1_000))

    def fetch_url(_url: str) -> Body:
        return {"Items": [0], "NextPage": f"u{next(counter)}"}

    with pytest.raises(RetryableError, match="more than 3 pages"):
        list(iter_next_url(lambda: fetch_url(""), fetch_url, max_pages=3))


# --------------------------------------------------------------------------- with the client


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def test_concur_next_page_through_the_client(http: responses.RequestsMock) -> None:
    base = "https://us2.api.concursolutions.com"
    reports = f"{base}/api/v3.0/expense/reports"
    http.get(reports, json={"Items": [{"ID": "a"}], "NextPage": f"{reports}?offset=x1"})
    http.get(f"{reports}?offset=x1", json={"Items": [{"ID": "b"}], "NextPage": None})
    client = ApiClient(base, "concur")

    items = iter_next_url(
        lambda: client.request("GET", "/api/v3.0/expense/reports", params={"limit": 1}),
        lambda url: client.request("GET", url),
    )
    assert [r["ID"] for r in items] == ["a", "b"]
