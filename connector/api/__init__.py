"""Shared HTTP plumbing for the vendor clients; no vendor names live in this package."""

from __future__ import annotations

from connector.api.base import (
    DEFAULT_TIMEOUT,
    SAFE_METHODS,
    ApiClient,
    AuthProvider,
    CallRecord,
    Throttle,
    Translator,
    default_translate,
    parse_retry_after,
)
from connector.api.correlation import correlation_id, current_correlation_id, use_correlation_id
from connector.api.pagination import iter_next_url, iter_offset, iter_pages_by_number
from connector.api.redaction import (
    RedactingFilter,
    redact,
    redact_headers,
    register_secret,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "SAFE_METHODS",
    "ApiClient",
    "AuthProvider",
    "CallRecord",
    "RedactingFilter",
    "Throttle",
    "Translator",
    "correlation_id",
    "current_correlation_id",
    "default_translate",
    "iter_next_url",
    "iter_offset",
    "iter_pages_by_number",
    "parse_retry_after",
    "redact",
    "redact_headers",
    "register_secret",
    "use_correlation_id",
]
