"""Strict parsing of webhook bodies: parse once, at the door, and refuse what cannot be stored.

Why a module of its own: a signed body is authenticated, not trustworthy. A valid signature over
``{"bill": {"bill_id": NaN}}`` or a 100,000-deep array used to reach the inbox, fail later in
intake (or in PostgreSQL, which refuses NUL in text) and loop in the sweeper. Everything that the
rest of the connector cannot hold is refused here with a :class:`MalformedWebhook` (400 and a
message) before anything is stored:

- not UTF-8, or a lone surrogate (``"\\ud800"``) that no UTF-8 text can carry;
- NUL anywhere (raw or ``\\u0000``): PostgreSQL text columns refuse it;
- ``NaN`` / ``Infinity`` / a float that overflows to infinity: not JSON (RFC 8259), and no
  amount is infinite;
- an integer of more than :data:`MAX_INT_DIGITS` digits (Python's own limit is 4,300 digits and
  raises ``ValueError`` deep in the parser, which was a 500);
- nesting deeper than :data:`MAX_DEPTH`: the C parser raises ``RecursionError`` at about 1,000
  levels, which is caught; the depth check after parsing is iterative, so it cannot overflow;
- ids longer than their column or with characters outside :data:`ID_CHARS` (see :func:`ident`).

The receivers and intake use the same functions, so what was accepted at the door is exactly
what intake reads back from the stored raw body.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

from connector.errors import MalformedWebhook

#: Deeper than any vendor payload we know (Zoho bills and Concur events are < 10 levels).
MAX_DEPTH = 64
#: Vendor ids are at most 19-20 digits; amounts are decimals. 40 digits leaves room for both.
MAX_INT_DIGITS = 40
#: Characters allowed in an id that becomes part of a dedupe key, a URL path or a column:
#: letters, digits and ``. _ - : +`` (Zoho's ``last_modified_time`` is ``2024-05-01T10:00:00+0530``).
ID_CHARS = re.compile(r"[A-Za-z0-9._:+\-]+")
_SURROGATE_OR_NUL = re.compile("[\x00\ud800-\udfff]")


def _constant(name: str) -> Any:
    raise MalformedWebhook(f"body holds {name}, which is not JSON (RFC 8259 has no {name})")


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise MalformedWebhook(
            f"body holds an integer of {len(digits.lstrip('-'))} digits "
            f"(at most {MAX_INT_DIGITS} are accepted)"
        )
    return int(digits)


def _float(text: str) -> float:
    if len(text) > MAX_INT_DIGITS * 2:
        raise MalformedWebhook(f"body holds a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise MalformedWebhook(f"body holds a number too large for a float ({text[:20]}...)")
    return value


def _check_text(value: str, where: str) -> None:
    bad = _SURROGATE_OR_NUL.search(value)
    if bad is None:
        return
    if bad.group() == "\x00":
        raise MalformedWebhook(f"{where} holds a NUL character, which cannot be stored")
    raise MalformedWebhook(
        f"{where} holds a lone surrogate (\\u{ord(bad.group()):04x}), which is not Unicode text"
    )


def _check_tree(value: Any) -> None:
    """Depth and text checks without recursion (an explicit stack), so no input overflows it."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedWebhook(f"body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, child in node.items():
                _check_text(key, "a key")
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            _check_text(node, "a string value")


def raw_text(raw: bytes) -> str:
    """The body as stored: exactly the bytes received, which must be UTF-8 without NUL (a
    replacement character or an escape would make the stored body differ from the signed one)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedWebhook(f"body is not UTF-8 text (byte {exc.start})") from None
    _check_text(text, "the body")
    return text


def loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses everything listed in the module docstring, with a message."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedWebhook(f"body is not UTF-8 text (byte {exc.start})") from None
    _check_text(text, "the body")
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_integer, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise MalformedWebhook(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise MalformedWebhook(f"body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # int() beyond sys.get_int_max_str_digits, and the like
        raise MalformedWebhook(f"body holds a value that cannot be read: {exc}") from None
    _check_tree(value)
    return value


def zoho_json_text(body: str | bytes, content_type: str | None) -> str | bytes:
    """The JSON text of a Zoho delivery: the body, or the ``JSONString`` field of a form body.

    Used on the stored raw body by intake, so it must agree with what the receiver accepted.
    """
    if (content_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return body
    raw = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if raw.lstrip().startswith("{"):
        # Rows stored before migration 0005 hold the re-serialized JSON, not the form body.
        return raw
    for name, value in parse_qsl(raw, keep_blank_values=True):
        if name == "JSONString":  # the first one, as werkzeug's ``request.form.get`` reads it
            return value
    raise MalformedWebhook("form-encoded webhook without a JSONString field")


def ident(value: Any, what: str, *, max_length: int = 64) -> str:
    """An id from a payload, as text: a string or an integer, at most ``max_length`` characters
    of :data:`ID_CHARS`. Anything else is refused, naming the field."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MalformedWebhook(f"{what} must be a string or an integer, not {type(value).__name__}")
    text = str(value)
    if not text:
        raise MalformedWebhook(f"{what} is empty")
    if len(text) > max_length:
        raise MalformedWebhook(f"{what} is {len(text)} characters long (at most {max_length})")
    if not ID_CHARS.fullmatch(text):
        raise MalformedWebhook(f"{what} holds characters other than letters, digits and . _ - : +")
    return text
