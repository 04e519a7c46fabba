"""Lazy iterators over paged list endpoints, vendor-agnostic and safe against endless paging.

Each iterator takes the fetch function(s) from the resource layer, so it knows nothing about
URLs or auth, and yields items one by one so a 50,000-record backfill never sits in memory.
A server that keeps handing back the same page or link raises ``RetryableError`` instead of
looping forever; the poll task retries later, by when the vendor has usually recovered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from connector.api.redaction import redact
from connector.errors import RetryableError

Body = dict[str, Any]
ItemsKey = str | Callable[[Body], list[Any] | None]

#: Far above any real listing (Zoho: 200 per page, Concur: up to 1000); only a broken server
#: gets here.
DEFAULT_MAX_PAGES = 10_000


def has_more_page(body: Body) -> bool:
    """Zoho's flag; a list without ``page_context`` is a single page."""
    return bool((body.get("page_context") or {}).get("has_more_page", False))


def _items(body: Body, items_key: ItemsKey) -> list[Any]:
    items = items_key(body) if callable(items_key) else body[items_key]
    return list(items or [])


def _loop_error(what: str) -> RetryableError:
    return RetryableError(f"pagination loop: {what}", ambiguous=False)


def iter_pages_by_number(
    fetch_page: Callable[[int], Body],
    *,
    items_key: ItemsKey,
    has_more: Callable[[Body], bool] = has_more_page,
    first_page: int = 1,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> Iterator[Any]:
    """Yield items from ``fetch_page(1)``, ``fetch_page(2)``, … while ``has_more`` says so.

    Raises:
        RetryableError: a page repeats the previous page, an empty page claims more pages
            follow, or ``max_pages`` is exceeded.
    """
    previous: list[Any] | None = None
    for page in range(first_page, first_page + max_pages):
        body = fetch_page(page)
        items = _items(body, items_key)
        more = has_more(body)
        if items and items == previous:
            raise _loop_error(f"page {page} repeats page {page - 1}")
        if more and not items:
            raise _loop_error(f"page {page} is empty but says more pages follow")
        yield from items
        if not more:
            return
        previous = items
    raise _loop_error(f"more than {max_pages} pages")


def iter_offset(
    fetch: Callable[[int], Body],
    *,
    items_key: ItemsKey,
    page_size: int,
    start: int = 0,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> Iterator[Any]:
    """Yield items from ``fetch(offset)`` pages until a page holds fewer than ``page_size``.

    ``page_size`` must not exceed the server's own cap (Concur vendors: 1000), or a capped
    full page looks short and the listing ends early.

    Raises:
        RetryableError: a page repeats the previous one (the server ignores ``offset``) or
            ``max_pages`` is exceeded.
    """
    if page_size <= 0:
        raise ValueError("page_size must be positive")
    offset = start
    previous: list[Any] | None = None
    for _ in range(max_pages):
        items = _items(fetch(offset), items_key)
        if items and items == previous:
            raise _loop_error(f"offset {offset} returned the same page as the one before")
        yield from items
        if len(items) < page_size:
            return
        offset += len(items)
        previous = items
    raise _loop_error(f"more than {max_pages} pages")


def iter_next_url(
    fetch_first: Callable[[], Body],
    fetch_url: Callable[[str], Body],
    *,
    items_key: ItemsKey = "Items",
    next_key: str = "NextPage",
    max_pages: int = DEFAULT_MAX_PAGES,
) -> Iterator[Any]:
    """Yield items from the first page, then follow ``body[next_key]`` until it is empty.

    Raises:
        RetryableError: a next link repeats one already followed, or ``max_pages`` is
            exceeded.
    """
    body = fetch_first()
    seen: set[str] = set()
    for _ in range(max_pages):
        yield from _items(body, items_key)
        next_url = body.get(next_key)
        if not next_url:
            return
        if next_url in seen:
            raise _loop_error(f"{next_key} link already followed: {redact(next_url)}")
        seen.add(next_url)
        body = fetch_url(next_url)
    raise _loop_error(f"more than {max_pages} pages")
