"""The allow-list for hosts that token responses and OAuth redirects name (brief §6).

Zoho's ``accounts-server`` and ``api_domain`` and Concur's ``geolocation`` arrive from the network
(the ``accounts-server`` even from the browser's query string), and we send client secrets,
refresh tokens and access tokens to them. So each is checked here before anything is sent or
stored: Zoho and Concur domains over HTTPS, plus ``CONNECTOR_TRUSTED_HOSTS`` and, in sandbox mode
only, the sandbox's own host. Anything else raises ``UntrustedHostError``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from connector.config import Settings
from connector.errors import UntrustedHostError

#: Zoho's accounts and API domains for the eight data centres Books serves (zoho-books.md §1.1).
#: UK (``zoho.uk``) and UAE are unconfirmed for Books; add them with CONNECTOR_TRUSTED_HOSTS.
ZOHO_DOMAINS: tuple[str, ...] = (
    "zoho.com",
    "zoho.eu",
    "zoho.in",
    "zoho.com.au",
    "zoho.jp",
    "zohocloud.ca",
    "zoho.com.cn",
    "zoho.sa",
    "zohoapis.com",
    "zohoapis.eu",
    "zohoapis.in",
    "zohoapis.com.au",
    "zohoapis.jp",
    "zohoapis.ca",
    "zohoapis.com.cn",
    "zohoapis.sa",
)

#: Concur's API hosts (``us2.api.concursolutions.com``, ``www-us.api…``, the ``*-impl`` PSE hosts,
#: the deprecated ``www.``/``eu1.`` hosts) and the former China data centre (sap-concur.md §1.5).
CONCUR_DOMAINS: tuple[str, ...] = ("concursolutions.com", "concurcdc.cn")

VENDOR_DOMAINS: dict[str, tuple[str, ...]] = {"zoho": ZOHO_DOMAINS, "concur": CONCUR_DOMAINS}

_LOOPBACK_NAMES = frozenset({"localhost"})


def _on_domain(host: str, domains: tuple[str, ...]) -> bool:
    """True when ``host`` is one of ``domains`` or a subdomain of one (dot boundary)."""
    return any(host == d or host.endswith("." + d) for d in domains)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _netloc(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


def check_api_host(url: str, settings: Settings, system: str | None = None) -> str:
    """Return ``url`` normalised (no trailing slash) if its host may receive our credentials.

    Args:
        url: an accounts server, ``api_domain`` or ``geolocation`` as the vendor sent it.
        settings: supplies ``trusted_hosts`` and ``sandbox_url``.
        system: ``"zoho"`` or ``"concur"`` restricts the vendor domains to that vendor's; a
            Zoho token naming a Concur host is as wrong as one naming any other host.

    Raises:
        UntrustedHostError: the scheme, host or port is not allowed; the message says why.
    """
    what = f"{system} host" if system else "host"
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UntrustedHostError(
            f"refusing {what} {text[:100]!r}: not a valid URL ({exc})"
        ) from None
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in ("https", "http") or not host:
        raise UntrustedHostError(f"refusing {what} {text[:100]!r}: not an http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UntrustedHostError(
            f"refusing {what} {host}: the URL carries credentials, a query or a fragment"
        )
    netloc = _netloc(host, port)
    normalised = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"

    if settings.sandbox_url:
        sandbox = urlsplit(settings.sandbox_url)
        sandbox_host = (sandbox.hostname or "").lower()
        if (host, port, parts.scheme) == (sandbox_host, sandbox.port, sandbox.scheme):
            return normalised

    for trusted in settings.trusted_hosts:
        t_host, t_port = _split_entry(trusted)
        if host != t_host or (t_port is not None and port != t_port):
            continue
        if parts.scheme == "https" or _is_loopback(host):
            return normalised
        raise UntrustedHostError(
            f"refusing {what} {netloc}: plain http is allowed only for loopback hosts"
        )

    domains = VENDOR_DOMAINS.get(system or "", ZOHO_DOMAINS + CONCUR_DOMAINS)
    if _on_domain(host, domains):
        if parts.scheme != "https" or port not in (None, 443):
            raise UntrustedHostError(f"refusing {what} {netloc}: vendor hosts must use https")
        return normalised

    allowed = "Zoho" if system == "zoho" else "Concur" if system == "concur" else "Zoho or Concur"
    hint = " (sandbox mode is off)" if not settings.sandbox_url and _is_loopback(host) else ""
    raise UntrustedHostError(
        f"refusing {what} {netloc}: not a {allowed} domain and not in CONNECTOR_TRUSTED_HOSTS{hint}"
    )


def _split_entry(entry: str) -> tuple[str, int | None]:
    """Split a CONNECTOR_TRUSTED_HOSTS entry (``host``, ``host:port``, ``[::1]:8080``)."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    head, sep, tail = entry.rpartition(":")
    if sep and tail.isdigit() and ":" not in head:
        return head, int(tail)
    return entry, None
