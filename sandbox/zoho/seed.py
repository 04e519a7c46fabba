"""Deterministic demo tenants and fast bulk generators for load tests.

All content comes from a fixed random seed and a fixed anchor date so two seeds give the same
ids, names and amounts; only records created after seeding carry the live sandbox clock.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sandbox.zoho.records import build_bill, build_contact, build_invoice, fmt_time
from sandbox.zoho.store import Org, Rec, User

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandbox.zoho.store import ZohoStore

SEED = 20250602
ANCHOR = date(2025, 6, 2)
ANCHOR_TS = 1748854800.0  # 2025-06-02T09:00:00Z

MAIN_ORG_ID = "10234695"
LABS_ORG_ID = "10234696"
EU_ORG_ID = "20071544"
IN_ORG_ID = "60012345"

MAIN_USER = "finance@acme.example"
EU_USER = "finanz@acme.example"
IN_USER = "accounts@acme.example"

CURRENCIES = {
    "USD": ("US Dollar", "$", 2),
    "EUR": ("Euro", "€", 2),
    "GBP": ("Pound Sterling", "£", 2),
    "JPY": ("Japanese Yen", "¥", 0),
    "INR": ("Indian Rupee", "₹", 2),
}
RATES_TO_USD = {"USD": 1.0, "EUR": 1.085, "GBP": 1.27, "JPY": 0.0064, "INR": 0.012}

ACCOUNTS = [
    ("Accounts Payable", "2000", "accounts_payable"),
    ("Accounts Receivable", "1200", "accounts_receivable"),
    ("Petty Cash", "1010", "cash"),
    ("Undeposited Funds", "1020", "cash"),
    ("Business Checking", "1000", "bank"),
    ("EUR Operating Account", "1005", "bank"),
    ("Corporate Card", "2100", "credit_card"),
    ("Employee Reimbursements", "2200", "other_current_liability"),
    ("Accrued Liabilities", "2300", "other_current_liability"),
    ("Notes Payable", "2700", "long_term_liability"),
    ("Owner's Equity", "3000", "equity"),
    ("Retained Earnings", "3100", "equity"),
    ("Sales", "4000", "income"),
    ("Consulting Income", "4100", "income"),
    ("Cost of Goods Sold", "5000", "cost_of_goods_sold"),
    ("Travel Expense", "6100", "expense"),
    ("Airfare", "6110", "expense"),
    ("Lodging", "6120", "expense"),
    ("Meals and Entertainment", "6130", "expense"),
    ("Ground Transportation", "6140", "expense"),
    ("Mileage", "6150", "expense"),
    ("Office Supplies", "6200", "expense"),
    ("Telephone Expense", "6300", "expense"),
    ("IT and Internet Expenses", "6400", "expense"),
    ("Advertising And Marketing", "6500", "expense"),
    ("Consultant Expense", "6600", "expense"),
    ("Rent Expense", "6700", "expense"),
    ("Exchange Gain or Loss", "7900", "other_expense"),
    ("Legacy Travel (do not use)", "6199", "expense"),  # inactive on purpose
]
INACTIVE_ACCOUNTS = {"Legacy Travel (do not use)"}

TAGS = {
    "Cost Center": ["Sales", "Engineering", "Marketing", "Finance", "Operations", "Legacy"],
    "Region": ["North America", "Europe", "APAC"],
}
INACTIVE_OPTIONS = {"Legacy"}

VENDORS = [
    ("Delta Air Lines", "USD", 30, "Airfare"),
    ("Marriott International", "USD", 30, "Lodging"),
    ("Hertz Corporation", "USD", 15, "Ground Transportation"),
    ("Uber Technologies", "USD", 0, "Ground Transportation"),
    ("Staples Business", "USD", 30, "Office Supplies"),
    ("Amazon Business", "USD", 15, "Office Supplies"),
    ("Verizon Wireless", "USD", 30, "Telephone Expense"),
    ("WeWork Companies", "USD", 30, "Rent Expense"),
    ("Deutsche Lufthansa AG", "EUR", 30, "Airfare"),
    ("Accor Hotels Europe", "EUR", 30, "Lodging"),
    ("Deutsche Bahn AG", "EUR", 15, "Ground Transportation"),
    ("Brightline Consulting GmbH", "EUR", 45, "Consultant Expense"),
]
CUSTOMERS = [
    ("Globex Corporation", "USD", 30),
    ("Initech LLC", "USD", 15),
    ("Umbrella Health Inc", "USD", 30),
    ("Soylent Nahrungsmittel GmbH", "EUR", 30),
    ("Stark Industrie Europa", "EUR", 45),
    ("Wayne Enterprises", "USD", 60),
]


def _org(
    store: ZohoStore,
    org_id: str,
    dc: str,
    name: str,
    base: str,
    extra: list[str],
    *,
    prefix: str,
    tz: str,
    plan: str = "PROFESSIONAL",
    contact: str,
    email: str,
    is_default: bool = False,
) -> Org:
    org = Org(
        organization_id=org_id,
        dc=dc,
        data={},
        id_prefix=prefix,
        time_zone=tz,
        plan=plan,
    )
    created = fmt_time(ANCHOR_TS - 400 * 86400, tz)
    for code in [base, *extra]:
        cid = org.next_id()
        cname, symbol, precision = CURRENCIES[code]
        rate = 1.0 if code == base else round(RATES_TO_USD[code] / RATES_TO_USD[base], 6)
        org.currencies[cid] = {
            "currency_id": cid,
            "currency_code": code,
            "currency_name": f"{code}- {cname}",
            "currency_symbol": symbol,
            "price_precision": precision,
            "currency_format": "1,234,567.89" if precision else "1,234,567",
            "is_base_currency": code == base,
            "exchange_rate": rate,
            "effective_date": ANCHOR.isoformat(),
        }
        if code == base:
            org.base_currency_id = cid
    bc = org.base_currency()
    org.data = {
        "organization_id": org_id,
        "name": name,
        "contact_name": contact,
        "email": email,
        "is_default_org": is_default,
        "plan_type": 1,
        "plan_name": plan,
        "plan_period": "yearly",
        "tax_group_enabled": True,
        "language_code": "en",
        "date_format": "yyyy-MM-dd",
        "field_separator": "-",
        "fiscal_year_start_month": 0,
        "account_created_date": (ANCHOR - timedelta(days=400)).isoformat(),
        "time_zone": tz,
        "is_org_active": True,
        "currency_id": bc["currency_id"],
        "currency_code": bc["currency_code"],
        "currency_symbol": bc["currency_symbol"],
        "currency_format": bc["currency_format"],
        "price_precision": bc["price_precision"],
        "country": {"us": "U.S.A", "eu": "Germany", "in": "India"}.get(dc, ""),
        "version": {"us": "us", "eu": "eu", "in": "in"}.get(dc, "global"),
    }
    for acc_name, code, acc_type in ACCOUNTS:
        aid = org.next_id()
        org.accounts[aid] = {
            "account_id": aid,
            "account_name": acc_name,
            "account_code": code,
            "account_type": acc_type,
            "description": "",
            "is_user_created": acc_type in ("expense", "bank"),
            "is_system_account": acc_type in ("accounts_payable", "accounts_receivable"),
            "is_standalone_account": False,
            "is_active": acc_name not in INACTIVE_ACCOUNTS,
            "can_show_in_ze": False,
            "is_involved_in_transaction": False,
            "current_balance": 0.0,
            "currency_id": bc["currency_id"],
            "currency_code": bc["currency_code"],
            "parent_account_id": "",
            "parent_account_name": "",
            "depth": 0,
            "has_attachment": False,
            "is_child_present": False,
            "child_count": "",
            "documents": [],
            "created_time": created,
            "last_modified_time": created,
        }
    for tag_name, options in TAGS.items():
        tid = org.next_id()
        tag_options = []
        for opt in options:
            oid = org.next_id()
            option = {
                "option_id": oid,
                "option_name": opt,
                "is_active": opt not in INACTIVE_OPTIONS,
                "is_default": False,
                "tag_id": tid,
            }
            org.tag_options[oid] = option
            tag_options.append(option)
        org.tags[tid] = {
            "tag_id": tid,
            "tag_name": tag_name,
            "description": f"{tag_name} used for management reporting",
            "is_active": True,
            "is_mandatory": False,
            "options": tag_options,
        }
    return store.add_org(org)


def account_id(org: Org, name: str) -> str:
    return next(a["account_id"] for a in org.accounts.values() if a["account_name"] == name)


def currency_id(org: Org, code: str) -> str:
    return next(c["currency_id"] for c in org.currencies.values() if c["currency_code"] == code)


def tag_option(org: Org, tag_name: str, option_name: str) -> dict[str, str]:
    tag = next(t for t in org.tags.values() if t["tag_name"] == tag_name)
    opt = next(o for o in tag["options"] if o["option_name"] == option_name)
    return {"tag_id": tag["tag_id"], "tag_option_id": opt["option_id"]}


def _contact(
    store: ZohoStore, org: Org, name: str, ctype: str, code: str, terms: int, ts: float, n: int
) -> str:
    cid = org.next_id()
    slug = "".join(ch for ch in name.lower() if ch.isalnum())[:16]
    first, last = ("Alex", "Morgan") if n % 2 else ("Sam", "Lee")
    body = {
        "contact_name": name,
        "company_name": name,
        "contact_type": ctype,
        "currency_id": currency_id(org, code),
        "payment_terms": terms,
        "contact_number": f"{'V' if ctype == 'vendor' else 'C'}-{n:05d}",
        "billing_address": {
            "attention": f"{first} {last}",
            "address": f"{100 + n} Market St",
            "city": "Springfield",
            "zip": f"{10000 + n}",
            "country": "U.S.A",
        },
        "contact_persons": [
            {
                "first_name": first,
                "last_name": last,
                "email": f"ap@{slug}.example",
                "is_primary_contact": True,
            }
        ],
    }
    data = build_contact(org, cid, body, fmt_time(ts, org.time_zone))
    store.put_record(org, "contacts", data, ts=ts)
    return cid


def _seed_org_records(
    store: ZohoStore,
    org: Org,
    rng: random.Random,
    vendors: list[tuple[str, str, int, str]],
    customers: list[tuple[str, str, int]],
    n_bills: int,
    n_invoices: int,
    bill_prefix: str,
    inv_prefix: str,
) -> None:
    t0 = ANCHOR_TS - 60 * 86400
    vendor_ids = []
    for i, (name, code, terms, acc) in enumerate(vendors):
        cid = _contact(store, org, name, "vendor", code, terms, t0 + i * 600, i + 1)
        vendor_ids.append((cid, acc))
    customer_ids = []
    for i, (name, code, terms) in enumerate(customers):
        cid = _contact(store, org, name, "customer", code, terms, t0 + 9000 + i * 600, 100 + i)
        customer_ids.append(cid)
    cost_centres = [o for o in TAGS["Cost Center"] if o not in INACTIVE_OPTIONS]
    for i in range(n_bills):
        vid, acc = vendor_ids[i % len(vendor_ids)]
        day = ANCHOR - timedelta(days=50 - i)
        ts = ANCHOR_TS - (50 - i) * 86400 + rng.randint(0, 20000)
        status = rng.choice(["open", "open", "open", "paid", "overdue", "draft"])
        lines = [
            {
                "account_id": account_id(org, acc),
                "description": f"{acc} {day:%b %d}",
                "rate": round(rng.uniform(40, 2400), 2),
                "quantity": rng.choice([1, 1, 1, 2, 3]),
                "tags": [tag_option(org, "Cost Center", rng.choice(cost_centres))],
            }
            for _ in range(rng.choice([1, 1, 2, 3]))
        ]
        bid = org.next_id()
        data = build_bill(
            org,
            bid,
            {
                "vendor_id": vid,
                "bill_number": f"{bill_prefix}-{1001 + i}",
                "date": day.isoformat(),
                "due_date": (day + timedelta(days=30)).isoformat(),
                "status": status,
                "reference_number": f"PO-{7000 + i}",
                "line_items": lines,
            },
            fmt_time(ts, org.time_zone),
        )
        store.put_record(org, "bills", data, ts=ts)
    for i in range(n_invoices):
        cid = customer_ids[i % len(customer_ids)]
        day = ANCHOR - timedelta(days=45 - 2 * i)
        ts = ANCHOR_TS - (45 - 2 * i) * 86400 + rng.randint(0, 20000)
        status = rng.choice(["sent", "sent", "paid", "overdue", "draft", "partially_paid"])
        lines = [
            {
                "account_id": account_id(org, "Consulting Income"),
                "name": rng.choice(["Implementation services", "Support retainer", "Training"]),
                "rate": round(rng.uniform(500, 9000), 2),
                "quantity": rng.choice([1, 2, 5, 10]),
            }
        ]
        iid = org.next_id()
        data = build_invoice(
            org,
            iid,
            {
                "customer_id": cid,
                "invoice_number": f"{inv_prefix}-{i + 1:05d}",
                "date": day.isoformat(),
                "due_date": (day + timedelta(days=30)).isoformat(),
                "status": status,
                "line_items": lines,
            },
            fmt_time(ts, org.time_zone),
        )
        store.put_record(org, "invoices", data, ts=ts)


def load_demo(store: ZohoStore) -> None:
    """The demo tenants: a two-org US user, an EU user and an India user."""
    rng = random.Random(SEED)
    main = _org(
        store,
        MAIN_ORG_ID,
        "us",
        "Acme Corporation",
        "USD",
        ["EUR", "GBP", "JPY"],
        prefix="4600000",
        tz="America/Los_Angeles",
        plan="PREMIUM",
        contact="Dana Whitfield",
        email=MAIN_USER,
        is_default=True,
    )
    labs = _org(
        store,
        LABS_ORG_ID,
        "us",
        "Acme Labs LLC",
        "USD",
        ["EUR"],
        prefix="4610000",
        tz="America/New_York",
        contact="Dana Whitfield",
        email=MAIN_USER,
    )
    eu = _org(
        store,
        EU_ORG_ID,
        "eu",
        "Acme Europe GmbH",
        "EUR",
        ["USD", "GBP"],
        prefix="2010000",
        tz="Europe/Berlin",
        contact="Jonas Keller",
        email=EU_USER,
        is_default=True,
    )
    ind = _org(
        store,
        IN_ORG_ID,
        "in",
        "Acme India Pvt Ltd",
        "INR",
        ["USD"],
        prefix="6010000",
        tz="Asia/Kolkata",
        plan="STANDARD",
        contact="Priya Raman",
        email=IN_USER,
        is_default=True,
    )
    store.add_user(
        User(
            "zoho-user-1",
            MAIN_USER,
            "Dana Whitfield",
            "us",
            [main.organization_id, labs.organization_id],
        )
    )
    store.add_user(User("zoho-user-2", EU_USER, "Jonas Keller", "eu", [eu.organization_id]))
    store.add_user(User("zoho-user-3", IN_USER, "Priya Raman", "in", [ind.organization_id]))

    _seed_org_records(store, main, rng, VENDORS, CUSTOMERS, 30, 20, "BILL", "INV")
    _seed_org_records(store, labs, rng, VENDORS[:4], CUSTOMERS[:2], 5, 3, "LB", "LAB")
    eu_vendors = [(n, "EUR", t, a) for n, _, t, a in VENDORS[8:12]] + [VENDORS[0]]
    eu_customers = [(n, "EUR", t) for n, _, t in CUSTOMERS[3:5]]
    _seed_org_records(store, eu, rng, eu_vendors, eu_customers, 6, 4, "EB", "EU")
    in_vendors = [(n, "INR", t, a) for n, _, t, a in VENDORS[:4]]
    in_customers = [(n, "INR", t) for n, _, t in CUSTOMERS[:2]]
    _seed_org_records(store, ind, rng, in_vendors, in_customers, 4, 3, "IB", "IN")

    # A few manual journals so list/get have something to show before the connector posts.
    for i in range(3):
        ts = ANCHOR_TS - (10 - i) * 86400
        _seed_journal(store, main, i, ts)


def _seed_journal(store: ZohoStore, org: Org, i: int, ts: float) -> None:
    from sandbox.zoho.journals import build_journal

    amount = 250.0 * (i + 1)
    body = {
        "journal_date": (ANCHOR - timedelta(days=10 - i)).isoformat(),
        "reference_number": f"ADJ-{100 + i}",
        "notes": "Month-end accrual",
        "line_items": [
            {
                "account_id": account_id(org, "Rent Expense"),
                "debit_or_credit": "debit",
                "amount": amount,
                "tags": [tag_option(org, "Cost Center", "Operations")],
            },
            {
                "account_id": account_id(org, "Accrued Liabilities"),
                "debit_or_credit": "credit",
                "amount": amount,
            },
        ],
    }
    store.put_record(org, "journals", build_journal(store, org, body, ts), ts=ts)


def fire_seed_webhooks(store: ZohoStore) -> int:
    """After a seed, announce every seeded bill, invoice and vendor to configured webhooks."""
    from sandbox.zoho.webhooks import fire

    sent = 0
    for org_id in list(store.webhooks):
        org = store.orgs.get(org_id)
        if org is None:
            continue
        for rec in org.contacts.values():
            sent += fire(store, org, "contact", rec.data, "created")
        for rec in org.bills.values():
            sent += fire(store, org, "bill", rec.data, "created")
        for rec in org.invoices.values():
            sent += fire(store, org, "invoice", rec.data, "created")
    return sent


# --- generators ---------------------------------------------------------------------------


def generator(store: ZohoStore, kind: str) -> Callable[..., dict[str, Any]]:
    """A generator for ``kind`` bound to ``store``: fn(n, organization_id=..., webhooks=False)."""

    def run(
        n: int, organization_id: str | None = None, webhooks: bool = False, **_: Any
    ) -> dict[str, Any]:
        org = store.orgs.get(organization_id or MAIN_ORG_ID)
        if org is None:
            raise KeyError(f"unknown organization {organization_id!r}")
        return GENERATORS[kind](store, org, int(n), bool(webhooks))

    return run


def _gen_vendors(store: ZohoStore, org: Org, n: int, webhooks: bool) -> dict[str, Any]:
    from sandbox.zoho.webhooks import fire

    ts = store.now()
    created = org.time(ts)
    base = org.base_currency_id
    start = len(org.contacts)
    ids = []
    for i in range(n):
        cid = org.next_id()
        name = f"Load Vendor {start + i + 1:06d}"
        data = build_contact(
            org,
            cid,
            {
                "contact_name": name,
                "company_name": name,
                "contact_type": "vendor",
                "currency_id": base,
                "payment_terms": 30,
            },
            created,
        )
        store.put_record(org, "contacts", data, ts=ts)
        ids.append(cid)
        if webhooks:
            fire(store, org, "contact", data, "created")
    return {
        "vendor": "zoho",
        "organization_id": org.organization_id,
        "created": n,
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
    }


def _gen_docs(store: ZohoStore, org: Org, n: int, webhooks: bool, resource: str) -> dict[str, Any]:
    from sandbox.zoho.webhooks import fire

    rng = random.Random(SEED + n + len(org.collection(resource)))
    ctype = "vendor" if resource == "bills" else "customer"
    parties = [r.data for r in org.contacts.values() if r.data["contact_type"] == ctype]
    if not parties and ctype == "vendor":
        _gen_vendors(store, org, 5, False)
        parties = [r.data for r in org.contacts.values() if r.data["contact_type"] == ctype]
    if not parties:
        raise ValueError(f"organization {org.organization_id} has no {ctype}s")
    expense = [
        a
        for a in org.accounts.values()
        if a["account_type"] == ("expense" if ctype == "vendor" else "income") and a["is_active"]
    ]
    ts = store.now()
    created = org.time(ts)
    today = date.fromtimestamp(ts).isoformat()
    start = len(org.collection(resource))
    first = last = None
    entity = "bill" if resource == "bills" else "invoice"
    for i in range(n):
        party = parties[i % len(parties)]
        rid = org.next_id()
        lines = [
            {
                "account_id": expense[(start + i) % len(expense)]["account_id"],
                "description": "Generated line",
                "rate": round(rng.uniform(10, 5000), 2),
                "quantity": 1,
            }
        ]
        if resource == "bills":
            fields = {
                "vendor_id": party["contact_id"],
                "bill_number": f"GEN-{start + i + 1:07d}",
                "date": today,
                "status": "open",
                "line_items": lines,
            }
            data = build_bill(org, rid, fields, created)
        else:
            fields = {
                "customer_id": party["contact_id"],
                "invoice_number": f"GI-{start + i + 1:07d}",
                "date": today,
                "status": "sent",
                "line_items": lines,
            }
            data = build_invoice(org, rid, fields, created)
        org.collection(resource)[rid] = Rec(data, ts, ts)
        first = first or rid
        last = rid
        if webhooks:
            fire(store, org, entity, data, "created")
    org.touch(resource)
    return {
        "vendor": "zoho",
        "organization_id": org.organization_id,
        "created": n,
        "first_id": first,
        "last_id": last,
    }


GENERATORS: dict[str, Callable[[ZohoStore, Org, int, bool], dict[str, Any]]] = {
    "vendors": _gen_vendors,
    "bills": lambda s, o, n, w: _gen_docs(s, o, n, w, "bills"),
    "invoices": lambda s, o, n, w: _gen_docs(s, o, n, w, "invoices"),
}
