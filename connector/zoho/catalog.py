"""Zoho objects named in rules files: chart of accounts and reporting tags, cached per org.

Rules may name an account by id, code or exact name, a reporting tag by id or exact name, and a
tag option by id or exact name. Lookups use a per-process cache of the organization's lists; a
miss reloads them once (someone may have just created the account) before giving up.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from connector.errors import ValidationFailed
from connector.zoho.client import ZohoBooksClient

#: Cached lists older than this are reloaded on the next lookup even without a miss.
MAX_AGE_SECONDS = 900.0

_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


def _pick(
    items: list[dict[str, Any]], ref: str, keys: tuple[str, ...], what: str
) -> dict[str, Any] | None:
    """The one item whose first matching key (in ``keys`` order) equals ``ref``.

    Raises:
        ValidationFailed: several items share that code or name (the rules must use the id).
    """
    for key in keys:
        found = [i for i in items if str(i.get(key) or "") == ref]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(str(i.get(keys[0])) for i in found)
            message = f"{ref!r} names {len(found)} {what}s ({ids}); use the id"
            raise ValidationFailed(message, [message])
    return None


class ZohoCatalog:
    """Resolves rules references against one organization's live lists."""

    def __init__(self, client: ZohoBooksClient, *, max_age: float = MAX_AGE_SECONDS) -> None:
        self.client = client
        self.max_age = max_age
        self._reloaded = False
        self._key = f"{client.base_url}|{client.organization_id}"

    def _data(self, *, reload: bool = False) -> dict[str, Any]:
        with _lock:
            cached = _cache.get(self._key)
        if cached is not None and not reload and time.monotonic() - cached[0] < self.max_age:
            return cached[1]
        tags = []
        for tag in self.client.reporting_tags.iter_all():
            options = [o for o in self.client.reporting_tags.options(str(tag["tag_id"]))
                       if str(o.get("option_id")) != "untagged"]  # fmt: skip
            tags.append({**tag, "options": options})
        data = {"accounts": list(self.client.accounts.iter_all()), "tags": tags}
        with _lock:
            _cache[self._key] = (time.monotonic(), data)
        return data

    def _lookup(self, finder: Any) -> dict[str, Any] | None:
        found = finder(self._data())
        if found is None and not self._reloaded:
            # A miss may be an account created since we cached: reload once per catalog.
            self._reloaded = True
            found = finder(self._data(reload=True))
        return found  # type: ignore[no-any-return]

    def account(self, ref: str) -> dict[str, Any] | None:
        """The account whose id, code or exact name is ``ref``."""
        keys = ("account_id", "account_code", "account_name")
        return self._lookup(lambda d: _pick(d["accounts"], ref, keys, "account"))

    def tag(self, ref: str) -> dict[str, Any] | None:
        """The reporting tag whose id or exact name is ``ref``."""
        return self._lookup(lambda d: _pick(d["tags"], ref, ("tag_id", "tag_name"), "tag"))

    def tag_option(self, tag_id: str, ref: str) -> dict[str, Any] | None:
        """The option of tag ``tag_id`` whose id or exact name is ``ref``."""

        def find(data: dict[str, Any]) -> dict[str, Any] | None:
            tag = next((t for t in data["tags"] if str(t["tag_id"]) == tag_id), None)
            if tag is None:
                return None
            return _pick(tag["options"], ref, ("option_id", "option_name"), "tag option")

        return self._lookup(find)

    def lists(self, *, reload: bool = False) -> dict[str, Any]:
        """The cached lists themselves (``accounts``; ``tags``, each with its ``options``).

        ``reload=True`` fetches them again and refreshes the shared cache: the expenses flow
        does that when a journal names an account or tag option the cache does not know yet.
        """
        return self._data(reload=reload)


def clear_cache() -> None:
    """Forget every cached list (tests)."""
    with _lock:
        _cache.clear()
