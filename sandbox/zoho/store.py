"""In-memory Zoho Books + Zoho Accounts: organizations, records, users and OAuth tokens.

Everything is guarded by ``state.lock``; lookups are dict-based (O(1) by id) and journals are
indexed by ``reference_number`` because that is the connector's de-duplication query.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.stats import RateWindow
from sandbox.zoho.records import fmt_time

if TYPE_CHECKING:
    from sandbox.state import SandboxState

SANDBOX_CLIENT_ID = "sandbox-zoho-client"
SANDBOX_CLIENT_SECRET = "sandbox-zoho-secret"

ACCESS_TOKEN_TTL = 3600
GRANT_CODE_TTL = 60  # documented range is 60 s to 3 min; the sandbox takes the strictest
SELF_CLIENT_CODE_TTL = 600
MAX_REFRESH_TOKENS_PER_USER = 20
MAX_ACCESS_TOKENS_PER_REFRESH = 15  # UNCONFIRMED: Zoho pages say 10, 15 or 30
REFRESH_THROTTLE = (10, 600.0)  # 10 access tokens per 10 minutes per refresh token

# Official KB: calls per day by plan.
DAILY_QUOTA_BY_PLAN = {
    "FREE": 1000,
    "STANDARD": 2000,
    "PROFESSIONAL": 5000,
    "PREMIUM": 10000,
    "ELITE": 10000,
    "ULTIMATE": 10000,
}
#: Concurrent calls per organization: 5 on the free plan, 10 on paid plans (issue #14; Zoho
#: publishes no figure, see docs/sandbox.md).
CONCURRENCY_BY_PLAN = {"FREE": 5}
CONCURRENCY_PAID = 10


def _token() -> str:
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


class OAuthError(Exception):
    """Zoho Accounts error: rendered as ``{"error": error[, "error_description": ...]}``."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


@dataclass(slots=True)
class Rec:
    """A stored record: the full Zoho representation plus epoch times for filtering."""

    data: dict[str, Any]
    ctime: float
    mtime: float


@dataclass
class User:
    user_id: str
    email: str
    name: str
    dc: str
    org_ids: list[str]


@dataclass
class Grant:
    code: str
    client_id: str
    user_id: str
    dc: str
    scope: str
    access_type: str
    redirect_uri: str | None
    prompt: str | None
    expires_at: float
    used: bool = False


@dataclass
class RefreshToken:
    id: str
    token: str
    client_id: str
    user_id: str
    dc: str
    scope: str
    created_at: float
    revoked: bool = False
    access_tokens: deque[str] = field(default_factory=deque)


@dataclass
class AccessToken:
    token: str
    client_id: str
    user_id: str
    dc: str
    scopes: frozenset[str]
    expires_at: float
    refresh_id: str | None
    revoked: bool = False


@dataclass
class Org:
    """One Zoho Books organization and all its records."""

    organization_id: str
    dc: str
    data: dict[str, Any]
    id_prefix: str
    time_zone: str
    base_currency_id: str = ""
    plan: str = "PROFESSIONAL"
    currencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, Rec] = field(default_factory=dict)
    bills: dict[str, Rec] = field(default_factory=dict)
    invoices: dict[str, Rec] = field(default_factory=dict)
    journals: dict[str, Rec] = field(default_factory=dict)
    journals_by_ref: dict[str, list[str]] = field(default_factory=dict)
    #: currency_id -> rates ``{exchange_rate_id, currency_id, currency_code, effective_date,
    #: rate}`` added through the API; the currency's own rate is the implicit first entry.
    exchange_rates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seq: int = 0
    entry_seq: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    list_cache: OrderedDict[tuple[Any, ...], tuple[int, list[str]]] = field(
        default_factory=OrderedDict
    )
    daily_limit: int | None = None
    daily_used: int = 0
    concurrent_limit: int | None = None
    daily_day: int = -1

    def next_id(self) -> str:
        self.seq += 1
        return f"{self.id_prefix}{self.seq:07d}"

    def touch(self, resource: str) -> None:
        """Invalidate cached list results for ``resource`` after a write."""
        self.versions[resource] = self.versions.get(resource, 0) + 1

    def collection(self, resource: str) -> dict[str, Rec]:
        return {
            "contacts": self.contacts,
            "bills": self.bills,
            "invoices": self.invoices,
            "journals": self.journals,
        }[resource]

    def base_currency(self) -> dict[str, Any]:
        return self.currencies[self.base_currency_id]

    def time(self, ts: float) -> str:
        return fmt_time(ts, self.time_zone)


#: ``tag_options_key`` values: the keys a reporting tag's options have been documented or seen
#: under; the connector reads all three (connector/zoho/resources.py, read_tag_options).
TAG_OPTIONS_KEYS: tuple[str, ...] = ("results", "options", "reporting_tag.options")


class ZohoStore:
    """The Zoho side of the sandbox: tenant data, Zoho Accounts state, limits and webhooks."""

    def __init__(
        self, state: SandboxState, *, rate_limit: int = 100, rate_period: float = 60.0
    ) -> None:
        self.state = state
        self.clients: dict[str, str] = {SANDBOX_CLIENT_ID: SANDBOX_CLIENT_SECRET}
        self.default_rate_limit = rate_limit
        self.default_rate_period = rate_period
        self.minute_window = state.stats.register_window(
            "zoho.org_per_minute", RateWindow(rate_limit, rate_period)
        )
        self.refresh_window = state.stats.register_window(
            "zoho.token_refresh_per_refresh_token",
            RateWindow(REFRESH_THROTTLE[0], REFRESH_THROTTLE[1], clock=state.clock.now),
        )
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, Any] = {}
        #: Books calls being processed per organization, the most seen at once, and refusals.
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.concurrency_refused: dict[str, int] = {}
        self._clear()
        self._reset_settings()
        state.on_reset(self.reset)
        state.on_seed(self.seed)
        from sandbox.zoho import seed as seed_mod

        for kind in ("bills", "invoices", "vendors"):
            fn = seed_mod.generator(self, kind)
            state.register_generator(kind, fn)
            state.register_generator(f"zoho.{kind}", fn)
        state.register_duplicates("zoho", self.duplicates)
        state.register_created("zoho", self.created_report)

    # --- lifecycle ----------------------------------------------------------------------
    def _clear(self) -> None:
        self.reset_concurrency_stats()
        self.orgs: dict[str, Org] = {}
        self.users: dict[str, User] = {}
        self.users_by_email: dict[str, str] = {}
        self.grants: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.refresh_by_id: dict[str, RefreshToken] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_seq = 0
        self.created: list[dict[str, Any]] = []
        self.updated: list[dict[str, Any]] = []
        self.minute_window.reset()
        self.refresh_window.reset()

    def _reset_settings(self) -> None:
        self.settings = {
            "token_error_status": 200,
            "grant_code_ttl": GRANT_CODE_TTL,
            "max_access_tokens_per_refresh": MAX_ACCESS_TOKENS_PER_REFRESH,
            "max_refresh_tokens_per_user": MAX_REFRESH_TOKENS_PER_USER,
            "daily_quota": None,  # None = by plan
            "concurrent": None,  # calls in flight per org; None = by plan
            "latency": 0.0,  # seconds each Books call takes (makes concurrency observable)
            "webhook_attempts": 5,
            "webhooks_on_api_writes": True,
            # How X-Zoho-Webhook-Signature is written (UNCONFIRMED for Books): hex or base64.
            "webhook_signature_encoding": "hex",
            # Where GET /reportingtags/{id}/options/all puts the options (UNCONFIRMED for
            # Books): "results" (default), "options" or "reporting_tag.options".
            "tag_options_key": "results",
        }
        self.minute_window.set_limit(self.default_rate_limit, self.default_rate_period)
        self.minute_window.clear_limits()

    def reset(self) -> None:
        """Back to an empty Zoho: no organizations, users, tokens, webhooks or custom limits."""
        with self.state.lock:
            self._clear()
            self.webhooks.clear()
            self._reset_settings()

    def seed(self) -> None:
        """Replace tenant data with the demo tenants; webhook targets and limits survive."""
        from sandbox.zoho.seed import fire_seed_webhooks, load_demo

        with self.state.lock:
            self._clear()
            load_demo(self)
            fire_seed_webhooks(self)

    # --- helpers ------------------------------------------------------------------------
    def now(self) -> float:
        return self.state.clock.now()

    def add_org(self, org: Org) -> Org:
        self.orgs[org.organization_id] = org
        return org

    def add_user(self, user: User) -> User:
        self.users[user.user_id] = user
        self.users_by_email[user.email.lower()] = user.user_id
        return user

    def user_by_email(self, email: str | None) -> User | None:
        if not email:
            return None
        uid = self.users_by_email.get(email.lower())
        return self.users.get(uid) if uid else None

    def default_user(self) -> User | None:
        return next(iter(self.users.values()), None)

    def put_record(
        self, org: Org, resource: str, data: dict[str, Any], *, ts: float | None = None
    ) -> Rec:
        ts = self.now() if ts is None else ts
        id_key = {
            "contacts": "contact_id",
            "bills": "bill_id",
            "invoices": "invoice_id",
            "journals": "journal_id",
        }[resource]
        rec = Rec(data, ts, ts)
        org.collection(resource)[data[id_key]] = rec
        if resource == "journals":
            org.journals_by_ref.setdefault(data.get("reference_number") or "", []).append(
                data["journal_id"]
            )
        org.touch(resource)
        return rec

    def modify_record(self, org: Org, resource: str, rec: Rec) -> None:
        rec.mtime = self.now()
        rec.data["last_modified_time"] = org.time(rec.mtime)
        org.touch(resource)

    # --- OAuth --------------------------------------------------------------------------
    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        if not client_id or client_id not in self.clients:
            raise OAuthError("invalid_client")
        if client_secret != self.clients[client_id]:
            raise OAuthError("invalid_client_secret")

    def issue_grant(
        self,
        *,
        client_id: str,
        user: User,
        scope: str,
        access_type: str = "online",
        redirect_uri: str | None = None,
        prompt: str | None = None,
        ttl: float | None = None,
    ) -> Grant:
        with self.state.lock:
            grant = Grant(
                code=_token(),
                client_id=client_id,
                user_id=user.user_id,
                dc=user.dc,
                scope=scope,
                access_type=(access_type or "online").lower(),
                redirect_uri=redirect_uri,
                prompt=prompt,
                expires_at=self.now()
                + (ttl if ttl is not None else self.settings["grant_code_ttl"]),
            )
            self.grants[grant.code] = grant
            return grant

    def _live_refresh_tokens(self, user_id: str, client_id: str) -> list[RefreshToken]:
        return [
            rt
            for rt in self.refresh_by_id.values()
            if rt.user_id == user_id and rt.client_id == client_id and not rt.revoked
        ]

    def _new_access_token(
        self, client_id: str, user_id: str, dc: str, scope: str, rt: RefreshToken | None
    ) -> AccessToken:
        at = AccessToken(
            token=_token(),
            client_id=client_id,
            user_id=user_id,
            dc=dc,
            scopes=frozenset(s.strip().lower() for s in scope.split(",") if s.strip()),
            expires_at=self.now() + ACCESS_TOKEN_TTL,
            refresh_id=rt.id if rt else None,
        )
        self.access_tokens[at.token] = at
        if rt is not None:
            rt.access_tokens.append(at.token)
            cap = int(self.settings["max_access_tokens_per_refresh"])
            while len(rt.access_tokens) > cap:
                old = self.access_tokens.get(rt.access_tokens.popleft())
                if old is not None:
                    old.revoked = True
        return at

    def _token_response(
        self, at: AccessToken, dc: str, base_url: str, scope: str
    ) -> dict[str, Any]:
        from sandbox.zoho.dc import api_domain

        return {
            "access_token": at.token,
            "scope": scope,
            "api_domain": api_domain(base_url, dc),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL,
        }

    def exchange_code(
        self,
        dc: str,
        client_id: str | None,
        client_secret: str | None,
        code: str | None,
        base_url: str,
    ) -> dict[str, Any]:
        with self.state.lock:
            self.check_client(client_id, client_secret)
            grant = self.grants.get(code or "")
            if (
                grant is None
                or grant.used
                or grant.dc != dc
                or grant.client_id != client_id
                or grant.expires_at <= self.now()
            ):
                raise OAuthError("invalid_code")
            grant.used = True
            rt: RefreshToken | None = None
            live = self._live_refresh_tokens(grant.user_id, grant.client_id)
            # Zoho hands out a refresh token only for offline access, and only on a fresh consent
            # (prompt=consent) once the user already has one for this client.
            if grant.access_type == "offline" and (grant.prompt == "consent" or not live):
                self.refresh_seq += 1
                rt = RefreshToken(
                    id=f"zoho-rt-{self.refresh_seq}",
                    token=_token(),
                    client_id=grant.client_id,
                    user_id=grant.user_id,
                    dc=grant.dc,
                    scope=grant.scope,
                    created_at=self.now(),
                )
                self.refresh_tokens[rt.token] = rt
                self.refresh_by_id[rt.id] = rt
                live.append(rt)
                cap = int(self.settings["max_refresh_tokens_per_user"])
                while len(live) > cap:
                    self._revoke_refresh(live.pop(0))
            at = self._new_access_token(grant.client_id, grant.user_id, grant.dc, grant.scope, rt)
            out = self._token_response(at, grant.dc, base_url, grant.scope)
            if rt is not None:
                out = {
                    "access_token": at.token,
                    "refresh_token": rt.token,
                    **{k: v for k, v in out.items() if k != "access_token"},
                }
            return out

    def refresh(
        self,
        dc: str,
        client_id: str | None,
        client_secret: str | None,
        token: str | None,
        base_url: str,
    ) -> dict[str, Any]:
        with self.state.lock:
            self.check_client(client_id, client_secret)
            rt = self.refresh_tokens.get(token or "")
            if rt is None or rt.revoked or rt.dc != dc or rt.client_id != client_id:
                raise OAuthError("invalid_code")
            if not self.refresh_window.hit(rt.id):
                raise OAuthError(
                    "Access Denied",
                    "You have made too many requests continuously. Please try again after some "
                    "time.",
                )
            self.state.stats.record_refresh(rt.id)
            at = self._new_access_token(rt.client_id, rt.user_id, rt.dc, rt.scope, rt)
            return self._token_response(at, rt.dc, base_url, rt.scope)

    def _revoke_refresh(self, rt: RefreshToken) -> None:
        rt.revoked = True
        for tok in rt.access_tokens:
            at = self.access_tokens.get(tok)
            if at is not None:
                at.revoked = True
        rt.access_tokens.clear()

    def revoke(self, token: str | None, dc: str | None = None) -> bool:
        """Revoke a refresh token (and its access tokens) or a single access token."""
        with self.state.lock:
            rt = self.refresh_tokens.get(token or "")
            if rt is not None and not rt.revoked and (dc is None or rt.dc == dc):
                self._revoke_refresh(rt)
                return True
            at = self.access_tokens.get(token or "")
            if at is not None and not at.revoked and (dc is None or at.dc == dc):
                at.revoked = True
                return True
            return False

    def authenticate(self, dc: str, token: str) -> AccessToken | None:
        at = self.access_tokens.get(token)
        if at is None or at.revoked or at.dc != dc or at.expires_at <= self.now():
            return None
        return at

    # --- limits -------------------------------------------------------------------------
    def daily_quota(self, org: Org) -> int:
        if org.daily_limit is not None:
            return org.daily_limit
        if self.settings["daily_quota"] is not None:
            return int(self.settings["daily_quota"])
        return DAILY_QUOTA_BY_PLAN.get(org.plan, 5000)

    def concurrency_limit(self, org: Org) -> int:
        if org.concurrent_limit is not None:
            return org.concurrent_limit
        if self.settings["concurrent"] is not None:
            return int(self.settings["concurrent"])
        return CONCURRENCY_BY_PLAN.get(org.plan, CONCURRENCY_PAID)

    def enter(self, org: Org) -> bool:
        """Count one Books call in flight for ``org``; False (refused) at its concurrency cap.
        Called under ``state.lock``; :meth:`leave` undoes it when the request ends."""
        key = org.organization_id
        held = self.in_flight.get(key, 0)
        if held >= self.concurrency_limit(org):
            self.concurrency_refused[key] = self.concurrency_refused.get(key, 0) + 1
            return False
        self.in_flight[key] = held + 1
        self.max_in_flight[key] = max(self.max_in_flight.get(key, 0), held + 1)
        return True

    def leave(self, organization_id: str) -> None:
        with self.state.lock:
            self.in_flight[organization_id] = max(0, self.in_flight.get(organization_id, 1) - 1)

    def reset_concurrency_stats(self) -> None:
        self.max_in_flight.clear()
        self.concurrency_refused.clear()

    def daily_state(self, org: Org) -> tuple[int, int, int]:
        """(limit, remaining, seconds until reset) for the org's current sandbox-clock UTC day."""
        now = self.now()
        day = int(now // 86400)
        if day != org.daily_day:
            org.daily_day = day
            org.daily_used = 0
        limit = self.daily_quota(org)
        reset_in = int((day + 1) * 86400 - now)
        return limit, max(0, limit - org.daily_used), reset_in

    # --- inspection ---------------------------------------------------------------------
    def record_created(self, org: Org, kind: str, record_id: str, via: str) -> None:
        self.created.append(
            {
                "organization_id": org.organization_id,
                "kind": kind,
                "id": record_id,
                "via": via,
                "at": time.time(),
            }
        )

    def created_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "journals": [],
            "contacts": [],
            "bills": [],
            "invoices": [],
            "log": list(self.created),
            "updated": list(self.updated),
        }
        for entry in self.created:
            org = self.orgs.get(entry["organization_id"])
            if org is None:
                continue
            rec = org.collection(entry["kind"]).get(entry["id"])
            if rec is not None:
                out[entry["kind"]].append(
                    {"organization_id": org.organization_id, "via": entry["via"], **rec.data}
                )
        return out

    def duplicates(self) -> dict[str, Any]:
        journals = []
        vendors = []
        for org in self.orgs.values():
            for ref, ids in org.journals_by_ref.items():
                live = [i for i in ids if i in org.journals]
                if ref and len(live) > 1:
                    journals.append(
                        {
                            "organization_id": org.organization_id,
                            "reference_number": ref,
                            "journal_ids": live,
                            "count": len(live),
                        }
                    )
            by_name: dict[str, list[str]] = {}
            for cid, rec in org.contacts.items():
                if rec.data.get("contact_type") == "vendor":
                    key = " ".join(str(rec.data["contact_name"]).lower().split())
                    by_name.setdefault(key, []).append(cid)
            for name, ids in by_name.items():
                if len(ids) > 1:
                    vendors.append(
                        {
                            "organization_id": org.organization_id,
                            "contact_name": name,
                            "contact_ids": ids,
                            "count": len(ids),
                        }
                    )
        return {"journals_by_reference_number": journals, "vendors_by_name": vendors}
