"""The connector's one error tree, grouped by what the caller does about each error.

Callers never look at vendor codes: each vendor client translates its codes into these classes
in one place (``connector/zoho/errors.py`` and ``connector/concur/errors.py`` style translators),
and tasks decide retry / park / fail / re-auth from the class alone.

- ``RetryableError``      → retry later with back-off (5xx, timeouts, connection resets, 429s).
- ``ParkError``           → the record goes ``waiting`` with a human reason (missing vendor,
                            account, mapping, currency) and is retried on a long back-off.
- ``FatalError``          → the record goes ``failed`` with the vendor's message (definitive 4xx,
                            or a 2xx in a shape we cannot read: ``UnexpectedResponseError``).
- ``ReauthRequired``      → the connection and its records go ``needs_reauth``.
- ``ConfigurationError``  → the process refuses to start; lists every problem at once.
"""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose; never raised directly."""

    #: Airbyte's blame axis: "config" (a person must fix something), "transient", "system".
    failure_type: str = "system"

    def __init__(self, message: str = "", **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __str__(self) -> str:
        return self.message or self.__class__.__name__


# --------------------------------------------------------------------------- configuration


class ConfigurationError(ConnectorError):
    """Raised at start-up when settings are missing or invalid; ``problems`` lists them all."""

    failure_type = "config"

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"configuration is invalid ({len(self.problems)} problem(s)):\n{lines}")


# --------------------------------------------------------------------------- API errors


class ApiError(ConnectorError):
    """Raised for any failed call to Zoho or Concur; carries redacted HTTP context.

    Attributes:
        system: ``"zoho"``, ``"concur"`` or ``"sandbox"``: which vendor answered.
        status: HTTP status, or ``None`` when no response arrived.
        code: the vendor's own error code (Zoho ``code``, Concur ``errorCode``/``code``).
        request_id: the vendor's correlation/request id when it sent one.
        method, path: the request, without query secrets.
        url: the URL called (scheme, host, path; no query string, secrets redacted), so an
            operator reading ``connector ping`` or a log line sees *which* host refused: the
            data centre is part of the host.
    """

    def __init__(
        self,
        message: str = "",
        *,
        system: str = "",
        status: int | None = None,
        code: str | int | None = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
        body_excerpt: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.system = system
        self.status = status
        self.code = code
        self.request_id = request_id
        self.method = method
        self.path = path
        self.body_excerpt = body_excerpt

    def call(self) -> str:
        """``METHOD URL -> status`` of the call that failed (what is known of it), or ``""``."""
        where = self.url or self.path
        if not where:
            return ""
        status = f" -> {self.status}" if self.status is not None else ""
        return f"{self.method or ''} {where}{status}".strip()


class RetryableError(ApiError):
    """Raised for transient failures (5xx, 408, timeouts, resets): retry with back-off."""

    failure_type = "transient"

    #: True when the request may have reached the vendor (a timeout after send, a 5xx): the
    #: retry must search by the stable reference before posting again (brief §4).
    ambiguous: bool = False

    def __init__(self, message: str = "", *, ambiguous: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.ambiguous = ambiguous


class RateLimitedError(RetryableError):
    """Raised on a 429 or an empty shared bucket; ``retry_after`` is the wait in seconds.

    ``local`` is True when our own shared limiter refused the call before anything was sent
    (``connector.limits.ratelimit.acquire_or_raise``). That is pacing, not a failure: the pipeline does
    not count it against the record's transient attempts, so a long backlog drained at the
    tenant's rate never goes ``dead`` for having waited its turn.
    """

    def __init__(
        self, message: str = "", *, retry_after: float = 1.0, local: bool = False, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after = max(0.0, float(retry_after))
        self.local = local


class QuotaExhaustedError(RateLimitedError):
    """Raised when a daily quota is spent: park in the database until ``retry_after`` passes.

    Long waits must not become broker countdowns: Redis redelivers them after the visibility
    timeout (celery-reliability §2), so the ledger's ``next_attempt_at`` holds them instead.
    """


class QuotaReserveError(QuotaExhaustedError):
    """Raised before a bulk call (backfill, reconciliation) when only the daily reserve is left.

    Nothing was sent (``local``). ``resumes_at`` is when the vendor's daily quota renews, so the
    message can say when the work goes on; live webhooks and polls keep using the reserve.
    """

    def __init__(self, message: str = "", *, resumes_at: float | None = None, **kw: Any) -> None:
        kw.setdefault("local", True)
        super().__init__(message, **kw)
        self.resumes_at = resumes_at


class FatalError(ApiError):
    """Raised for a definitive 4xx: the record goes ``failed`` with the vendor's message."""


class UnexpectedResponseError(FatalError):
    """Raised when a vendor answers 2xx in a shape none of the documented variants match.

    Retrying would get the same answer, so the record fails with a message a person can act on:
    the URL (never its query string) and the key names seen (never their values, which may be
    personal data). Built by ``connector.api.shapes``; ``keys_seen`` and ``expected`` carry the
    same facts for code.
    """

    def __init__(
        self,
        url: str,
        *,
        keys_seen: list[str] | None,
        expected: list[str],
        system: str = "",
        what: str = "response",
    ) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        bare = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path
        seen = "not a JSON object" if keys_seen is None else f"keys {keys_seen or '(none)'}"
        super().__init__(
            f"unexpected {what} shape from {bare}: expected one of {expected}, got {seen}",
            system=system,
            method="GET",
            path=bare,
        )
        self.url = bare
        self.keys_seen = keys_seen
        self.expected = expected
        self._what = what

    def __reduce__(self) -> Any:
        # Exceptions pickle as cls(*args); ours needs its keywords back (Celery results).
        return (
            _rebuild_unexpected,
            (self.url, self.keys_seen, self.expected, self.system, self._what),
        )


def _rebuild_unexpected(
    url: str, keys_seen: list[str] | None, expected: list[str], system: str, what: str
) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        url, keys_seen=keys_seen, expected=expected, system=system, what=what
    )


class InvalidRequestError(FatalError):
    """Raised when the vendor rejects the payload (400/422) with its own code and message."""


class NotFoundError(FatalError):
    """Raised on 404 or a vendor 'does not exist' code."""


class PermissionDeniedError(FatalError):
    """Raised on 403 or a missing scope that a refresh cannot fix."""

    failure_type = "config"


class ReauthRequired(ApiError):
    """Raised when a credential is dead (refresh refused, 401 after one forced refresh).

    The connection turns ``needs_reauth``; its records are parked, not dead, and resume when the
    connection is re-authorized.
    """

    failure_type = "config"

    #: True once the credential's state has been settled for this refusal: the token manager
    #: found it ``needs_reauth`` or marked it so after a refused refresh, or the client recorded
    #: a 401 that survived a fresh token. Nobody records it again, and a step that gets one
    #: while the side is being re-authorized retries instead of parking (connector.pipeline).
    recorded: bool = False


class TokenExpiredError(ApiError):
    """Raised on a 401 that one forced refresh may cure (Zoho code 57, Concur 401/403)."""

    failure_type = "transient"


class UntrustedHostError(ConnectorError):
    """Raised when a token response names an API host outside the allow-list."""

    failure_type = "config"


# --------------------------------------------------------------------------- records


class ParkError(ConnectorError):
    """Raised when a dependency is missing: the record waits with ``reason`` and retries later."""

    failure_type = "config"

    def __init__(self, reason: str, *, dependency: str = "", key: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.dependency = dependency
        self.key = key


class MappingError(ParkError):
    """Raised when a mapping rule is missing; lists every missing key in ``reason``."""


class ValidationFailed(ConnectorError):
    """Raised when a mapped payload breaks a schema or business rule; ``errors`` has them all."""

    failure_type = "config"

    def __init__(self, message: str, errors: dict[str, Any] | list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class IllegalTransition(ConnectorError):
    """Raised when code asks the ledger for a state change the state machine forbids."""


class LeaseLost(ConnectorError):
    """Raised when a record's lease is held by another worker or expired under this one."""

    failure_type = "transient"


# --------------------------------------------------------------------------- webhooks


class WebhookError(ConnectorError):
    """Raised by receivers; ``status`` is the HTTP status the sender gets."""

    status: int = 400


class WebhookSignatureError(WebhookError):
    """Raised when a webhook signature or shared token is missing or wrong."""

    status = 401


class MalformedWebhook(WebhookError):
    """Raised when a webhook body cannot be parsed; the message names what is wrong."""

    status = 400


class UnknownConnection(WebhookError):
    """Raised when a webhook names a connection or company we do not know."""

    status = 404


class OAuthStateError(WebhookError):
    """Raised when an OAuth ``state`` is forged, expired, already used or for another step."""

    status = 400
