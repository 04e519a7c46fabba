"""Scrub credentials out of every string that may reach a log line, an error or the audit trail.

Two nets, because neither catches everything alone:

- *Shapes*: ``Authorization`` headers, ``Bearer``/``Zoho-oauthtoken`` values, ``key=value`` form
  and query pairs, JSON/dict ``"key": "value"`` pairs for the secret key names, JWTs and Zoho's
  ``1000.<hex>.<hex>`` tokens. These catch secrets we never saw (a vendor echoing a token back).
- *Values*: every token the process holds is registered with :func:`register_secret`, so it is
  scrubbed wherever it turns up, whatever shape surrounds it (an exception message, a URL).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

#: Key names whose values are secrets. ``code`` (the OAuth grant code) is handled separately
#: because Zoho's ``"code": 57`` envelope field shares the name; only string values are secret.
_SECRET_KEYS = (
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "assertion",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "token",
    "authorization",
    "proxy-authorization",
    "x-api-key",
)
_KEYS = "|".join(re.escape(k) for k in _SECRET_KEYS)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JSON / Python-repr pairs: "refresh_token": "...", 'Authorization': 'Bearer ...', and the
    # string-valued OAuth "code". The closing quote is optional so a truncated body still hides
    # the start of the value.
    (
        re.compile(
            rf"""(?ix)(?P<q>["'])(?P<key>{_KEYS}|code)(?P=q)(?P<sep>\s*:\s*)
                (?P<vq>["'])[^"'\r\n]*(?P=vq)?"""
        ),
        rf"\g<q>\g<key>\g<q>\g<sep>\g<vq>{REDACTED}\g<vq>",
    ),
    # Header lines: "Authorization: Bearer abc" (the value runs to the end of the line).
    (
        re.compile(
            r"(?im)\b(?P<key>(?:proxy-)?authorization)(?P<sep>[ \t]*:[ \t]*)(?!['\"])\S[^\r\n]*"
        ),
        rf"\g<key>\g<sep>{REDACTED}",
    ),
    # Form bodies and query strings: refresh_token=...&client_secret=...&code=...
    (
        re.compile(rf"(?i)(?<![\w-])(?P<key>{_KEYS}|code)=(?P<val>[^&\s\"'<>]+)"),
        rf"\g<key>={REDACTED}",
    ),
    # Loose "password: hunter2" text (not "code: 57": that is usually Zoho's error code).
    (
        re.compile(
            rf"(?i)(?<![\w\"'-])(?P<key>{_KEYS})(?P<sep>[ \t]*:[ \t]*)(?!['\"\[])(?P<val>[^\s,;&'\"}}\]]+)"
        ),
        rf"\g<key>\g<sep>{REDACTED}",
    ),
    # Scheme-prefixed credentials anywhere: "Bearer eyJ...", "Zoho-oauthtoken 1000.ab.cd".
    (
        re.compile(
            r"(?i)\b(?P<scheme>Bearer|Zoho-oauthtoken|Basic)\s+(?!\[REDACTED\])[\w\-.~+/=:]{8,}"
        ),
        rf"\g<scheme> {REDACTED}",
    ),
    # Bare JWTs (Concur access and id tokens).
    (re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*"), REDACTED),
    # Bare Zoho access/refresh tokens: 1000.<32 hex>.<32 hex>.
    (re.compile(r"\b1000\.[0-9a-fA-F]{16,}\.[0-9a-fA-F]{16,}\b"), REDACTED),
)

_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)

#: Shorter values are not registered: scrubbing "abc" everywhere would shred ordinary text.
_MIN_SECRET_LENGTH = 8
#: Tokens rotate hourly for every connection; keep the newest ones so the set cannot grow
#: without bound in a long-lived worker. Old tokens are dead by then anyway.
_MAX_SECRETS = 4096

_secrets: OrderedDict[str, None] = OrderedDict()
_secrets_lock = threading.Lock()
_secrets_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember a secret we hold so :func:`redact` scrubs it wherever it appears.

    Auth modules call this for every access token, refresh token and client secret they load
    or receive. Values shorter than 8 characters are ignored.
    """
    global _secrets_pattern
    if not value or len(value) < _MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets[value] = None
        _secrets.move_to_end(value)
        while len(_secrets) > _MAX_SECRETS:
            _secrets.popitem(last=False)
        _secrets_pattern = None


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _secrets_pattern
    with _secrets_lock:
        _secrets.clear()
        _secrets_pattern = None


def _registered_pattern() -> re.Pattern[str] | None:
    global _secrets_pattern
    with _secrets_lock:
        if _secrets_pattern is None and _secrets:
            # Longest first, so a secret that contains another is replaced whole.
            alternatives = sorted(_secrets, key=len, reverse=True)
            _secrets_pattern = re.compile("|".join(re.escape(s) for s in alternatives))
        return _secrets_pattern


def redact(value: Any) -> str:
    """Return ``value`` as text with every credential we recognise replaced by ``[REDACTED]``."""
    text = value if isinstance(value, str) else str(value)
    if not text:
        return text
    registered = _registered_pattern()
    if registered is not None:
        text = registered.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of ``headers`` safe to log: credential headers blanked, others scrubbed."""
    safe: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _SENSITIVE_HEADERS or "token" in lowered or "secret" in lowered:
            safe[name] = REDACTED
        else:
            safe[name] = redact(value)
    return safe


def excerpt(text: str | bytes | None, limit: int = 500) -> str:
    """Return a redacted excerpt of a response body, at most ``limit`` characters.

    Redaction runs before truncation so a cut can never leave half a token unrecognised.
    """
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    scrubbed = redact(text[: limit * 32])
    return scrubbed if len(scrubbed) <= limit else scrubbed[:limit] + "…"


class RedactingFilter(logging.Filter):
    """Logging filter that scrubs the rendered message, exception text and stack of a record.

    Attach it to *handlers*: a filter on a logger only sees records logged on that very logger,
    not those propagated from ``connector.*`` children. :func:`install` does this for you.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the secret it carries
            message = f"{record.msg} {record.args}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach one :class:`RedactingFilter` to every handler of ``logger`` (default: root).

    Handlers added later need ``handler.addFilter(filter)`` with the returned filter.
    """
    target = logger or logging.getLogger()
    redacting = RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)
    return redacting
