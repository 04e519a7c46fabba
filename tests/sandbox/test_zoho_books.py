"""Zoho Books v3 resources: envelope, auth, organizations, pagination, lists, contacts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

from sandbox.zoho.seed import EU_ORG_ID as EU_ORG
from sandbox.zoho.seed import IN_ORG_ID as IN_ORG
from sandbox.zoho.seed import LABS_ORG_ID as LABS_ORG
from sandbox.zoho.seed import MAIN_ORG_ID as MAIN_ORG

if TYPE_CHECKING:
    from sandbox.admin import AdminClient
    from tests.sandbox.conftest import Zoho


def _unauthorized(r: requests.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json() == {"code": 57, "message": "You are not authorized to perform this operation"}


def test_organizations_lists_both_orgs_of_the_user(zoho: Zoho) -> None:
    r = zoho.get("/organizations", org=None)
    body = r.json()
    assert r.status_code == 200 and body["code"] == 0 and body["message"] == "success"
    orgs = {o["organization_id"]: o for o in body["organizations"]}
    assert set(orgs) == {MAIN_ORG, LABS_ORG}
    main = orgs[MAIN_ORG]
    assert main["currency_code"] == "USD" and main["is_default_org"] is True
    assert main["plan_name"] and main["price_precision"] == 2
    one = zoho.get(f"/organizations/{LABS_ORG}", org=None).json()
    assert one["organization"]["name"] == "Acme Labs LLC"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer x"},
        {"Authorization": "Zoho-oauthtoken 1000.nope.nope"},
        {"Authorization": ""},
    ],
)
def test_bad_tokens_get_401_code_57(zoho: Zoho, headers: dict[str, str]) -> None:
    r = requests.get(
        zoho.books_url("/bills"), params={"organization_id": MAIN_ORG}, headers=headers
    )
    _unauthorized(r)


def test_bearer_scheme_with_a_good_token_is_refused(zoho: Zoho) -> None:
    r = requests.get(
        zoho.books_url("/organizations"), headers={"Authorization": f"Bearer {zoho.access_token}"}
    )
    _unauthorized(r)


def test_organization_id_is_required_and_must_be_visible(zoho: Zoho) -> None:
    _unauthorized(zoho.get("/bills", org=None))
    _unauthorized(zoho.get("/bills", org="99999999"))
    _unauthorized(zoho.get("/bills", org=EU_ORG))  # exists, other user and other DC
    _unauthorized(zoho.get(f"/organizations/{IN_ORG}", org=None))
    assert zoho.get("/bills", org=LABS_ORG).status_code == 200


def test_wrong_data_centre_api_rejects_the_token(zoho: Zoho) -> None:
    _unauthorized(zoho.get("/organizations", org=None, dc="eu"))
    _unauthorized(zoho.get("/bills", dc="in"))


def test_scopes_are_enforced(zoho_anon: Zoho) -> None:
    z = zoho_anon.login(scope="ZohoBooks.contacts.READ,ZohoBooks.settings.READ")
    assert z.get("/contacts").status_code == 200
    assert z.get("/settings/currencies").status_code == 200
    _unauthorized(z.get("/journals"))
    _unauthorized(z.post("/contacts", json={"contact_name": "X"}))
    z2 = type(zoho_anon)(zoho_anon.base).login(scope="ZohoBooks.accountants.ALL")
    assert z2.get("/journals").status_code == 200
    _unauthorized(z2.get("/bills"))


def test_unknown_url_and_method(zoho: Zoho) -> None:
    r = zoho.get("/nosuchthing")
    assert r.status_code == 404 and r.json()["code"] == 5
    r = zoho.call("PATCH", "/journals")
    assert r.status_code == 405 and r.json()["code"] != 0


def test_pagination_walks_every_bill_once(zoho: Zoho) -> None:
    seen: list[str] = []
    page = 1
    while True:
        body = zoho.get("/bills", params={"page": page, "per_page": 7}).json()
        assert body["page_context"]["page"] == page and body["page_context"]["per_page"] == 7
        seen += [b["bill_id"] for b in body["bills"]]
        if not body["page_context"]["has_more_page"]:
            break
        page += 1
    assert len(seen) == len(set(seen)) == 30
    default = zoho.get("/bills").json()
    assert (
        default["page_context"]["per_page"] == 200 and not default["page_context"]["has_more_page"]
    )


@pytest.mark.parametrize(
    "params",
    [{"per_page": 201}, {"per_page": 0}, {"page": 0}, {"page": "x"}, {"sort_column": "nope"}],
)
def test_bad_paging_parameters_are_400(zoho: Zoho, params: dict[str, object]) -> None:
    r = zoho.get("/invoices", params=params)
    assert r.status_code == 400 and r.json()["code"] == 2


def test_bill_list_and_get_fields(zoho: Zoho) -> None:
    bills = zoho.get("/bills").json()["bills"]
    first = bills[0]
    for key in (
        "bill_id",
        "vendor_id",
        "vendor_name",
        "status",
        "bill_number",
        "date",
        "due_date",
        "currency_id",
        "currency_code",
        "exchange_rate",
        "total",
        "balance",
        "created_time",
        "last_modified_time",
    ):
        assert key in first
    assert "line_items" not in first
    assert {b["currency_code"] for b in bills} == {"USD", "EUR"}
    full = zoho.get(f"/bills/{first['bill_id']}").json()
    assert full["code"] == 0
    bill = full["bill"]
    assert bill["line_items"] and bill["line_items"][0]["account_id"]
    assert bill["line_items"][0]["tags"][0]["tag_name"] == "Cost Center"
    assert bill["total"] == first["total"]


def test_missing_records_are_1002(zoho: Zoho) -> None:
    for path, entity in (
        ("/bills/1", "Bill"),
        ("/invoices/1", "Invoice"),
        ("/contacts/1", "Contact"),
        ("/journals/1", "Journal"),
    ):
        r = zoho.get(path)
        assert r.status_code == 404
        assert r.json() == {"code": 1002, "message": f"{entity} does not exist."}


def test_invoice_list_and_get(zoho: Zoho) -> None:
    body = zoho.get("/invoices", params={"sort_column": "invoice_number", "sort_order": "A"}).json()
    numbers = [i["invoice_number"] for i in body["invoices"]]
    assert numbers == sorted(numbers) and len(numbers) == 20
    inv = zoho.get(f"/invoices/{body['invoices'][0]['invoice_id']}").json()["invoice"]
    assert inv["customer_name"] and inv["line_items"]
    paid = zoho.get("/invoices", params={"status": "paid"}).json()["invoices"]
    assert paid and all(i["status"] == "paid" for i in paid)
    drafts = zoho.get("/invoices", params={"filter_by": "Status.Draft"}).json()["invoices"]
    assert all(i["status"] == "draft" for i in drafts)
    one = zoho.get("/invoices", params={"invoice_number": "INV-00003"}).json()["invoices"]
    assert [i["invoice_number"] for i in one] == ["INV-00003"]


@pytest.mark.parametrize(
    "fmt", ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S+00:00", "%Y-%m-%dT%H:%M:%SZ"]
)
def test_last_modified_time_filter_after_an_edit(zoho: Zoho, admin: AdminClient, fmt: str) -> None:
    from datetime import UTC, datetime

    all_bills = zoho.get("/bills").json()["bills"]
    admin.advance_clock(5)
    cutoff = admin._call("GET", "/clock")["now"]
    edited = admin.zoho_edit(MAIN_ORG, "bill", all_bills[3]["bill_id"], amount=999.99)
    since = datetime.fromtimestamp(int(cutoff), UTC).strftime(fmt)
    for resource, key in (("/bills", "bills"),):
        got = zoho.get(resource, params={"last_modified_time": since}).json()[key]
        assert [b["bill_id"] for b in got] == [edited["bill_id"]]
        assert got[0]["total"] == 999.99


def test_last_modified_time_bad_value_is_400(zoho: Zoho) -> None:
    r = zoho.get("/bills", params={"last_modified_time": "yesterday"})
    assert r.status_code == 400 and r.json()["code"] == 2


def test_bill_filters(zoho: Zoho) -> None:
    bills = zoho.get("/bills").json()["bills"]
    vendor = bills[0]["vendor_id"]
    mine = zoho.get("/bills", params={"vendor_id": vendor}).json()["bills"]
    assert mine and all(b["vendor_id"] == vendor for b in mine)
    prefix = zoho.get("/bills", params={"bill_number_startswith": "BILL-100"}).json()["bills"]
    assert {b["bill_number"] for b in prefix} == {f"BILL-100{i}" for i in range(1, 10)}
    dated = zoho.get("/bills", params={"date_after": "2025-04-30"}).json()["bills"]
    assert dated and all(b["date"] > "2025-04-30" for b in dated)


def test_contacts_vendor_filter(zoho: Zoho) -> None:
    vendors = zoho.get("/contacts", params={"contact_type": "vendor"}).json()["contacts"]
    assert len(vendors) == 12 and all(v["contact_type"] == "vendor" for v in vendors)
    assert {v["currency_code"] for v in vendors} == {"USD", "EUR"}
    customers = zoho.get("/contacts", params={"contact_type": "customer"}).json()["contacts"]
    assert len(customers) == 6
    by_name = zoho.get("/contacts", params={"contact_name": "Delta Air Lines"}).json()["contacts"]
    assert len(by_name) == 1 and by_name[0]["email"] == "ap@deltaairlines.example"


def test_create_contact_json_and_update(zoho: Zoho, admin: AdminClient) -> None:
    eur = zoho.lookup()["currencies"]["EUR"]
    r = zoho.post(
        "/contacts",
        json={
            "contact_name": "Ristorante Roma",
            "contact_type": "vendor",
            "currency_id": eur,
            "payment_terms": 15,
            "payment_terms_label": "Net 15",
            "contact_persons": [
                {"first_name": "Gia", "last_name": "Conti", "email": "gia@roma.it"}
            ],
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert body["code"] == 0 and body["message"] == "The contact has been created"
    c = body["contact"]
    assert c["contact_type"] == "vendor" and c["currency_code"] == "EUR"
    assert c["payment_terms_label"] == "Net 15" and c["email"] == "gia@roma.it"
    u = zoho.call(
        "PUT",
        f"/contacts/{c['contact_id']}",
        json={"contact_name": "Ristorante Roma SRL", "payment_terms": 30},
    )
    assert u.status_code == 200 and u.json()["message"] == "Contact has been updated successfully"
    updated = zoho.get(f"/contacts/{c['contact_id']}").json()["contact"]
    assert updated["contact_name"] == "Ristorante Roma SRL"
    assert updated["payment_terms"] == 30 and updated["payment_terms_label"] == "Net 30"
    assert updated["currency_code"] == "EUR" and updated["email"] == "gia@roma.it"
    created = admin.created()["zoho"]["contacts"]
    assert [x["contact_id"] for x in created] == [c["contact_id"]]


def test_create_contact_form_encoded_jsonstring(zoho: Zoho) -> None:
    import json

    r = zoho.post(
        "/contacts",
        data={"JSONString": json.dumps({"contact_name": "Form Vendor", "contact_type": "vendor"})},
    )
    assert r.status_code == 201 and r.json()["contact"]["contact_name"] == "Form Vendor"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"contact_type": "vendor"}, 4001),
        ({"contact_name": "   "}, 4001),
        ({"contact_name": "X", "contact_type": "supplier"}, 4002),
        ({"contact_name": "X", "currency_id": "123"}, 4008),
        ({"contact_name": "X", "payment_terms": "soon"}, 4002),
    ],
)
def test_create_contact_validation(zoho: Zoho, body: dict[str, object], code: int) -> None:
    r = zoho.post("/contacts", json=body)
    assert r.status_code == 400 and r.json()["code"] == code and r.json()["message"]


def test_bad_json_body_is_400(zoho: Zoho) -> None:
    r = zoho.post("/contacts", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] != 0
    r = zoho.post("/contacts", data={"JSONString": "{oops"})
    assert r.status_code == 400 and "JSONString" in r.json()["message"]


def test_chart_of_accounts(zoho: Zoho) -> None:
    body = zoho.get("/chartofaccounts").json()
    accts = body["chartofaccounts"]
    types = {a["account_type"] for a in accts}
    assert {"expense", "other_current_liability", "bank", "accounts_payable"} <= types
    expenses = zoho.get("/chartofaccounts", params={"filter_by": "AccountType.Expense"}).json()
    assert all(
        a["account_type"] in ("expense", "cost_of_goods_sold", "other_expense")
        for a in expenses["chartofaccounts"]
    )
    inactive = zoho.get("/chartofaccounts", params={"filter_by": "AccountType.Inactive"}).json()
    assert [a["account_name"] for a in inactive["chartofaccounts"]] == [
        "Legacy Travel (do not use)"
    ]
    one = zoho.get(f"/chartofaccounts/{accts[0]['account_id']}").json()
    assert one["code"] == 0 and one["account_id"] == accts[0]["account_id"]


def test_currencies(zoho: Zoho) -> None:
    cur = zoho.get("/settings/currencies").json()["currencies"]
    codes = {c["currency_code"]: c for c in cur}
    assert codes["USD"]["is_base_currency"] and not codes["EUR"]["is_base_currency"]
    assert codes["JPY"]["price_precision"] == 0
    foreign = zoho.get(
        "/settings/currencies", params={"filter_by": "Currencies.ExcludeBaseCurrency"}
    ).json()
    assert "USD" not in {c["currency_code"] for c in foreign["currencies"]}
    one = zoho.get(f"/settings/currencies/{codes['EUR']['currency_id']}").json()
    assert one["currency"]["currency_code"] == "EUR"


def test_reporting_tags_and_options(zoho: Zoho) -> None:
    tags = zoho.get("/reportingtags").json()["tags"]
    cost = next(t for t in tags if t["tag_name"] == "Cost Center")
    opts = zoho.get(f"/reportingtags/{cost['tag_id']}/options/all").json()["results"]
    names = [o["option_name"] for o in opts]
    assert "Engineering" in names and "Untagged" in names
    assert all({"option_id", "option_name"} <= set(o) for o in opts)
    tag = zoho.get(f"/reportingtags/{cost['tag_id']}").json()["reporting_tag"]
    assert tag["tag_name"] == "Cost Center" and tag["tag_options"]


def test_other_organizations_have_their_own_data(zoho_anon: Zoho) -> None:
    eu = zoho_anon.login(user="finanz@acme.example")
    org = eu.get("/organizations", org=None).json()["organizations"][0]
    assert org["currency_code"] == "EUR"
    bills = eu.get("/bills", org=EU_ORG).json()["bills"]
    assert len(bills) == 6
    ind = type(zoho_anon)(zoho_anon.base).login(user="accounts@acme.example")
    assert ind.api_domain.endswith("/zoho/in/api")
    assert ind.get("/bills", org=IN_ORG).json()["bills"][0]["currency_code"] == "INR"
