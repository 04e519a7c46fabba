"""Typed settings, read from the environment and nowhere else.

``Settings.from_env()`` is the only reader of ``os.environ`` in the connector (``celeryconfig``
asks it too). It collects every problem before failing, so a bad deployment gets one message that
lists all of them instead of a fix-one-restart-repeat loop.

Two modes:

- **production**: ``DATABASE_URL`` names a server database (PostgreSQL). ``CONNECTOR_SECRET_KEY``
  is then mandatory: a generated key would make stored credentials unreadable after a restart on a
  new dyno.
- **embedded**: nothing set. SQLite under ``var/``, an SQLite-backed broker and limiter, and a
  key generated once and kept beside the database (with a warning), so ``make run`` needs no
  servers and a restart loses nothing.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from connector.errors import ConfigurationError

log = logging.getLogger(__name__)

#: Where embedded state lives unless ``CONNECTOR_VAR_DIR`` says otherwise.
DEFAULT_VAR_DIR = Path("var")

_SECRET_FIELDS = frozenset(
    {
        "secret_keys",
        "zoho_client_secret",
        "concur_client_secret",
        "flower_basic_auth",
        "ops_basic_auth",
        "alert_webhook_url",
        "alert_smtp_password",
    }
)


#: Which ESS ``statusChanged`` starts the expenses flow: reaching ``A_APPR``, reaching ``P_PROC``,
#: or either of them (docs/expenses.md, "Trigger").
EXPENSES_TRIGGERS = ("approval", "payment", "either")


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the connector reads from its environment, parsed and checked once."""

    database_url: str
    redis_url: str | None
    secret_keys: tuple[str, ...] = field(repr=False)
    embedded: bool
    var_dir: Path
    zoho_client_id: str | None = None
    zoho_client_secret: str | None = field(default=None, repr=False)
    zoho_accounts_url: str = "https://accounts.zoho.com"
    concur_client_id: str | None = None
    concur_client_secret: str | None = field(default=None, repr=False)
    concur_auth_url: str = "https://us2.api.concursolutions.com"
    trusted_hosts: tuple[str, ...] = ()
    concur_webhook_public_keys: tuple[str, ...] = ()
    #: How ``X-Zoho-Webhook-Signature`` encodes the HMAC: ``hex`` (Zoho Billing's documented
    #: form) or ``base64``. UNCONFIRMED for Books; see docs/security.md to confirm it from one
    #: real delivery (``connector webhooks zoho ID --inspect-last``).
    zoho_webhook_signature_encoding: str = "hex"
    port: int = 5000
    #: Where the web process listens (``host:port``), as declared by whoever starts it
    #: (``connector run`` sets it). Unset means "unknown": /ops then requires a password.
    web_bind: str | None = None
    flower_basic_auth: str | None = field(default=None, repr=False)
    ops_basic_auth: str | None = field(default=None, repr=False)
    sandbox_url: str | None = None
    public_url: str | None = None
    #: Shared per-tenant limits (the real ones; see docs/rate-limits.md).
    zoho_rate_limit: str = "100/60s"
    concur_rate_limit: str = "600/60s"
    concur_rate_limits: str = ""
    #: Seconds each granted call keeps its slot beyond the vendor's period (arrival jitter).
    rate_limit_margin: float = 0.5
    #: Zoho calls in flight at once per organization, all workers together (docs/rate-limits.md).
    zoho_max_in_flight: int = 5
    #: Share of each Zoho organization's daily quota that backfills and reconciliation leave
    #: to live traffic (webhooks, polls).
    zoho_daily_reserve: float = 0.10
    #: Per-worker Celery ceilings for each queue (``celeryconfig`` annotations).
    celery_zoho_rate_limit: str | None = None
    celery_concur_rate_limit: str | None = None
    #: Redis visibility timeout; must exceed the longest task run plus any countdown we schedule.
    visibility_timeout: int = 3600
    #: How long a worker owns a record before the sweeper may re-drive it.
    lease_seconds: int = 300
    sweep_interval: float = 60.0
    #: Celery beat's schedule file (last run of each job). Losing it is harmless: a fresh file
    #: starts every job one interval after beat starts (docs/deploy.md, "Beat's schedule file").
    beat_schedule_file: Path = Path("var/celerybeat-schedule")
    #: Failed intake runs before a webhook event is ``failed`` (docs/operations.md, "Inbox").
    inbox_max_attempts: int = 5
    #: Seconds before a ``received`` event is relayed; 0 = derived (2 x sweep interval, >= 5 s).
    inbox_relay_after: float = 0.0
    #: Beat refreshes access tokens that expire within this many seconds (docs/connections.md).
    refresh_margin: int = 600
    #: Seconds between two runs of the beat's token refresh.
    refresh_interval: float = 60.0
    max_body_bytes: int = 1_048_576
    log_level: str = "INFO"
    #: Alerts (docs/operations.md): where the digest goes and when a condition counts.
    alert_webhook_url: str | None = field(default=None, repr=False)
    alert_smtp_host: str | None = None
    alert_smtp_port: int = 587
    alert_smtp_user: str | None = None
    alert_smtp_password: str | None = field(default=None, repr=False)
    alert_smtp_from: str | None = None
    alert_smtp_to: tuple[str, ...] = ()
    alert_smtp_starttls: bool = True
    #: Seconds between two digest runs (beat task ``maintenance.alerts``).
    alert_interval: float = 300.0
    #: A record waiting longer than this many seconds is raised in the alerts.
    alert_waiting_age: int = 3600
    #: An open problem that neither grew nor changed is repeated after this many seconds.
    alert_remind_after: int = 86400
    #: Expenses flow (docs/expenses.md): seconds between two back-stop polls of approved reports,
    #: which ESS ``statusChanged`` events start the flow, and how far back the first poll looks.
    expenses_poll_interval: float = 300.0
    expenses_approval_trigger: str = "either"
    expenses_poll_lookback_days: int = 30
    #: Seconds between two beat polling passes of the payables flow (the webhook back-stop).
    payables_poll_interval: float = 300.0
    #: Seconds between two beat vendor reconciliations per connection (docs/vendors.md).
    vendors_sync_interval: float = 3600.0
    #: Transient errors (429, 5xx, timeouts): broker retries from ``retry_base`` seconds,
    #: doubling to ``retry_cap`` (docs/errors.md).
    retry_base: float = 2.0
    retry_cap: float = 300.0
    #: Waiting records (missing vendor, account, currency): retried from ``waiting_base``
    #: seconds doubling to ``waiting_cap``; ``dead`` after ``waiting_give_up`` seconds.
    waiting_base: float = 60.0
    waiting_cap: float = 3600.0
    waiting_give_up: float = 259200.0

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse and check the environment; raise one ``ConfigurationError`` listing every problem."""
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        def get_int(name: str, default: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                number = int(raw)
            except ValueError:
                problems.append(f"{name} must be a whole number, got {raw!r}")
                return default
            if number <= 0:
                problems.append(f"{name} must be positive, got {number}")
            return number

        def get_float(name: str, default: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                number = float(raw)
            except ValueError:
                problems.append(f"{name} must be a number of seconds, got {raw!r}")
                return default
            if not number > 0:
                problems.append(f"{name} must be positive, got {raw}")
                return default
            return number

        var_dir = Path(get("CONNECTOR_VAR_DIR") or DEFAULT_VAR_DIR)
        database_url = get("DATABASE_URL")
        embedded = database_url is None or database_url.startswith("sqlite")
        if database_url is None:
            database_url = f"sqlite:///{(var_dir / 'connector.sqlite').resolve()}"
        elif database_url.startswith("postgres://"):
            # Heroku still hands out the scheme SQLAlchemy 1.4 dropped.
            database_url = "postgresql://" + database_url[len("postgres://") :]
        if not (database_url.startswith("sqlite") or database_url.startswith("postgresql")):
            problems.append(
                "DATABASE_URL must be a postgresql:// or sqlite:/// URL, got scheme "
                f"{database_url.split(':', 1)[0]!r}"
            )

        redis_url = get("REDIS_URL")
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(
                f"REDIS_URL must be a redis:// or rediss:// URL, got {redis_url[:12]!r}…"
            )

        secret_keys = _split(get("CONNECTOR_SECRET_KEY"))
        if not secret_keys:
            if embedded:
                secret_keys = (_embedded_key(var_dir),)
            else:
                problems.append(
                    "CONNECTOR_SECRET_KEY is required outside embedded mode "
                    "(one or more comma-separated Fernet keys; generate one with "
                    "`connector keys generate`)"
                )
        else:
            from connector.vault import check_keys

            problems.extend(check_keys(secret_keys))

        if not embedded and not redis_url:
            problems.append("REDIS_URL is required when DATABASE_URL points at a server database")

        trusted = _split(get("CONNECTOR_TRUSTED_HOSTS"))
        for host in trusted:
            if "/" in host or " " in host:
                problems.append(f"CONNECTOR_TRUSTED_HOSTS entry {host!r} must be host or host:port")

        key_paths = _split(get("CONCUR_WEBHOOK_PUBLIC_KEYS"))
        for key_path in key_paths:
            if not Path(key_path).is_file():
                problems.append(
                    f"CONCUR_WEBHOOK_PUBLIC_KEYS names {key_path!r}, which is not a file"
                )

        flower_auth = get("FLOWER_BASIC_AUTH")
        if flower_auth and ":" not in flower_auth:
            problems.append("FLOWER_BASIC_AUTH must be user:password")
        ops_auth = get("OPS_BASIC_AUTH")
        if ops_auth and ":" not in ops_auth:
            problems.append("OPS_BASIC_AUTH must be user:password")

        web_bind = get("WEB_BIND")
        if web_bind and bind_host(web_bind) is None:
            problems.append(f"WEB_BIND must be host:port (or host), got {web_bind!r}")

        public_url = (get("CONNECTOR_PUBLIC_URL") or "").rstrip("/") or None
        if public_url is None:
            if not embedded:
                problems.append(
                    "CONNECTOR_PUBLIC_URL is required outside embedded mode (the https:// address "
                    "where Zoho, Concur and browsers reach the web process; OAuth redirect URIs "
                    "are built from it, never from a request's Host header)"
                )
        else:
            problems.extend(_check_public_url(public_url))

        alert_webhook = get("ALERT_WEBHOOK_URL")
        if alert_webhook and not alert_webhook.startswith(("https://", "http://")):
            problems.append("ALERT_WEBHOOK_URL must be an http(s):// URL")
        smtp_host = get("ALERT_SMTP_HOST")
        smtp_to = _split(get("ALERT_SMTP_TO"))
        smtp_from = get("ALERT_SMTP_FROM")
        if smtp_host and not (smtp_to and smtp_from):
            problems.append(
                "ALERT_SMTP_HOST needs ALERT_SMTP_FROM and ALERT_SMTP_TO (comma-separated)"
            )
        starttls_raw = (get("ALERT_SMTP_STARTTLS") or "true").lower()
        if starttls_raw not in {"true", "false", "1", "0", "yes", "no"}:
            problems.append(f"ALERT_SMTP_STARTTLS must be true or false, got {starttls_raw!r}")

        rate_settings = {
            "ZOHO_RATE_LIMIT": get("ZOHO_RATE_LIMIT") or "100/60s",
            "CONCUR_RATE_LIMIT": get("CONCUR_RATE_LIMIT") or "600/60s",
        }
        from connector.limits.ratelimit import parse_concur_limits, parse_limit

        for name, value in rate_settings.items():
            try:
                parse_limit(value)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        concur_limits = get("CONCUR_RATE_LIMITS") or ""
        rate_margin = 0.5
        if get("RATE_LIMIT_MARGIN") is not None:
            try:
                rate_margin = float(get("RATE_LIMIT_MARGIN") or "")
                if not 0 <= rate_margin < 60:
                    raise ValueError
            except ValueError:
                problems.append(
                    "RATE_LIMIT_MARGIN must be seconds between 0 and 60, "
                    f"got {get('RATE_LIMIT_MARGIN')!r}"
                )
                rate_margin = 0.5
        zoho_in_flight = 5
        if get("ZOHO_MAX_IN_FLIGHT") is not None:
            try:
                zoho_in_flight = int(get("ZOHO_MAX_IN_FLIGHT") or "")
                if not 1 <= zoho_in_flight <= 100:
                    raise ValueError
            except ValueError:
                problems.append(
                    "ZOHO_MAX_IN_FLIGHT must be a whole number of calls between 1 and 100 "
                    f"(Zoho allows 5 on the free plan, 10 on paid plans), got "
                    f"{get('ZOHO_MAX_IN_FLIGHT')!r}"
                )
                zoho_in_flight = 5
        zoho_reserve = 0.10
        if get("ZOHO_DAILY_RESERVE") is not None:
            raw_reserve = (get("ZOHO_DAILY_RESERVE") or "").strip()
            try:
                zoho_reserve = (
                    float(raw_reserve[:-1]) / 100
                    if raw_reserve.endswith("%")
                    else float(raw_reserve)
                )
                if not 0 <= zoho_reserve < 1:
                    raise ValueError
            except ValueError:
                problems.append(
                    "ZOHO_DAILY_RESERVE must be a share of the daily quota below 1 "
                    f"(0.1 or 10%), got {raw_reserve!r}"
                )
                zoho_reserve = 0.10
        if concur_limits:
            try:
                parse_concur_limits(concur_limits)
            except ValueError as exc:
                problems.append(f"CONCUR_RATE_LIMITS: {exc}")

        signature_encoding = (get("ZOHO_WEBHOOK_SIGNATURE_ENCODING") or "hex").lower()
        if signature_encoding not in ("hex", "base64"):
            problems.append(
                f"ZOHO_WEBHOOK_SIGNATURE_ENCODING must be hex or base64, got {signature_encoding!r}"
            )

        expenses_trigger = (get("EXPENSES_APPROVAL_TRIGGER") or "either").lower()
        if expenses_trigger not in EXPENSES_TRIGGERS:
            problems.append(
                "EXPENSES_APPROVAL_TRIGGER must be one of "
                f"{', '.join(EXPENSES_TRIGGERS)}, got {expenses_trigger!r}"
            )

        settings = cls(
            database_url=database_url,
            redis_url=redis_url,
            secret_keys=secret_keys,
            embedded=embedded,
            var_dir=var_dir,
            zoho_client_id=get("ZOHO_CLIENT_ID"),
            zoho_client_secret=get("ZOHO_CLIENT_SECRET"),
            zoho_accounts_url=(get("ZOHO_ACCOUNTS_URL") or "https://accounts.zoho.com").rstrip("/"),
            concur_client_id=get("CONCUR_CLIENT_ID"),
            concur_client_secret=get("CONCUR_CLIENT_SECRET"),
            concur_auth_url=(
                get("CONCUR_AUTH_URL") or "https://us2.api.concursolutions.com"
            ).rstrip("/"),
            trusted_hosts=trusted,
            concur_webhook_public_keys=key_paths,
            zoho_webhook_signature_encoding=signature_encoding,
            port=get_int("PORT", 5000),
            web_bind=web_bind,
            flower_basic_auth=flower_auth,
            ops_basic_auth=ops_auth,
            sandbox_url=(get("CONNECTOR_SANDBOX_URL") or "").rstrip("/") or None,
            public_url=public_url,
            zoho_rate_limit=rate_settings["ZOHO_RATE_LIMIT"],
            concur_rate_limit=rate_settings["CONCUR_RATE_LIMIT"],
            concur_rate_limits=concur_limits,
            rate_limit_margin=rate_margin,
            zoho_max_in_flight=zoho_in_flight,
            zoho_daily_reserve=zoho_reserve,
            celery_zoho_rate_limit=get("CELERY_ZOHO_RATE_LIMIT"),
            celery_concur_rate_limit=get("CELERY_CONCUR_RATE_LIMIT"),
            visibility_timeout=get_int("CELERY_VISIBILITY_TIMEOUT", 3600),
            lease_seconds=get_int("CONNECTOR_LEASE_SECONDS", 300),
            sweep_interval=float(get_int("CONNECTOR_SWEEP_INTERVAL", 60)),
            beat_schedule_file=Path(
                get("CONNECTOR_BEAT_SCHEDULE") or var_dir / "celerybeat-schedule"
            ),
            inbox_max_attempts=get_int("INBOX_MAX_ATTEMPTS", 5),
            inbox_relay_after=get_float("INBOX_RELAY_AFTER", 0.0),
            refresh_margin=get_int("CONNECTOR_REFRESH_MARGIN", 600),
            refresh_interval=float(get_int("CONNECTOR_REFRESH_INTERVAL", 60)),
            max_body_bytes=get_int("CONNECTOR_MAX_BODY_BYTES", 1_048_576),
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
            alert_webhook_url=alert_webhook,
            alert_smtp_host=smtp_host,
            alert_smtp_port=get_int("ALERT_SMTP_PORT", 587),
            alert_smtp_user=get("ALERT_SMTP_USER"),
            alert_smtp_password=get("ALERT_SMTP_PASSWORD"),
            alert_smtp_from=smtp_from,
            alert_smtp_to=smtp_to,
            alert_smtp_starttls=starttls_raw in {"true", "1", "yes"},
            alert_interval=float(get_int("ALERT_INTERVAL", 300)),
            alert_waiting_age=get_int("ALERT_WAITING_AGE", 3600),
            alert_remind_after=get_int("ALERT_REMIND_AFTER", 86400),
            expenses_poll_interval=float(get_int("EXPENSES_POLL_INTERVAL", 300)),
            expenses_approval_trigger=expenses_trigger,
            expenses_poll_lookback_days=get_int("EXPENSES_POLL_LOOKBACK_DAYS", 30),
            payables_poll_interval=get_float("PAYABLES_POLL_INTERVAL", 300.0),
            vendors_sync_interval=float(get_int("VENDORS_SYNC_INTERVAL", 3600)),
            retry_base=get_float("CONNECTOR_RETRY_BASE", 2.0),
            retry_cap=get_float("CONNECTOR_RETRY_CAP", 300.0),
            waiting_base=get_float("CONNECTOR_WAITING_BASE", 60.0),
            waiting_cap=get_float("CONNECTOR_WAITING_CAP", 3600.0),
            waiting_give_up=get_float("CONNECTOR_WAITING_GIVE_UP", 259200.0),
        )
        if settings.beat_schedule_file.is_dir():
            problems.append(
                f"CONNECTOR_BEAT_SCHEDULE names {str(settings.beat_schedule_file)!r}, a directory; "
                "give the path of a file in a writable directory (created if missing)"
            )
        if settings.retry_cap >= settings.visibility_timeout:
            problems.append(
                "CONNECTOR_RETRY_CAP must be shorter than CELERY_VISIBILITY_TIMEOUT: a longer "
                "broker countdown is redelivered and run twice"
            )
        if settings.inbox_max_attempts < 1:
            problems.append("INBOX_MAX_ATTEMPTS must be at least 1")
        if settings.lease_seconds >= settings.visibility_timeout:
            problems.append(
                "CONNECTOR_LEASE_SECONDS must be shorter than CELERY_VISIBILITY_TIMEOUT, so the "
                "sweeper re-drives a stuck record before Redis redelivers its message"
            )
        if settings.refresh_margin >= 3600:
            problems.append(
                "CONNECTOR_REFRESH_MARGIN must be shorter than an access token's life (3600 s), "
                "or every beat run would refresh every token"
            )
        if problems:
            raise ConfigurationError(problems)
        return settings

    # ------------------------------------------------------------------ derived

    @property
    def sandbox_mode(self) -> bool:
        """True when the sandbox stands in for Zoho and Concur (its hosts become trusted)."""
        return self.sandbox_url is not None

    @property
    def broker_url(self) -> str:
        """Redis when configured, else an SQLite-backed kombu transport under ``var/``."""
        if self.redis_url:
            return self.redis_url
        return f"embedded+sqlite:///{(self.var_dir / 'broker.sqlite').resolve()}"

    @property
    def result_backend(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"db+sqlite:///{(self.var_dir / 'results.sqlite').resolve()}"

    @property
    def limiter_sqlite_path(self) -> Path:
        return (self.var_dir / "ratelimit.sqlite").resolve()

    @property
    def web_on_loopback(self) -> bool:
        """True only when ``WEB_BIND`` declares a loopback address (unset counts as not)."""
        return self.web_bind is not None and is_loopback_host(bind_host(self.web_bind) or "")

    def safe_summary(self) -> dict[str, str]:
        """Settings for display (``connector config``): secrets masked, URLs without passwords.

        A URL's password may sit in its user-info (``redis://:pw@h``) or in its query
        (``redis://h/0?password=pw``, ``?token=``); both are masked.
        """
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS:
                out[f.name] = "<set>" if value else "<unset>"
            elif isinstance(value, str) and "://" in value:
                out[f.name] = mask_url(value)
            else:
                out[f.name] = str(value)
        return out


#: Query parameters whose value is a credential (compared lower-case, ``-``/``_`` ignored).
_SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "pass", "token", "secret", "key", "apikey", "accesstoken",
     "authtoken", "auth", "sig", "signature", "clientsecret", "refreshtoken", "credential"}
)  # fmt: skip


def mask_url(url: str) -> str:
    """``url`` with the password of its user-info and every secret-looking query value masked."""
    from urllib.parse import parse_qsl, urlencode, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    out = url
    if "@" in parts.netloc:
        out = out.replace(parts.netloc, "***@" + parts.netloc.rsplit("@", 1)[1], 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        secret = [
            k.lower().replace("-", "").replace("_", "") in _SECRET_QUERY_KEYS for k, _ in pairs
        ]
        if any(secret):
            query = urlencode(
                [(k, "***" if hide else v) for (k, v), hide in zip(pairs, secret, strict=True)],
                safe="*",
            )
            out = (
                out.split("?", 1)[0]
                + "?"
                + query
                + (f"#{parts.fragment}" if parts.fragment else "")
            )
    return out


def bind_host(bind: str) -> str | None:
    """The host of a ``host:port`` / ``[v6]:port`` / ``host`` bind address; ``None`` if malformed."""
    bind = bind.strip()
    if bind.startswith("["):
        host, sep, rest = bind[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return host or None
    head, sep, tail = bind.rpartition(":")
    if sep and ":" not in head:
        return head if tail.isdigit() and head else None
    return bind if bind and ":" not in bind else None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1); false for 0.0.0.0."""
    import ipaddress

    host = host.strip().lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_public_url(url: str) -> list[str]:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return [f"CONNECTOR_PUBLIC_URL is not a valid URL: {url[:60]!r}"]
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return ["CONNECTOR_PUBLIC_URL must be an http(s):// URL with a host"]
    if parts.username or parts.password or parts.query or parts.fragment:
        return ["CONNECTOR_PUBLIC_URL must not carry credentials, a query or a fragment"]
    return []


def _embedded_key(var_dir: Path) -> str:
    """Return the embedded-mode key, generating it once beside the database.

    A generated key is fine for a laptop demo but not for production: whoever reads ``var/`` can
    decrypt every stored credential. Hence the warning on every start.
    """
    from cryptography.fernet import Fernet

    path = var_dir / "secret.key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key().decode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        log.warning("embedded mode: generated a local secret key at %s", path)
    else:
        log.warning(
            "embedded mode: using the local secret key at %s; set CONNECTOR_SECRET_KEY in production",
            path,
        )
    return path.read_text().strip()


_cached: Settings | None = None


def get_settings(*, reload: bool = False) -> Settings:
    """Process-wide settings, parsed on first use (tests pass their own ``Settings`` instead)."""
    global _cached
    if _cached is None or reload:
        _cached = Settings.from_env()
    return _cached
