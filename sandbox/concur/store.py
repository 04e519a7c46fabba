"""In-memory state of the simulated Concur: companies, their data, tokens and subscriptions.

Everything is indexed for O(1) lookups on the paths a connector and a benchmark hammer (vendor by
code/address or name, payment request by invoice number, entries by report, tokens by value) and
nothing touches the disk per request. All mutation happens under the sandbox-wide ``RLock`` the
caller holds; the store itself does not lock so a multi-step operation stays atomic.
"""

from __future__ import annotations

import secrets
import string
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.concur.config import ConcurSettings

ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "CLP", "ISK", "HUF", "VND", "TWD"})

_ID_ALPHABET = string.ascii_letters + string.digits + "$"


def random_v3_id(rng: Any = None, length: int = 33) -> str:
    """A v3-style opaque id (``gWidFO7ikXSy...``); includes ``$`` so clients must URL-encode."""
    choice = rng.choice if rng is not None else secrets.choice
    return "gW" + "".join(choice(_ID_ALPHABET) for _ in range(length))


def random_hex(rng: Any = None, length: int = 20) -> str:
    """Upper-case hex id: 20 characters is the v3 report ``ID`` format."""
    if rng is not None:
        return "".join(rng.choice("0123456789ABCDEF") for _ in range(length))
    return secrets.token_hex(length // 2 + 1).upper()[:length]


def money(value: Decimal | float | int | str, currency: str) -> Decimal:
    """Round to the currency's minor unit (JPY has none)."""
    q = Decimal("1") if currency.upper() in ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
    return Decimal(str(value)).quantize(q, rounding=ROUND_HALF_UP)


def money_json(value: Decimal, currency: str) -> int | float:
    """JSON number in the currency's precision: ``1900`` for JPY, ``307.01`` for USD."""
    rounded = money(value, currency)
    if currency.upper() in ZERO_DECIMAL_CURRENCIES:
        return int(rounded)
    return float(rounded)


def v3_date(ts: float | None) -> str | None:
    """v3 timestamps look like ``2013-09-02T19:05:57.687`` (UTC, no zone designator)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def iso_z(ts: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds, as ESS and the v4 APIs print it."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Employee:
    login_id: str
    employee_id: str
    uuid: str
    first_name: str
    last_name: str
    email: str
    currency: str
    country: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass
class AccessToken:
    token: str
    kind: str  # "company" or "app"
    company_id: str | None
    geo: str
    expires_at: float
    client_id: str


@dataclass
class RefreshToken:
    token: str
    company_id: str
    geo: str
    expires_at: float
    revoked: bool = False


@dataclass
class Subscription:
    id: str
    topic: str
    filter: str
    endpoint: str
    application_id: str
    created_at: float
    groups: list[str] = field(default_factory=list)


@dataclass
class Company:
    """One Concur entity and all its data; it lives in exactly one data centre."""

    id: str
    name: str
    geo: str
    source: str = "seed"
    connected: bool = False  # appears in the app's ESS ``companyIds``
    request_tokens: dict[str, float] = field(default_factory=dict)
    ledgers: set[str] = field(default_factory=lambda: {"DEFAULT"})
    admin_login: str = ""

    employees: dict[str, Employee] = field(default_factory=dict)  # by login id (lower)
    employees_by_uuid: dict[str, Employee] = field(default_factory=dict)
    employees_by_empid: dict[str, Employee] = field(default_factory=dict)
    employees_by_email: dict[str, Employee] = field(default_factory=dict)

    vendors: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    vendors_by_id: dict[str, tuple[str, str]] = field(default_factory=dict)
    vendors_by_code: dict[str, set[tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    vendors_by_name: dict[str, set[tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    _vendor_order: list[tuple[str, str]] | None = None

    payment_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    pr_by_invoice: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries_by_report: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    entry_by_expense_id: dict[str, str] = field(default_factory=dict)
    allocations: dict[str, dict[str, Any]] = field(default_factory=dict)
    allocs_by_entry: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    allocs_by_report: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    # -- employees -----------------------------------------------------------------------------
    def add_employee(self, emp: Employee) -> None:
        self.employees[emp.login_id.lower()] = emp
        self.employees_by_uuid[emp.uuid] = emp
        self.employees_by_empid[emp.employee_id.lower()] = emp
        self.employees_by_email[emp.email.lower()] = emp

    # -- vendors ---------------------------------------------------------------------------------
    @staticmethod
    def vendor_key(code: str, address_code: str) -> tuple[str, str]:
        """VendorCode and AddressCode are documented as case-insensitive."""
        return (code.strip().upper(), address_code.strip().upper())

    def put_vendor(self, vendor: dict[str, Any]) -> None:
        key = self.vendor_key(vendor["VendorCode"], vendor["AddressCode"])
        old = self.vendors.get(key)
        if old is not None:
            self.vendors_by_name[(old.get("VendorName") or "").strip().lower()].discard(key)
        self.vendors[key] = vendor
        self.vendors_by_id[vendor["ID"]] = key
        self.vendors_by_code[key[0]].add(key)
        self.vendors_by_name[(vendor.get("VendorName") or "").strip().lower()].add(key)
        if old is None or (old.get("VendorName") != vendor.get("VendorName")):
            self._vendor_order = None

    def delete_vendor(self, key: tuple[str, str]) -> dict[str, Any] | None:
        vendor = self.vendors.pop(key, None)
        if vendor is None:
            return None
        self.vendors_by_id.pop(vendor["ID"], None)
        self.vendors_by_code[key[0]].discard(key)
        self.vendors_by_name[(vendor.get("VendorName") or "").strip().lower()].discard(key)
        self._vendor_order = None
        return vendor

    def vendor_order(self) -> list[tuple[str, str]]:
        """Keys sorted by VendorName (the documented default sort), cached until a write."""
        if self._vendor_order is None:
            self._vendor_order = sorted(
                self.vendors,
                key=lambda k: ((self.vendors[k].get("VendorName") or "").lower(), k),
            )
        return self._vendor_order

    # -- payment requests ------------------------------------------------------------------------
    def index_payment_request(self, pr: dict[str, Any], old_invoice: str | None = None) -> None:
        if old_invoice is not None:
            ids = self.pr_by_invoice.get(old_invoice.strip().upper())
            if ids and pr["ID"] in ids:
                ids.remove(pr["ID"])
        inv = (pr.get("InvoiceNumber") or "").strip().upper()
        if inv and pr["ID"] not in self.pr_by_invoice[inv]:
            self.pr_by_invoice[inv].append(pr["ID"])

    # -- expense ---------------------------------------------------------------------------------
    def add_report(self, report: dict[str, Any]) -> None:
        self.reports[report["ID"]] = report

    def add_entry(self, entry: dict[str, Any]) -> None:
        self.entries[entry["ID"]] = entry
        self.entries_by_report[entry["ReportID"]].append(entry["ID"])
        self.entry_by_expense_id[entry["ExpenseID"]] = entry["ID"]

    def add_allocation(self, alloc: dict[str, Any]) -> None:
        self.allocations[alloc["ID"]] = alloc
        self.allocs_by_entry[alloc["EntryID"]].append(alloc["ID"])
        self.allocs_by_report[alloc["ReportID"]].append(alloc["ID"])


class ConcurStore:
    """All Concur state of one sandbox; ``reset`` empties it, seeding refills it."""

    def __init__(self) -> None:
        self.settings = ConcurSettings()
        self.companies: dict[str, Company] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.events: list[dict[str, Any]] = []  # every event published, for inspection
        self.created: list[dict[str, Any]] = []  # what clients created through the APIs
        self.expired_answers = 0  # drives the "alternate" 401/403 mode
        self.windows: dict[tuple[str, str], Any] = {}  # (company|*, endpoint) -> RateWindow

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def company(self, company_id: str) -> Company | None:
        return self.companies.get(company_id)

    def record_created(self, kind: str, company_id: str | None, obj_id: str, **extra: Any) -> None:
        self.created.append({"kind": kind, "company_id": company_id, "id": obj_id, **extra})
