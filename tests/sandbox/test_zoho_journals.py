"""``POST /journals`` validation, storage, lookup by reference_number and deletion."""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sandbox.admin import AdminClient
    from tests.sandbox.conftest import Zoho


@pytest.fixture
def ids(zoho: Zoho) -> dict[str, Any]:
    return zoho.lookup()


def balanced(ids: dict[str, Any], amount: float = 120.5, ref: str = "RPT-0001") -> dict[str, Any]:
    acc = ids["accounts"]
    tag_id, option_id = ids["options"][("Cost Center", "Engineering")]
    return {
        "journal_date": "2025-06-30",
        "reference_number": ref,
        "notes": "Concur report RPT-0001",
        "line_items": [
            {
                "account_id": acc["Travel Expense"],
                "debit_or_credit": "debit",
                "amount": amount,
                "description": "Hotel",
                "tags": [{"tag_id": tag_id, "tag_option_id": option_id}],
            },
            {
                "account_id": acc["Employee Reimbursements"],
                "debit_or_credit": "credit",
                "amount": amount,
            },
        ],
    }


def test_balanced_journal_is_created_and_readable(zoho: Zoho, ids: dict[str, Any]) -> None:
    r = zoho.post("/journals", json=balanced(ids))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["code"] == 0 and body["message"] == "The journal entry has been created."
    j = body["journal"]
    assert j["journal_date"] == "2025-06-30" and j["reference_number"] == "RPT-0001"
    assert j["total"] == 120.5 and j["currency_code"] == "USD" and j["status"] == "published"
    assert j["line_items"][0]["account_name"] == "Travel Expense"
    assert j["line_items"][0]["tags"][0]["tag_option_name"] == "Engineering"
    assert j["entry_number"]
    got = zoho.get(f"/journals/{j['journal_id']}").json()["journal"]
    assert got == j


def test_list_by_exact_reference_number(zoho: Zoho, ids: dict[str, Any]) -> None:
    zoho.post("/journals", json=balanced(ids, ref="RPT-0001"))
    zoho.post("/journals", json=balanced(ids, ref="RPT-00012"))
    exact = zoho.get("/journals", params={"reference_number": "RPT-0001"}).json()
    assert [j["reference_number"] for j in exact["journals"]] == ["RPT-0001"]
    assert set(exact["journals"][0]) >= {"journal_id", "journal_date", "entry_number", "total"}
    none = zoho.get("/journals", params={"reference_number": "RPT-9999"}).json()
    assert none["journals"] == [] and none["page_context"]["has_more_page"] is False
    prefix = zoho.get("/journals", params={"reference_number_startswith": "RPT-0001"}).json()
    assert len(prefix["journals"]) == 2
    everything = zoho.get("/journals").json()["journals"]
    assert len(everything) == 5  # three seeded + two posted


def test_form_encoded_jsonstring_is_accepted(zoho: Zoho, ids: dict[str, Any]) -> None:
    r = zoho.post("/journals", data={"JSONString": json.dumps(balanced(ids))})
    assert r.status_code == 201 and r.json()["journal"]["total"] == 120.5


def test_foreign_currency_needs_exchange_rate(zoho: Zoho, ids: dict[str, Any]) -> None:
    body = balanced(ids, amount=100)
    body["currency_id"] = ids["currencies"]["EUR"]
    r = zoho.post("/journals", json=body)
    assert r.status_code == 400 and r.json()["code"] == 4009
    body["exchange_rate"] = 1.085
    r = zoho.post("/journals", json=body)
    assert r.status_code == 201
    j = r.json()["journal"]
    assert j["currency_code"] == "EUR" and j["bcy_total"] == 108.5
    assert j["line_items"][0]["bcy_amount"] == 108.5


def test_balance_is_checked_at_the_currency_precision(zoho: Zoho, ids: dict[str, Any]) -> None:
    body = balanced(ids, amount=10)
    body["line_items"][0]["amount"] = 10.004  # rounds to 10.00
    assert zoho.post("/journals", json=body).status_code == 201
    body["line_items"][0]["amount"] = 10.01
    r = zoho.post("/journals", json=body)
    assert r.status_code == 400 and r.json()["code"] == 4004
    jpy = balanced(ids, amount=1000)
    jpy.update(currency_id=ids["currencies"]["JPY"], exchange_rate=0.0064, reference_number="J")
    jpy["line_items"][0]["amount"] = 1000.4  # JPY has no decimals: 1000
    r = zoho.post("/journals", json=jpy)
    assert r.status_code == 201 and r.json()["journal"]["total"] == 1000


def _mutations(ids: dict[str, Any]) -> list[tuple[str, Any, int]]:
    acc = ids["accounts"]
    cc_tag, eng = ids["options"][("Cost Center", "Engineering")]
    _, legacy = ids["options"][("Cost Center", "Legacy")]
    _, emea = ids["options"][("Region", "Europe")]

    def line(i: int, **kv: Any) -> Any:
        def apply(b: dict[str, Any]) -> None:
            b["line_items"][i].update(kv)

        return apply

    def drop(key: str, i: int | None = None) -> Any:
        def apply(b: dict[str, Any]) -> None:
            (b if i is None else b["line_items"][i]).pop(key)

        return apply

    return [
        ("missing journal_date", drop("journal_date"), 4001),
        ("bad journal_date", lambda b: b.update(journal_date="30/06/2025"), 4002),
        ("impossible journal_date", lambda b: b.update(journal_date="2025-02-30"), 4002),
        ("no lines", lambda b: b.update(line_items=[]), 4010),
        ("one side only", lambda b: b.update(line_items=b["line_items"][:1]), 4010),
        ("zero amount", line(0, amount=0), 4003),
        ("negative amount", line(1, amount=-5), 4003),
        ("text amount", line(0, amount="lots"), 4002),
        ("missing amount", drop("amount", 0), 4001),
        ("missing debit_or_credit", drop("debit_or_credit", 1), 4001),
        ("bad debit_or_credit", line(0, debit_or_credit="Debit"), 4002),
        ("missing account", drop("account_id", 0), 4001),
        ("unknown account", line(0, account_id="4600000999999"), 4005),
        ("inactive account", line(0, account_id=acc["Legacy Travel (do not use)"]), 4006),
        ("unbalanced", line(1, amount=100), 4004),
        ("unknown tag", line(0, tags=[{"tag_id": "1", "tag_option_id": eng}]), 4007),
        ("unknown option", line(0, tags=[{"tag_id": cc_tag, "tag_option_id": "1"}]), 4007),
        ("option of another tag", line(0, tags=[{"tag_id": cc_tag, "tag_option_id": emea}]), 4007),
        ("inactive option", line(0, tags=[{"tag_id": cc_tag, "tag_option_id": legacy}]), 4007),
        ("unknown currency", lambda b: b.update(currency_id="4600000999998"), 4008),
        ("bad status", lambda b: b.update(status="posted"), 4002),
        ("bad journal_type", lambda b: b.update(journal_type="accrual"), 4002),
        ("unknown contact", line(0, customer_id="4600000999997"), 4011),
        ("only unknown fields", lambda b: (b.clear(), b.update(x=1)), 4001),
    ]


def test_every_violation_is_a_specific_400(zoho: Zoho, ids: dict[str, Any]) -> None:
    messages = set()
    for name, mutate, code in _mutations(ids):
        body = copy.deepcopy(balanced(ids))
        mutate(body)
        r = zoho.post("/journals", json=body)
        assert r.status_code == 400, (name, r.text)
        out = r.json()
        assert out["code"] == code, (name, out)
        assert out["message"], name
        messages.add(out["message"])
    assert len(messages) >= 20  # messages say what is wrong, not just "invalid"
    assert zoho.get("/journals").json()["journals"].__len__() == 3  # nothing was stored


def test_array_body_is_rejected(zoho: Zoho) -> None:
    r = zoho.post("/journals", json=[1, 2])
    assert r.status_code == 400 and r.json()["code"] == 4012


def test_delete_journal(zoho: Zoho, ids: dict[str, Any], admin: AdminClient) -> None:
    j = zoho.post("/journals", json=balanced(ids)).json()["journal"]
    r = zoho.call("DELETE", f"/journals/{j['journal_id']}")
    assert r.json() == {"code": 0, "message": "The selected journal entry has been deleted."}
    assert zoho.get(f"/journals/{j['journal_id']}").status_code == 404
    assert zoho.get("/journals", params={"reference_number": "RPT-0001"}).json()["journals"] == []


def test_journal_last_modified_time_matches_equal_time(zoho: Zoho, ids: dict[str, Any]) -> None:
    j = zoho.post("/journals", json=balanced(ids)).json()["journal"]
    got = zoho.get("/journals", params={"last_modified_time": j["last_modified_time"]}).json()
    assert [x["journal_id"] for x in got["journals"]] == [j["journal_id"]]
