"""One HTTP client for both vendors: timeouts, auth, correlation ids and error translation.

The client makes exactly one attempt per call (plus one after a forced token refresh). It never
sleeps and never loops: retries belong to the Celery task, which reads the error class and
``retry_after`` and re-queues with a countdown, so a worker is never parked in ``time.sleep``.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions

from connector.api.correlation import current_correlation_id
from connector.api.redaction import excerpt, redact
from connector.errors import (
    ApiError,
    FatalError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ReauthRequired,
    RetryableError,
    TokenExpiredError,
    UntrustedHostError,
)

logger = logging.getLogger(__name__)

#: Methods that cannot create or change anything, so a lost answer is never ambiguous.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
USER_AGENT = "zoho-concur-connector/0.1"

Translator = Callable[[requests.Response], ApiError | None]


class AuthProvider(Protocol):
    """What the client needs from a vendor auth module (``connector/<vendor>/auth.py``)."""

    def headers(self) -> dict[str, str]:
        """Return the auth headers for the next request, refreshing first if near expiry."""
        ...

    def on_unauthorized(self) -> bool:
        """Force one refresh after a 401; return True if retrying the request makes sense."""
        ...


class Throttle(Protocol):
    """Shared rate-limit bucket consulted before every request (``connector/limits/ratelimit.py``)."""

    def before_request(
        self, method: str, path: str
    ) -> Callable[[requests.Response | None], None] | None:
        """Take a token for this call or raise ``RateLimitedError(retry_after=...)``.

        May return a callable the client calls once the attempt is over, with the response or
        ``None`` (a concurrency slot to free, quota headers to read)."""
        ...


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One HTTP attempt, as the audit trail and metrics see it (no headers, no bodies)."""

    system: str
    method: str
    path: str
    status: int | None
    duration_ms: float
    correlation_id: str
    request_id: str | None
    error: str | None = None
    attempt: int = 1


# --------------------------------------------------------------------------- helpers


def segment(value: object) -> str:
    """``value`` (an id from a payload or a vendor) escaped as exactly one URL path segment.

    ``quote(..., safe="$")`` turns ``/``, ``?``, ``#``, ``%``, ``\\`` and whitespace into escapes,
    so ``a/b?c`` cannot add a segment or a query. ``$`` stays literal: Concur's v3 ids contain it
    (``gWM81vDo$oAsx…``) and, as a sub-delimiter, it cannot change the path's structure. ``.``
    and ``..`` survive quoting and would be collapsed by the HTTP stack (``/contacts/..`` is
    ``/``), so they and the empty id are refused.

    Raises:
        InvalidRequestError: the id is empty, ``.`` or ``..``.
    """
    text = str(value)
    if text in ("", ".", ".."):
        raise InvalidRequestError(f"refusing {text!r} as an id in a URL path")
    return quote(text, safe="$")


def json_body(response: requests.Response) -> Any:
    """Return the parsed JSON body, or ``None`` when it is empty or not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def request_method(response: requests.Response) -> str:
    """Return the method of the request that produced ``response`` (``GET`` if unknown)."""
    request = getattr(response, "request", None)
    return (getattr(request, "method", None) or "GET").upper()


def parse_retry_after(value: str | None, default: float) -> float:
    """Read a ``Retry-After`` header (seconds or an HTTP date) as seconds from now."""
    if value is None or not value.strip():
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def server_error(response: requests.Response, message: str = "", **kw: Any) -> RetryableError:
    """Build the error for a 5xx: ambiguous unless the method cannot have side effects.

    The server got the request, so a write may have been applied before it failed; the post
    step must then look the record up by its stable reference before posting again.
    """
    return RetryableError(
        message or f"server error {response.status_code}",
        ambiguous=request_method(response) not in SAFE_METHODS,
        status=response.status_code,
        **kw,
    )


def default_translate(response: requests.Response) -> ApiError | None:
    """Translate by HTTP status alone; vendor translators fall back to this.

    Returns ``None`` for any status below 400.
    """
    status = response.status_code
    if status < 400:
        return None
    reason = f"HTTP {status} {response.reason or ''}".strip()
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), default=1.0)
        return RateLimitedError(reason, retry_after=retry_after, status=status)
    if status == 401:
        return TokenExpiredError(reason, status=status)
    if status == 403:
        return PermissionDeniedError(reason, status=status)
    if status in (404, 410):
        return NotFoundError(reason, status=status)
    if status == 408:
        # The server says it gave up waiting for our request, so nothing was applied.
        return RetryableError(reason, ambiguous=False, status=status)
    if status >= 500:
        return server_error(response, reason)
    return InvalidRequestError(reason, status=status)


def public_url(url: str) -> str:
    """``url`` as it may be shown: scheme, host and path only, secrets redacted.

    The query string is dropped (Zoho's ``organization_id`` is harmless, but a next-page link or
    a misconfigured base could carry a token), and so is any user-info in the authority.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return redact(f"{parts.scheme}://{netloc}{parts.path}")


def _redirect_error(response: requests.Response) -> ApiError | None:
    """A 3xx answer is an error: we do not follow it, and say where it pointed (host only)."""
    if not 300 <= response.status_code < 400:
        return None
    target = response.headers.get("Location") or ""
    try:
        parts = urlsplit(target)
        where = f"{parts.scheme}://{parts.hostname}{parts.path}" if parts.hostname else parts.path
    except ValueError:
        where = "an unparseable Location"
    return FatalError(
        f"answered {response.status_code} redirecting to {where[:200] or 'nowhere'}; redirects "
        "are not followed (they could carry credentials elsewhere): check the configured URL",
        status=response.status_code,
    )


def _never_sent(exc: BaseException) -> bool:
    """Return True when a connection error proves the request never left this process."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(
            current,
            urllib3.exceptions.NewConnectionError
            | urllib3.exceptions.ConnectTimeoutError
            | ConnectionRefusedError
            | socket.gaierror,
        ):
            return True
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        stack.extend((current.__cause__, current.__context__))
    return False


# --------------------------------------------------------------------------- client


class ApiClient:
    """Shared plumbing under ``ZohoBooksClient`` and ``ConcurClient``.

    Args:
        base_url: API root; relative paths are appended to it. Concur clients update it when a
            refresh returns a new geolocation.
        system: ``"zoho"`` or ``"concur"``; stamped on every error and call record.
        translator: the vendor's one translation function (``connector.<vendor>.errors``).
        auth: supplies auth headers and the forced refresh after a 401.
        throttle: shared rate-limit bucket, asked before every attempt.
        on_response: observer called with a :class:`CallRecord` after every attempt.
        correlation_header: header carrying our correlation id (Concur: ``Concur-Correlationid``).
        request_id_header: response header holding the vendor's request id, if it sends one.
    """

    def __init__(
        self,
        base_url: str,
        system: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        translator: Translator = default_translate,
        auth: AuthProvider | None = None,
        throttle: Throttle | None = None,
        on_response: Callable[[CallRecord], None] | None = None,
        correlation_header: str = "X-Correlation-Id",
        request_id_header: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.system = system
        self.session = session or requests.Session()
        self.timeout = timeout
        self.auth = auth
        self.throttle = throttle
        self.on_response = on_response
        self.correlation_header = correlation_header
        self.request_id_header = request_id_header
        self._translator = translator

    def close(self) -> None:
        """Close the underlying session's pooled connections."""
        self.session.close()

    def translate(self, response: requests.Response) -> ApiError | None:
        """Return the error ``response`` stands for, or ``None`` if it is a success."""
        return self._translator(response)

    # ------------------------------------------------------------------ public entry point

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        expect_json: bool = True,
    ) -> Any:
        """Make one call and return its parsed JSON (``None`` for an empty body).

        With ``expect_json=False`` the ``requests.Response`` is returned instead (PDFs,
        receipts). A 401 (``TokenExpiredError``) gets exactly one forced refresh and one retry;
        if that retry is refused too the credential is dead and ``ReauthRequired`` is raised.

        Raises:
            ApiError: a subclass from ``connector.errors`` chosen by the vendor translator.
            UntrustedHostError: ``path`` is an absolute URL on another host than ``base_url``.
        """
        method = method.upper()
        url, safe_path = self._url(path)
        extra = dict(headers or {})
        # One id for the whole logical call, so the retry after a refresh shares it.
        correlation_id = extra.pop(self.correlation_header, None) or current_correlation_id()
        send: dict[str, Any] = {"params": params, "json": json, "data": data, "files": files}

        try:
            response, error = self._attempt(method, url, safe_path, correlation_id, extra, send, 1)
            if isinstance(error, TokenExpiredError):
                if self.auth is not None and self.auth.on_unauthorized():
                    response, error = self._attempt(
                        method, url, safe_path, correlation_id, extra, send, 2
                    )
                    if isinstance(error, TokenExpiredError):
                        error = self._refused_after_refresh(error)
                else:
                    error = _convert(
                        error, ReauthRequired, "credential rejected and cannot refresh"
                    )
            if error is not None:
                raise error
        except ReauthRequired as exc:
            self._record_dead(exc)
            raise
        if not expect_json:
            return response
        return self._parse(response, method, safe_path, correlation_id)

    # ------------------------------------------------------------------ internals

    def _record_dead(self, exc: ReauthRequired) -> None:
        """Tell the credential (``RefreshingAuth.credential_dead``) that the vendor refused it.

        The one place for both vendors. A refusal the token manager already recorded (the
        credential was needs_reauth, or its refresh was refused) is not news; recording it again
        could condemn a credential re-authorized in the meantime.
        """
        dead = getattr(self.auth, "credential_dead", None)
        if callable(dead) and not exc.recorded:
            dead(str(exc))
            exc.recorded = True

    def _url(self, path: str) -> tuple[str, str]:
        """Return the full URL and the path we may log (relative to the base, no query)."""
        base = urlsplit(self.base_url)
        if path.startswith(("https://", "http://")):
            parts = urlsplit(path)
            # Next-page links come from the vendor's body; never send our token elsewhere.
            if (parts.scheme, parts.netloc.lower()) != (base.scheme, base.netloc.lower()):
                raise UntrustedHostError(
                    f"refusing to send {self.system} credentials to "
                    f"{parts.scheme}://{parts.netloc} (base is {base.netloc})"
                )
            url = path
        else:
            url = f"{self.base_url}/{path.lstrip('/')}"
        full_path = urlsplit(url).path
        prefix = base.path.rstrip("/")
        if prefix and full_path.startswith(prefix + "/"):
            full_path = full_path[len(prefix) :]
        return url, full_path or "/"

    def _headers(self, correlation_id: str, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.auth is not None:
            headers.update(self.auth.headers())
        headers[self.correlation_header] = correlation_id
        headers.update(extra)
        return headers

    def _attempt(
        self,
        method: str,
        url: str,
        safe_path: str,
        correlation_id: str,
        extra: Mapping[str, str],
        send: Mapping[str, Any],
        attempt: int,
    ) -> tuple[requests.Response, ApiError | None]:
        """Send once, translate, notify the observer; network failures raise here."""
        finish: Callable[[requests.Response | None], None] | None = None
        if self.throttle is not None:
            try:
                finish = self.throttle.before_request(method, safe_path)
            except ApiError as exc:
                self._stamp(exc, method, safe_path, None, correlation_id, url=url)
                raise
        try:
            headers = self._headers(correlation_id, extra)
        except BaseException:
            if callable(finish):
                finish(None)
            raise
        started = time.monotonic()
        response: requests.Response | None = None
        try:
            # Never follow a redirect: a 307/308 would resend the body (a client secret, a
            # refresh token) and requests would resend our auth header to the new Location.
            response = self.session.request(
                method, url, headers=headers, timeout=self.timeout, allow_redirects=False, **send
            )
        except requests.exceptions.RequestException as exc:
            failure = self._network_error(exc, method)
            self._stamp(failure, method, safe_path, None, correlation_id, url=url)
            self._record(method, safe_path, None, started, correlation_id, None, failure, attempt)
            # ``from None``: the original exception's text holds the full URL, query included.
            raise failure from None
        finally:
            # Frees the concurrency slot (and reads the quota headers) however the attempt ended.
            if callable(finish):
                finish(response)

        error = _redirect_error(response) or self.translate(response)
        request_id = self._request_id(response)
        if error is not None:
            self._stamp(error, method, safe_path, response, correlation_id, request_id, url=url)
        self._record(
            method, safe_path, response.status_code, started, correlation_id,
            error.request_id if error is not None else request_id, error, attempt,
        )  # fmt: skip
        return response, error

    def _network_error(self, exc: requests.exceptions.RequestException, method: str) -> ApiError:
        """Classify a failure with no HTTP answer by whether the request may have gone out."""
        connect, read = self.timeout
        detail = redact(f"{type(exc).__name__}: {exc}")
        writes = method not in SAFE_METHODS
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return RetryableError(f"connect timed out after {connect}s ({detail})", ambiguous=False)
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return RetryableError(
                f"no answer within {read}s; the request may have been applied ({detail})",
                ambiguous=writes,
            )
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.SSLError):
            if _never_sent(exc):
                return RetryableError(f"could not connect ({detail})", ambiguous=False)
            return RetryableError(
                f"connection lost after sending; the request may have been applied ({detail})",
                ambiguous=writes,
            )
        if isinstance(
            exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
        ):
            return RetryableError(f"answer cut off ({detail})", ambiguous=writes)
        # Invalid URL or header: our bug, not the vendor's; keep it out of the retry path.
        return ApiError(f"request could not be sent ({detail})")

    def _request_id(self, response: requests.Response) -> str | None:
        if self.request_id_header is None:
            return None
        return response.headers.get(self.request_id_header) or None

    def _stamp(
        self,
        error: ApiError,
        method: str,
        safe_path: str,
        response: requests.Response | None,
        correlation_id: str,
        request_id: str | None = None,
        *,
        url: str | None = None,
    ) -> None:
        """Fill in what the translator cannot know and rewrite the message for humans."""
        error.url = error.url or public_url(url or self._url(safe_path)[0])
        error.system = error.system or self.system
        error.method = error.method or method
        error.path = error.path or safe_path
        error.request_id = error.request_id or request_id
        error.context.setdefault("correlation_id", correlation_id)
        if response is not None:
            if error.status is None:
                error.status = response.status_code
            if error.body_excerpt is None:
                error.body_excerpt = excerpt(response.content)
        vendor_message = redact(error.message)[:500]
        error.context.setdefault("vendor_message", vendor_message)
        status = f" -> {error.status}" if error.status is not None else ""
        error.message = f"{error.system} {method} {error.path}{status}: {vendor_message}"
        error.args = (error.message,)

    def _record(
        self,
        method: str,
        safe_path: str,
        status: int | None,
        started: float,
        correlation_id: str,
        request_id: str | None,
        error: ApiError | None,
        attempt: int,
    ) -> None:
        record = CallRecord(
            system=self.system,
            method=method,
            path=safe_path,
            status=status,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            correlation_id=correlation_id,
            request_id=request_id,
            error=type(error).__name__ if error is not None else None,
            attempt=attempt,
        )
        logger.debug(
            "%s %s %s -> %s in %.0f ms (correlation %s, request %s)%s",
            record.system,
            record.method,
            record.path,
            record.status if record.status is not None else "no answer",
            record.duration_ms,
            record.correlation_id,
            record.request_id or "-",
            f": {record.error}: {error}" if error is not None else "",
        )
        if self.on_response is None:
            return
        try:
            self.on_response(record)
        except Exception:
            # The call itself succeeded or failed already; a broken observer must not turn a
            # posted record into a failed one (which would re-post it).
            logger.warning(
                "on_response observer failed for %s %s", method, safe_path, exc_info=True
            )

    def _refused_after_refresh(self, error: TokenExpiredError) -> ApiError:
        """Turn a second refusal into the error the caller acts on.

        A 403 that survives a fresh token is a missing scope or entitlement (Concur sends 403
        for expired tokens too, hence the refresh); a 401 means the credential itself is dead.
        """
        if error.status == 403:
            return _convert(error, PermissionDeniedError, "still forbidden after a token refresh")
        return _convert(error, ReauthRequired, "still unauthorized after a forced token refresh")

    def _parse(
        self, response: requests.Response, method: str, safe_path: str, correlation_id: str
    ) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            # A 2xx that is not JSON (a proxy's HTML page): a write may still have landed.
            error = RetryableError("expected a JSON body", ambiguous=method not in SAFE_METHODS)
            self._stamp(
                error, method, safe_path, response, correlation_id, self._request_id(response)
            )
            raise error from None


def _convert(error: ApiError, cls: type[ApiError], why: str) -> ApiError:
    """Copy ``error``'s HTTP context onto a new error of class ``cls``."""
    vendor = error.context.get("vendor_message") or error.message
    converted = cls(
        f"{why}: {error.message}",
        system=error.system,
        status=error.status,
        code=error.code,
        request_id=error.request_id,
        method=error.method,
        path=error.path,
        body_excerpt=error.body_excerpt,
        url=error.url,
    )
    converted.context.update(error.context)
    converted.context["vendor_message"] = vendor
    return converted
