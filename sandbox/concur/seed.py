"""Deterministic demo data for the Concur half, plus the load-test generators.

The same RNG seed gives the same companies, employees, vendors and report/entry/allocation ids on
every reset+seed, so tests and docs can rely on them; only dates move with the sandbox clock (they
are relative to the seed day so "recent" polling windows find the data).

Some vendors deliberately share names with the Zoho seed (for linking), some exist only here, one
vendor code has two remit-to addresses (so ``VendorCode`` alone is ambiguous) and two vendor codes
share a name (so name matching is ambiguous).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sandbox.concur import config
from sandbox.concur.invoice import new_vendor
from sandbox.concur.store import (
    Company,
    ConcurStore,
    Employee,
    money,
    random_hex,
    random_v3_id,
)

USD_RATES = {
    "USD": Decimal("1"),
    "EUR": Decimal("1.08"),
    "GBP": Decimal("1.27"),
    "JPY": Decimal("0.0067"),
    "CAD": Decimal("0.73"),
    "CHF": Decimal("1.12"),
}

EXPENSE_TYPES = {
    "AIRFR": ("Airfare", "6110", "AIRFR"),
    "HOTEL": ("Hotel", "6120", "LODNG"),
    "MEALS": ("Meals", "6130", "MEALS"),
    "CARRT": ("Car Rental", "6140", "GRTRN"),
    "TAXIX": ("Taxi", "6150", "GRTRN"),
    "OFFSP": ("Office Supplies", "6200", "OFFSP"),
    "TELEC": ("Telephone", "6300", "COMMU"),
}

COST_CENTRES = [
    ("CC-100", "Sales"),
    ("CC-200", "Engineering"),
    ("CC-300", "Marketing"),
    ("CC-400", "Operations"),
]
PROJECTS = [("PRJ-ALPHA", "Project Alpha"), ("PRJ-BETA", "Project Beta")]

US_EMPLOYEES = [
    ("wsadmin@sandbox-us.example", "ADM001", "Web Services", "Admin", "USD", "US"),
    ("alice.chen@sandbox-us.example", "E1001", "Alice", "Chen", "USD", "US"),
    ("bob.martin@sandbox-us.example", "E1002", "Bob", "Martin", "USD", "US"),
    ("carla.rossi@sandbox-us.example", "E1003", "Carla", "Rossi", "EUR", "IT"),
    ("daisuke.sato@sandbox-us.example", "E1004", "Daisuke", "Sato", "JPY", "JP"),
]
EU_EMPLOYEES = [
    ("wsadmin@sandbox-eu.example", "ADM101", "Web Services", "Admin", "EUR", "DE"),
    ("greta.maier@sandbox-eu.example", "E2001", "Greta", "Maier", "EUR", "DE"),
    ("oliver.smith@sandbox-eu.example", "E2002", "Oliver", "Smith", "GBP", "GB"),
]

# (VendorCode, AddressCode, VendorName, Address1, City, State, PostalCode, CountryCode, Currency)
US_VENDORS = [
    # Same names as Zoho Books seed vendors (the connector links these).
    ("DELTA", "MAIN", "Delta Air Lines", "1030 Delta Blvd", "Atlanta", "GA", "30354", "US", "USD"),
    (
        "MARRIOTT",
        "MAIN",
        "Marriott International",
        "7750 Wisconsin Ave",
        "Bethesda",
        "MD",
        "20814",
        "US",
        "USD",
    ),
    (
        "HERTZ",
        "MAIN",
        "Hertz Corporation",
        "8501 Williams Rd",
        "Estero",
        "FL",
        "33928",
        "US",
        "USD",
    ),
    (
        "STAPLES",
        "MAIN",
        "Staples Business",
        "500 Staples Dr",
        "Framingham",
        "MA",
        "01702",
        "US",
        "USD",
    ),
    (
        "VERIZON",
        "MAIN",
        "Verizon Wireless",
        "1 Verizon Way",
        "Basking Ridge",
        "NJ",
        "07920",
        "US",
        "USD",
    ),
    # Near miss: Zoho says "Uber Technologies".
    (
        "UBER",
        "MAIN",
        "Uber Technologies, Inc.",
        "1515 3rd St",
        "San Francisco",
        "CA",
        "94158",
        "US",
        "USD",
    ),
    # Concur only.
    (
        "ACME001",
        "MAIN",
        "Acme Office Supplies",
        "100 Main St",
        "Springfield",
        "IL",
        "62701",
        "US",
        "USD",
    ),
    (
        "GLOBEX",
        "HQ",
        "Globex Corporation",
        "1 Globex Way",
        "Cypress Creek",
        "OR",
        "97401",
        "US",
        "USD",
    ),
    (
        "GLOBEX",
        "REMIT2",
        "Globex Corporation",
        "PO Box 42",
        "Cypress Creek",
        "OR",
        "97402",
        "US",
        "USD",
    ),
    (
        "HOOLI",
        "MAIN",
        "Hooli Cloud Services",
        "1 Hooli Plaza",
        "Palo Alto",
        "CA",
        "94301",
        "US",
        "USD",
    ),
    (
        "CYBERDYN",
        "MAIN",
        "Cyberdyne Systems",
        "18144 El Camino Real",
        "Sunnyvale",
        "CA",
        "94087",
        "US",
        "USD",
    ),
    (
        "VANDEL1",
        "MAIN",
        "Vandelay Industries",
        "129 W 81st St",
        "New York",
        "NY",
        "10024",
        "US",
        "USD",
    ),
    ("VANDEL2", "MAIN", "Vandelay Industries", "1 Latex Ave", "Newark", "NJ", "07102", "US", "USD"),
    (
        "TOKYOPRT",
        "MAIN",
        "Tokyo Print Co",
        "1-1 Marunouchi",
        "Tokyo",
        None,
        "100-0005",
        "JP",
        "JPY",
    ),
    ("EUROCAT", "MAIN", "EuroCater GmbH", "Hauptstr. 5", "Berlin", None, "10115", "DE", "EUR"),
]
EU_VENDORS = [
    (
        "LUFTHANSA",
        "MAIN",
        "Deutsche Lufthansa AG",
        "Venloer Str. 151",
        "Koeln",
        None,
        "50672",
        "DE",
        "EUR",
    ),
    (
        "DBAHN",
        "MAIN",
        "Deutsche Bahn AG",
        "Potsdamer Platz 2",
        "Berlin",
        None,
        "10785",
        "DE",
        "EUR",
    ),
    (
        "ACCOR",
        "MAIN",
        "Accor Hotels Europe",
        "82 Rue Henri Farman",
        "Issy",
        None,
        "92130",
        "FR",
        "EUR",
    ),
    ("EUROCAT", "MAIN", "EuroCater GmbH", "Hauptstr. 5", "Berlin", None, "10115", "DE", "EUR"),
    ("BRITRAIL", "MAIN", "BritRail Ltd", "1 Kings Cross", "London", None, "N1 9AP", "GB", "GBP"),
    (
        "KYIVSOFT",
        "MAIN",
        "Kyiv Software LLC",
        "1 Khreshchatyk St",
        "Kyiv",
        "Kyiv City",
        "01001",
        "UA",
        "EUR",
    ),
]

# Report plans for the US company: (owner index, approval, payment, n entries, split kind)
US_REPORTS = [
    (1, "A_APPR", "P_PROC", 3, "split3"),
    (1, "A_APPR", "P_PROC", 2, "none"),
    (2, "A_APPR", "P_PROC", 4, "split2"),
    (3, "A_APPR", "P_PROC", 3, "split3"),
    (4, "A_APPR", "P_PROC", 3, "none"),
    (2, "A_APPR", "P_PAID", 2, "none"),
    (3, "A_APPR", "P_PAID", 2, "split2"),
    (1, "A_PEND", "P_NOTP", 3, "split3"),
    (2, "A_PEND", "P_NOTP", 2, "none"),
    (4, "A_PEND", "P_NOTP", 2, "split3"),
    (3, "A_NOTF", "P_NOTP", 1, "none"),
    (0, "A_APPR", "P_PROC", 1, "none"),
]
EU_REPORTS = [
    (1, "A_APPR", "P_PROC", 3, "split3"),
    (2, "A_APPR", "P_PROC", 2, "none"),
    (1, "A_PEND", "P_NOTP", 2, "split2"),
]

DAY = 86400.0


def _list_field(code: str, value: str, label: str, seq: int, rng: random.Random) -> dict[str, Any]:
    return {
        "Type": "List",
        "Code": code,
        "ListItemID": "gWs"
        + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(16)),
        "Value": value,
        "Label": label,
        "Sequence": seq,
    }


def make_company(
    store: ConcurStore,
    company_id: str,
    name: str,
    geo: str,
    request_token: str,
    now: float,
    *,
    source: str = "seed",
    connected: bool = True,
) -> Company:
    company = Company(id=company_id, name=name, geo=geo, source=source, connected=connected)
    company.request_tokens[request_token] = now + config.REQUEST_TOKEN_TTL
    company.ledgers = {"DEFAULT", "SANDBOX"}
    store.companies[company.id] = company
    return company


def add_employees(company: Company, rows: Sequence[tuple[str, ...]], rng: random.Random) -> None:
    for login, emp_id, first, last, ccy, country in rows:
        company.add_employee(
            Employee(
                login_id=login,
                employee_id=emp_id,
                uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                first_name=first,
                last_name=last,
                email=login,
                currency=ccy,
                country=country,
            )
        )
    company.admin_login = rows[0][0]


def add_vendor_rows(company: Company, rows: list[tuple[Any, ...]], now: float, source: str) -> None:
    for code, addr, name, a1, city, state, postal, country, ccy in rows:
        fields = {
            "VendorCode": code,
            "AddressCode": addr,
            "VendorName": name,
            "Address1": a1,
            "City": city,
            "PostalCode": postal,
            "CountryCode": country,
            "Country": country,
            "CurrencyCode": ccy,
            "PaymentTerms": "30",
            "PaymentMethodType": "CHECK",
        }
        if state:
            fields["State"] = state
        new_vendor(company, fields, now, source)


def build_report(
    company: Company,
    rng: random.Random,
    owner: Employee,
    now: float,
    approval: str,
    payment: str,
    n_entries: int,
    split: str,
    age_days: float,
    name: str,
) -> dict[str, Any]:
    """One report with entries and allocations, amounts consistent across v3 and v4."""
    from sandbox.concur.expense import recompute_totals

    ccy = owner.currency
    created = now - age_days * DAY
    report: dict[str, Any] = {
        "ID": random_hex(rng, 20),
        "Name": name,
        "CurrencyCode": ccy,
        "Country": owner.country,
        "CountrySubdivision": None,
        "ApprovalStatusCode": approval,
        "PaymentStatusCode": payment,
        "LedgerName": "DEFAULT",
        "PolicyID": "gWmINGEAkQoa" + random_hex(rng, 16),
        "_owner": owner.login_id,
        "_created": created,
        "_user_defined": created - (created % DAY),
        "_modified": created + DAY,
        "_submitted": None,
        "_processing": None,
        "_paid": None,
        "_process": random_hex(rng, 32),
        "_number": "R" + str(rng.randint(1000000, 9999999)),
        "_version": 1,
    }
    if approval not in ("A_NOTF",):
        report["_submitted"] = created + 0.5 * DAY
    if approval == "A_APPR":
        report["_processing"] = created + 1.5 * DAY
        report["_modified"] = created + 1.5 * DAY
    if payment == "P_PAID":
        report["_paid"] = created + 2 * DAY
        report["_modified"] = created + 2 * DAY
    report["_modified"] = min(report["_modified"], now)
    company.add_report(report)

    foreign = [c for c in ("USD", "EUR", "JPY", "GBP") if c != ccy]
    for n in range(n_entries):
        type_code = rng.choice(list(EXPENSE_TYPES))
        type_name, account, spend = EXPENSE_TYPES[type_code]
        tx_ccy = ccy if n % 2 == 0 else rng.choice(foreign)
        if tx_ccy == "JPY":
            amount = Decimal(rng.randint(1500, 60000))
        else:
            amount = money(Decimal(rng.randint(1500, 90000)) / 100, tx_ccy)
        rate = (USD_RATES[tx_ccy] / USD_RATES[ccy]).quantize(Decimal("0.00000001"))
        posted = money(amount * rate, ccy)
        payment_type = "CBCP" if n % 3 == 1 else "CASH"
        personal = n == 2 and n_entries > 2
        entry = {
            "ID": random_v3_id(rng),
            "ExpenseID": random_hex(rng, 32),
            "ReportID": report["ID"],
            "ExpenseTypeCode": type_code,
            "ExpenseTypeName": type_name,
            "SpendCategoryCode": spend,
            "SpendCategoryName": type_name,
            "TransactionCurrencyCode": tx_ccy,
            "PaymentTypeID": payment_type,
            "IsPersonal": personal,
            "IsBillable": n == 0,
            "VendorDescription": rng.choice(
                [
                    "Delta Air Lines",
                    "Marriott International",
                    "Hertz Corporation",
                    "Starbucks",
                    "Uber Technologies",
                    "Staples Business",
                ]
            ),
            "LocationCountry": owner.country,
            "LocationName": rng.choice(["Chicago", "Berlin", "Tokyo", "London", "Seattle"]),
            "Description": f"{type_name} #{n + 1}",
            "AllocationType": "N",
            "_amount": amount,
            "_rate": rate,
            "_posted": posted,
            "_approved": Decimal(0) if personal else posted,
            "_date": created - (n + 1) * DAY,
            "_modified": report["_modified"],
            "_allocation_set": random_hex(rng, 32),
        }
        company.add_entry(entry)
        if split == "split3" and not personal:
            shares = [Decimal("33.33"), Decimal("33.33"), Decimal("33.34")]
            centres = COST_CENTRES[:3]
        elif split == "split2" and not personal:
            shares = [Decimal("50"), Decimal("50")]
            centres = [COST_CENTRES[1], COST_CENTRES[3]]
        else:
            shares = [Decimal("100")]
            centres = [COST_CENTRES[sum(map(ord, owner.employee_id)) % 4]]
        if len(shares) > 1:
            entry["AllocationType"] = "F"
        for share, (cc_code, cc_name) in zip(shares, centres, strict=True):
            alloc = {
                "ID": random_v3_id(rng),
                "AllocationID": random_hex(rng, 32),
                "EntryID": entry["ID"],
                "ReportID": report["ID"],
                "_percentage": share,
                "IsPercentEdited": len(shares) > 1,
                "IsHidden": len(shares) == 1,
                "AccountNumber": account,
                "Custom1": _list_field(cc_code, cc_name, "Cost Center", 1, rng),
            }
            if len(shares) > 1 and n == 0:
                p_code, p_name = PROJECTS[0]
                alloc["Custom2"] = _list_field(p_code, p_name, "Project", 2, rng)
            company.add_allocation(alloc)
    recompute_totals(company, report)
    return report


def _seed_reports(
    company: Company, plans: list[tuple[Any, ...]], rng: random.Random, now: float
) -> None:
    owners = list(company.employees.values())
    for i, (owner_idx, approval, payment, n_entries, split) in enumerate(plans):
        owner = owners[owner_idx]
        build_report(
            company,
            rng,
            owner,
            now,
            approval,
            payment,
            n_entries,
            split,
            age_days=30 - i * 2,
            name=f"{owner.first_name} trip {i + 1}",
        )


def seed(store: ConcurStore, now: float) -> None:
    """Load the two seeded companies (us2 and eu2)."""
    rng = random.Random(20250601)
    day = now - (now % DAY)
    us = make_company(
        store,
        config.SEED_US_COMPANY_ID,
        "Sandbox Travel Co (US)",
        "us2",
        config.SEED_US_REQUEST_TOKEN,
        now,
    )
    add_employees(us, US_EMPLOYEES, rng)
    add_vendor_rows(us, US_VENDORS, day - 60 * DAY, "seed")
    _seed_reports(us, US_REPORTS, rng, now)

    eu = make_company(
        store,
        config.SEED_EU_COMPANY_ID,
        "Sandbox Handels GmbH (EU)",
        "eu2",
        config.SEED_EU_REQUEST_TOKEN,
        now,
    )
    add_employees(eu, EU_EMPLOYEES, rng)
    add_vendor_rows(eu, EU_VENDORS, day - 60 * DAY, "seed")
    _seed_reports(eu, EU_REPORTS, rng, now)


# ------------------------------------------------------------------------------------------------
# generators (load tests)
# ------------------------------------------------------------------------------------------------


def _target(store: ConcurStore, company_id: str | None) -> Company:
    company = store.company(company_id or config.SEED_US_COMPANY_ID)
    if company is None:
        raise KeyError(f"unknown Concur company {company_id!r}")
    return company


def generate_reports(
    store: ConcurStore,
    now: float,
    n: int,
    *,
    company_id: str | None = None,
    approval: str = "A_APPR",
    payment: str = "P_PROC",
    entries: int = 3,
    seed: int | None = None,
) -> dict[str, Any]:
    """N approved (by default) reports spread over the company's employees."""
    company = _target(store, company_id)
    rng = random.Random(seed if seed is not None else len(company.reports))
    owners = [e for e in company.employees.values() if e.login_id != company.admin_login]
    ids = []
    splits = ("none", "split3", "split2")
    for i in range(int(n)):
        owner = owners[i % len(owners)]
        r = build_report(
            company,
            rng,
            owner,
            now,
            approval,
            payment,
            int(entries),
            splits[i % 3],
            age_days=rng.uniform(1, 20),
            name=f"Generated report {len(company.reports) + 1}",
        )
        ids.append(r["ID"])
    return {"vendor": "concur", "company_id": company.id, "created": len(ids), "ids": ids[:10]}


def generate_vendors(
    store: ConcurStore,
    now: float,
    n: int,
    *,
    company_id: str | None = None,
    prefix: str = "GEN",
) -> dict[str, Any]:
    company = _target(store, company_id)
    start = len(company.vendors)
    made = 0
    i = start
    while made < int(n):
        i += 1
        code = f"{prefix}{i:06d}"
        if company.vendor_key(code, "MAIN") in company.vendors:
            continue
        new_vendor(
            company,
            {
                "VendorCode": code,
                "AddressCode": "MAIN",
                "VendorName": f"Generated Vendor {i:06d}",
                "Address1": f"{i} Load Test Ave",
                "City": "Springfield",
                "State": "IL",
                "PostalCode": f"{62000 + i % 1000:05d}",
                "CountryCode": "US",
                "CurrencyCode": "USD",
                "PaymentMethodType": "CHECK",
            },
            now,
            "generator",
        )
        made += 1
    return {"vendor": "concur", "company_id": company.id, "created": made}
