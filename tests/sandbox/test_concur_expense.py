"""Concur Expense: v3 reports/entries/allocations listing and paging, v4 report detail, seeds."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

try:
    from tests.sandbox.concur_fixtures import US, ConcurHarness, concur
except ImportError:
    from concur_fixtures import US, ConcurHarness, concur  # type: ignore[no-redef]  # noqa: F401

READY = {"approvalStatusCode": "A_APPR", "paymentStatusCode": "P_PROC", "user": "ALL"}


def _all_pages(concur: ConcurHarness, url: str, headers: dict, params: dict) -> list[dict]:
    page = concur.http.get(url, params=params, headers=headers).json()
    items = list(page["Items"])
    while page.get("NextPage"):
        page = concur.http.get(page["NextPage"], headers=headers).json()
        items += page["Items"]
    return items


def test_list_ready_reports_for_all_users(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.0/expense/reports"
    reports = _all_pages(concur, url, h, READY)
    assert len(reports) == 6
    assert {r["ApprovalStatusCode"] for r in reports} == {"A_APPR"}
    assert {r["PaymentStatusCode"] for r in reports} == {"P_PROC"}
    assert {r["CurrencyCode"] for r in reports} >= {"USD", "EUR", "JPY"}
    jpy = next(r for r in reports if r["CurrencyCode"] == "JPY")
    assert isinstance(jpy["Total"], int)  # zero-decimal currency
    r = reports[0]
    for f in (
        "ID", "URI", "Name", "OwnerName", "OwnerLoginID", "Total", "AmountDueEmployee",
        "AmountDueCompanyCard", "TotalApprovedAmount", "PersonalAmount", "SubmitDate",
        "ProcessingPaymentDate", "PaidDate", "LastModifiedDate", "Custom20", "OrgUnit6",
    ):  # fmt: skip
        assert f in r
    assert len(r["ID"]) == 20
    multi = _all_pages(
        concur, url, h, {"approvalStatusCode": "A_APPR,A_PEND", "user": "ALL", "limit": 100}
    )
    assert {x["ApprovalStatusCode"] for x in multi} == {"A_APPR", "A_PEND"}


def test_without_user_all_only_the_token_owner_reports(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.0/expense/reports"
    mine = concur.http.get(url, headers=h).json()["Items"]
    assert {r["OwnerLoginID"] for r in mine} == {"wsadmin@sandbox-us.example"}
    alice = concur.http.get(
        url, params={"user": "alice.chen@sandbox-us.example"}, headers=h
    ).json()["Items"]
    assert alice and {r["OwnerLoginID"] for r in alice} == {"alice.chen@sandbox-us.example"}


def test_default_page_is_25_and_next_page_walks_everything(concur: ConcurHarness) -> None:
    concur.state.generate("reports", 100)
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.0/expense/reports"
    first = concur.http.get(url, params=READY, headers=h).json()
    assert len(first["Items"]) == 25 and "offset=25" in first["NextPage"]
    everything = _all_pages(concur, url, h, READY)
    assert len(everything) == 106 == len({r["ID"] for r in everything})
    clamped = concur.http.get(url, params={**READY, "limit": 500}, headers=h).json()
    assert len(clamped["Items"]) == 100 and clamped["NextPage"]  # larger limits are clamped


def test_modified_date_after_is_a_watermark(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.0/expense/reports"
    everything = _all_pages(concur, url, h, READY)
    newest = max(r["LastModifiedDate"] for r in everything)
    after = _all_pages(concur, url, h, {**READY, "modifiedDateAfter": newest})
    assert after == []
    oldest = min(r["LastModifiedDate"] for r in everything)
    later = _all_pages(concur, url, h, {**READY, "modifiedDateAfter": oldest})
    assert len(later) == len(everything) - 1
    bad = concur.http.get(url, params={"modifiedDateAfter": "yesterday"}, headers=h)
    assert bad.status_code == 400 and "Message" in bad.json()["Error"]


def test_entries_carry_currencies_payment_types_and_personal_flags(concur: ConcurHarness) -> None:
    h = concur.headers()
    reports = _all_pages(
        concur, f"{concur.geo()}/api/v3.0/expense/reports", h, {"user": "ALL", "limit": 100}
    )
    entries = []
    for r in reports:
        items = concur.http.get(
            f"{concur.geo()}/api/v3.0/expense/entries", params={"reportID": r["ID"]}, headers=h
        ).json()["Items"]
        assert all(e["ReportID"] == r["ID"] for e in items)
        entries += items
        total = sum(Decimal(str(e["PostedAmount"])) for e in items)
        assert Decimal(str(r["Total"])) == total
        personal = sum(Decimal(str(e["PostedAmount"])) for e in items if e["IsPersonal"])
        assert Decimal(str(r["PersonalAmount"])) == personal
    assert {e["TransactionCurrencyCode"] for e in entries} >= {"USD", "EUR", "JPY", "GBP"}
    assert {e["PaymentTypeID"] for e in entries} == {"CASH", "CBCP"}
    assert any(e["IsPersonal"] for e in entries)
    foreign = [e for e in entries if e["TransactionAmount"] != e["PostedAmount"]]
    assert foreign and all(e["ExchangeRate"] != 1.0 for e in foreign)
    jpy = [e for e in entries if e["TransactionCurrencyCode"] == "JPY"]
    assert all(isinstance(e["TransactionAmount"], int) for e in jpy)
    one = entries[0]
    got = concur.http.get(
        f"{concur.geo()}/api/v3.0/expense/entries/{quote(one['ID'], safe='')}", headers=h
    )
    assert got.status_code == 200 and got.json()["ID"] == one["ID"]


def test_allocations_split_to_cost_centres(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.0/expense/allocations"
    report = concur.http.get(
        f"{concur.geo()}/api/v3.0/expense/reports", params={**READY, "limit": 1}, headers=h
    ).json()["Items"][0]
    allocs = concur.http.get(url, params={"reportID": report["ID"], "limit": 100}, headers=h).json()
    assert allocs["Items"]
    by_entry: dict[str, list[dict]] = {}
    for a in allocs["Items"]:
        by_entry.setdefault(a["EntryID"], []).append(a)
        assert a["Custom1"]["Label"] == "Cost Center"
        assert a["Custom1"]["Code"].startswith("CC-") and a["Custom1"]["Value"]
    for entry_allocs in by_entry.values():
        assert sum(Decimal(a["Percentage"]) for a in entry_allocs) == 100
    three_way = [v for v in by_entry.values() if len(v) == 3]
    assert three_way and sorted(a["Percentage"] for a in three_way[0]) == [
        "33.33000000",
        "33.33000000",
        "33.34000000",
    ]
    entry_id = next(iter(by_entry))
    per_entry = concur.http.get(url, params={"entryID": entry_id}, headers=h).json()["Items"]
    assert {a["ID"] for a in per_entry} == {a["ID"] for a in by_entry[entry_id]}
    assert concur.http.get(url, params={"limit": 101}, headers=h).status_code == 400
    assert concur.http.get(url, params={"userId": "x"}, headers=h).status_code == 400
    paged = concur.http.get(url, params={"limit": 2}, headers=h).json()
    assert len(paged["Items"]) == 2 and paged["NextPage"]
    single = concur.http.get(f"{url}/{quote(per_entry[0]['ID'], safe='')}", headers=h)
    assert single.status_code == 200 and single.json()["ID"] == per_entry[0]["ID"]


def test_v4_report_detail_matches_v3(concur: ConcurHarness) -> None:
    h = concur.headers()
    report = concur.http.get(
        f"{concur.geo()}/api/v3.0/expense/reports", params={**READY, "limit": 1}, headers=h
    ).json()["Items"][0]
    v3 = concur.http.get(
        f"{concur.geo()}/api/v3.0/expense/reports/{report['ID']}", headers=h
    ).json()
    assert v3 == report
    summary = concur.admin.summary()
    company = next(c for c in summary["companies"] if c["id"] == US)
    owner = next(e for e in company["employees"] if e["login_id"] == report["OwnerLoginID"])
    base = (
        f"{concur.geo()}/expensereports/v4/users/{owner['uuid']}/context/TRAVELER/reports/"
        f"{report['ID']}"
    )
    v4 = concur.http.get(base, headers=h).json()
    assert v4["reportId"] == report["ID"]
    assert v4["approvalStatusId"] == "A_APPR" and v4["paymentStatusId"] == "P_PROC"
    assert v4["currencyCode"] == report["CurrencyCode"]
    assert v4["approvedAmount"]["value"] == report["TotalApprovedAmount"]
    assert v4["reportTotal"] == {"value": report["Total"], "currencyCode": report["CurrencyCode"]}
    expenses = concur.http.get(f"{base}/expenses", headers=h).json()
    assert expenses and all("expenseId" in e for e in expenses)
    assert {e["paymentType"]["id"] for e in expenses} <= {"CASH", "CBCP"}
    exp = expenses[0]
    one = concur.http.get(f"{base}/expenses/{exp['expenseId']}", headers=h).json()
    assert one["expenseId"] == exp["expenseId"]
    allocs = concur.http.get(f"{base}/expenses/{exp['expenseId']}/allocations", headers=h).json()
    assert sum(a["percentage"] for a in allocs) == 100
    assert all(a["customData"][0]["id"] == "custom1" for a in allocs)
    # documented error shapes
    for url, status in (
        (base.replace(owner["uuid"], "someone-else"), 403),
        (base.replace("TRAVELER", "BOSS"), 400),
        (base.replace(report["ID"], "NOPE"), 404),
        (f"{base}/expenses/NOPE", 404),
    ):
        resp = concur.http.get(url, headers=h)
        assert resp.status_code == status
        body = resp.json()
        assert body["httpStatus"].startswith(str(status)) and body["errorMessage"]
    manager = concur.http.get(base.replace("TRAVELER", "PROCESSOR"), headers=h)
    assert manager.status_code == 200


def test_seeded_ids_are_stable_across_reset(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.0/expense/reports"
    before = sorted(r["ID"] for r in _all_pages(concur, url, h, {"user": "ALL", "limit": 100}))
    entries_before = concur.http.get(
        f"{concur.geo()}/api/v3.0/expense/entries", params={"reportID": before[0]}, headers=h
    ).json()["Items"]
    concur.state.reset()
    concur.state.seed()
    h = concur.headers()
    after = sorted(r["ID"] for r in _all_pages(concur, url, h, {"user": "ALL", "limit": 100}))
    entries_after = concur.http.get(
        f"{concur.geo()}/api/v3.0/expense/entries", params={"reportID": before[0]}, headers=h
    ).json()["Items"]
    assert before == after
    assert [e["ID"] for e in entries_before] == [e["ID"] for e in entries_after]


def test_vendor_generator(concur: ConcurHarness) -> None:
    result = concur.state.generate("concur_vendors", 1500)
    assert any(r.get("created") == 1500 for r in result["results"])
    h = concur.headers()
    page = concur.http.get(
        f"{concur.geo()}/api/v3.1/invoice/vendors", params={"limit": 1000}, headers=h
    ).json()
    assert len(page["Items"]) == 1000 and page["TotalCount"] >= 1500 and page["NextPage"]
