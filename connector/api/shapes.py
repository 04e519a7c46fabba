"""Tolerant readers for answers whose shape the vendor's documentation leaves open.

Where Zoho or SAP document (or have been seen to send) several shapes for the same list, the
reader accepts each of them and nothing else: the first key path present wins, a single object
counts as a one-element list, ``null`` as none. Anything else is an ``UnexpectedResponseError``
naming the URL and the key names seen, so the record fails with a sentence a person can act on
instead of an ``AttributeError`` deep in a flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connector.errors import UnexpectedResponseError

#: A key path into a JSON object: ``("results",)`` or ``("reporting_tag", "options")``.
KeyPath = tuple[str, ...]

_MISSING = object()


def _lookup(body: Mapping[str, Any], path: KeyPath) -> Any:
    node: Any = body
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _seen(body: Mapping[str, Any], paths: Sequence[KeyPath]) -> list[str]:
    """Key names at the top, and one level down where an expected path starts: names only."""
    names = {str(k) for k in body}
    for path in paths:
        if len(path) > 1 and isinstance(body.get(path[0]), Mapping):
            names.update(f"{path[0]}.{k}" for k in body[path[0]])
    return sorted(names)


def first_list(
    body: Any,
    paths: Sequence[KeyPath],
    *,
    url: str,
    system: str = "",
    what: str = "response",
) -> list[dict[str, Any]]:
    """The records at the first of ``paths`` present in ``body``, as a list of objects.

    Order matters when one path is a prefix of another: put the longer one first
    (``("Items", "Vendor")`` before ``("Items",)``), or a nested wrapper would be read as one
    record.

    Raises:
        UnexpectedResponseError: ``body`` is not an object, no path is present, or the value
            there is neither a list of objects, one object, nor ``null``.
    """
    expected = [".".join(p) for p in paths]
    if not isinstance(body, Mapping):
        raise UnexpectedResponseError(
            url, keys_seen=None, expected=expected, system=system, what=what
        )
    for path in paths:
        value = _lookup(body, path)
        if value is _MISSING:
            continue
        if value is None:
            return []
        items = [value] if isinstance(value, Mapping) else value
        if isinstance(items, list) and all(isinstance(i, Mapping) for i in items):
            return [dict(i) for i in items]
        break  # present but unreadable (a string, a list of numbers): say so
    raise UnexpectedResponseError(
        url, keys_seen=_seen(body, paths), expected=expected, system=system, what=what
    )
