"""Concur Invoice v3: Vendor v3.1 batch/search and Payment Request v3.0, plus limits (429)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

try:
    from tests.sandbox.concur_fixtures import US, ConcurHarness, concur
except ImportError:
    from concur_fixtures import US, ConcurHarness, concur  # type: ignore[no-redef]  # noqa: F401


def vendor(code: str, **extra: Any) -> dict[str, Any]:
    return {
        "VendorCode": code,
        "AddressCode": "MAIN",
        "VendorName": f"{code} Ltd",
        "Address1": "1 Test Rd",
        "PostalCode": "12345",
        "CountryCode": "US",
        "CurrencyCode": "USD",
        **extra,
    }


def payment_request(**extra: Any) -> dict[str, Any]:
    return {
        "Name": "Bill B-1001",
        "CountryCode": "US",
        "CurrencyCode": "USD",
        "InvoiceAmount": "300.00",
        "InvoiceNumber": "B-1001",
        "InvoiceDate": "2025-05-01",
        "VendorRemitToIdentifier": {"VendorCode": "ACME001", "AddressCode": "MAIN"},
        "LedgerCode": "DEFAULT",
        "LineItems": [
            {
                "Description": "Paper",
                "Quantity": "3",
                "UnitPrice": "100.00",
                "TotalPrice": "300.00",
                "Allocations": [
                    {"Percentage": "33.33", "Custom1": "CC-100"},
                    {"Percentage": "33.33", "Custom1": "CC-200"},
                    {"Percentage": "33.34", "Custom1": "CC-300"},
                ],
            }
        ],
        **extra,
    }


# -- vendors ---------------------------------------------------------------------------------------


def test_vendor_search_pages_with_limit_offset_and_next_page(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.1/invoice/vendors"
    first = concur.http.get(url, params={"limit": 5}, headers=h).json()
    assert len(first["Items"]) == 5 and "Vendor" not in first  # as Vendor v3.1 documents
    total = first["TotalCount"]
    seen = [v["VendorCode"] + "/" + v["AddressCode"] for v in first["Items"]]
    next_url = first["NextPage"]
    while next_url:
        page = concur.http.get(next_url, headers=h).json()
        seen += [v["VendorCode"] + "/" + v["AddressCode"] for v in page["Items"]]
        next_url = page["NextPage"]
    assert len(seen) == total == len(set(seen))
    names = [v["VendorName"].lower() for v in first["Items"]]
    assert names == sorted(names)  # default sort: vendor name
    assert concur.http.get(url, params={"limit": 1001}, headers=h).status_code == 400


def test_vendor_search_filters(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.1/invoice/vendors"
    globex = concur.http.get(url, params={"vendorCode": "globex"}, headers=h).json()
    assert {v["AddressCode"] for v in globex["Items"]} == {"HQ", "REMIT2"}
    exact = concur.http.get(
        url, params={"vendorCode": "GLOBEX", "addressCode": "HQ"}, headers=h
    ).json()
    assert exact["TotalCount"] == 1
    begins = concur.http.get(
        url, params={"vendorName": "vandelay", "searchType": "begins"}, headers=h
    ).json()
    assert {v["VendorCode"] for v in begins["Items"]} == {"VANDEL1", "VANDEL2"}
    none = concur.http.get(url, params={"vendorName": "Nobody Inc"}, headers=h).json()
    assert none["TotalCount"] == 0 and none["NextPage"] is None


def test_vendor_batch_create_reports_per_record_status(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.1/invoice/vendors"
    body = {
        "Vendor": [
            vendor("NEWCO1"),
            {"VendorCode": "NEWCO2", "AddressCode": "MAIN", "CountryCode": "US"},  # no currency
            vendor("ACME001"),  # exists already
            vendor("UAVEND", CountryCode="UA", CurrencyCode="EUR"),  # Ukraine needs State
            vendor("LOWER", CountryCode="us"),  # country code is case sensitive
            vendor("NEWCO3", PaymentTerms="30", PaymentMethodType="ACH"),
        ]
    }
    resp = concur.http.post(url, json=body, headers=h)
    assert resp.status_code == 200, resp.text
    statuses = [v["StatusList"][0] for v in resp.json()["Vendor"]]
    assert [s["RecordNumber"] for s in statuses] == [1, 2, 3, 4, 5, 6]
    assert [s["Type"] for s in statuses] == [
        "SUCCESS",
        "ERROR",
        "ERROR",
        "ERROR",
        "ERROR",
        "SUCCESS",
    ]
    assert "CurrencyCode" in statuses[1]["Message"]
    assert "State" in statuses[3]["Message"]
    created = resp.json()["Vendor"][0]
    assert created["ID"] and created["URI"]
    found = concur.http.get(url, params={"vendorCode": "NEWCO3"}, headers=h).json()
    assert found["Items"][0]["PaymentMethodType"] == "ACH"


def test_vendor_put_updates_existing_only(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.1/invoice/vendors"
    resp = concur.http.put(
        url,
        json={"Vendor": [vendor("ACME001", VendorName="Acme Renamed"), vendor("GHOST")]},
        headers=h,
    )
    assert resp.status_code == 200
    first, second = (v["StatusList"][0] for v in resp.json()["Vendor"])
    assert first["Type"] == "SUCCESS" and second["Type"] == "ERROR"
    assert second["RecordNumber"] == 2
    got = concur.http.get(url, params={"vendorName": "Acme Renamed"}, headers=h).json()
    assert got["TotalCount"] == 1


def test_vendor_body_variants_and_bad_bodies(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.1/invoice/vendors"
    single = concur.http.post(url, json={"Vendor": vendor("SINGLE")}, headers=h)
    assert single.json()["Vendor"][0]["StatusList"][0]["Type"] == "SUCCESS"
    items = concur.http.post(url, json={"Items": [vendor("ITEMS")]}, headers=h)
    assert items.json()["Vendor"][0]["StatusList"][0]["Type"] == "SUCCESS"
    assert concur.http.post(url, json={"Nope": []}, headers=h).status_code == 400
    bad = concur.http.post(url, data="not json", headers=h)
    assert bad.status_code == 400 and "Message" in bad.json()["Error"]


def test_vendor_delete_needs_both_codes(concur: ConcurHarness) -> None:
    h = concur.headers()
    url = f"{concur.geo()}/api/v3.1/invoice/vendors"
    assert concur.http.delete(url, params={"vendorCode": "HOOLI"}, headers=h).status_code == 400
    ok = concur.http.delete(url, params={"vendorCode": "HOOLI", "addressCode": "MAIN"}, headers=h)
    assert ok.status_code == 200
    again = concur.http.delete(
        url, params={"vendorCode": "HOOLI", "addressCode": "MAIN"}, headers=h
    )
    assert again.status_code == 404


def test_admin_created_vendor_is_visible(concur: ConcurHarness) -> None:
    result = concur.admin.create_vendors(vendor("ADMINV"), company_id=US)
    assert result["Vendor"][0]["StatusList"][0]["Type"] == "SUCCESS"
    concur.admin.update_vendors(vendor("ADMINV", City="Boston"), company_id=US)
    got = concur.http.get(
        f"{concur.geo()}/api/v3.1/invoice/vendors",
        params={"vendorCode": "ADMINV"},
        headers=concur.headers(),
    ).json()
    assert got["Items"][0]["City"] == "Boston"


# -- payment requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line_items",
    [
        pytest.param(payment_request()["LineItems"], id="plain-array"),
        pytest.param({"LineItem": payment_request()["LineItems"]}, id="LineItem-array"),
        pytest.param({"LineItem": payment_request()["LineItems"][0]}, id="LineItem-object"),
        pytest.param(payment_request()["LineItems"][0], id="swagger-single-object"),
        pytest.param(
            [
                {
                    "Description": "Paper",
                    "TotalPrice": "300.00",
                    "Custom01": "L1",
                    "Allocations": {
                        "Allocation": [
                            {"Percentage": "50", "Custom01": "CC-100"},
                            {"Percentage": "50", "Custom01": "CC-200"},
                        ]
                    },
                }
            ],
            id="Custom01-and-nested-allocations",
        ),
    ],
)
def test_payment_request_accepts_every_documented_line_item_shape(
    concur: ConcurHarness, line_items: Any
) -> None:
    h = concur.headers()
    base = f"{concur.geo()}/api/v3.0/invoice/paymentrequest"
    resp = concur.http.post(
        base, json=payment_request(LineItems=line_items, Custom01="HDR"), headers=h
    )
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert set(created) == {"ID", "URI"}
    got = concur.http.get(created["URI"], headers=h)
    assert got.status_code == 200
    pr = got.json()
    assert pr["Custom1"] == "HDR" and "Custom01" not in pr
    lines = pr["LineItems"]["LineItem"]
    assert len(lines) == 1
    allocations = lines[0]["Allocations"]["Allocation"]
    assert sum(float(a["Percentage"]) for a in allocations) == pytest.approx(100)
    assert all("Custom1" in a for a in allocations)
    assert pr["ApprovalStatus"] == "A_NOTF"
    assert pr["VendorRemitToIdentifier"]["VendorCode"] == "ACME001"


def _with_custom_fields(n: int, padded: bool) -> dict[str, Any]:
    """A payment request with custom fields on the header, a line and an allocation."""
    name = f"Custom{n:02d}" if padded else f"Custom{n}"
    org = "OrgUnit01" if padded else "OrgUnit1"
    return payment_request(
        **{name: "HDR", org: "OU"},
        LineItems=[
            {
                "Description": "Paper",
                "TotalPrice": "300.00",
                name: "LINE",
                "Allocations": [{"Percentage": "100", name: "CC-100"}],
            }
        ],
    )


@pytest.mark.parametrize(
    ("spelling", "padded", "accepted"),
    [
        pytest.param("both", True, True, id="both-takes-Custom05"),
        pytest.param("both", False, True, id="both-takes-Custom5"),
        pytest.param("plain", False, True, id="plain-takes-Custom5"),
        pytest.param("plain", True, False, id="plain-refuses-Custom05"),
        pytest.param("padded", True, True, id="padded-takes-Custom05"),
        pytest.param("padded", False, False, id="padded-refuses-Custom5"),
    ],
)
def test_custom_field_spelling_setting(
    concur: ConcurHarness, spelling: str, padded: bool, accepted: bool
) -> None:
    """The reference page says ``Custom1``…, only the Swagger ``Custom01``: the sandbox can be
    told to take one spelling and refuse the other, as the real server may."""
    assert concur.admin.settings(custom_field_spelling=spelling)["custom_field_spelling"] == (
        spelling
    )
    h = concur.headers()
    base = f"{concur.geo()}/api/v3.0/invoice/paymentrequest"
    resp = concur.http.post(base, json=_with_custom_fields(5, padded), headers=h)
    if not accepted:
        assert resp.status_code == 400, resp.text
        refused = "Custom05" if padded else "Custom5"
        assert f"Invalid field name {refused};" in resp.json()["Error"]["Message"]
        return
    assert resp.status_code == 200, resp.text
    pr = concur.http.get(resp.json()["URI"], headers=h).json()
    line = pr["LineItems"]["LineItem"][0]
    assert (pr["Custom5"], pr["OrgUnit1"], line["Custom5"]) == ("HDR", "OU", "LINE")
    assert line["Allocations"]["Allocation"][0]["Custom5"] == "CC-100"


def test_custom_field_spelling_applies_to_updates_and_is_checked(concur: ConcurHarness) -> None:
    h = concur.headers()
    base = f"{concur.geo()}/api/v3.0/invoice/paymentrequest"
    created = concur.http.post(base, json=payment_request(), headers=h).json()
    concur.admin.settings(custom_field_spelling="plain")
    refused = concur.http.put(base, json={"RequestID": created["ID"], "Custom02": "X"}, headers=h)
    assert refused.status_code == 400 and "Custom02" in refused.text
    taken = concur.http.put(base, json={"RequestID": created["ID"], "Custom2": "X"}, headers=h)
    assert taken.status_code == 200, taken.text
    with pytest.raises(RuntimeError, match="custom_field_spelling"):  # refused, setting stays
        concur.admin.settings(custom_field_spelling="zero-padded")
    assert concur.admin.summary()["settings"]["custom_field_spelling"] == "plain"


@pytest.mark.parametrize(
    "missing", ["Name", "CountryCode", "InvoiceAmount", "VendorRemitToIdentifier"]
)
def test_payment_request_required_fields(concur: ConcurHarness, missing: str) -> None:
    body = payment_request()
    del body[missing]
    resp = concur.http.post(
        f"{concur.geo()}/api/v3.0/invoice/paymentrequest", json=body, headers=concur.headers()
    )
    assert resp.status_code == 400
    assert missing in resp.json()["Error"]["Message"]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"VendorRemitToIdentifier": {"VendorCode": "GLOBEX"}}, "More than one vendor"),
        ({"VendorRemitToIdentifier": {"VendorCode": "NOPE"}}, "No vendor"),
        ({"VendorRemitToIdentifier": {"Name": "Vandelay Industries"}}, "VendorCode or"),
        ({"LedgerCode": None}, "LedgerCode"),
        ({"LedgerCode": "NOT-A-LEDGER"}, "LedgerCode"),
        ({"LedgerCode": None, "EmployeeLoginId": "ghost@nowhere"}, "employee"),
        ({"InvoiceAmount": "twelve"}, "InvoiceAmount"),
        ({"LineItems": [{"TotalPrice": "1", "Allocations": [{"Percentage": "60"}]}]}, "100"),
        ({"LineItems": [{"TotalPrice": "1", "Allocations": [{"Custom1": "x"}]}]}, "Percentage"),
    ],
)
def test_payment_request_rejections(concur: ConcurHarness, override: dict, fragment: str) -> None:
    body = {k: v for k, v in {**payment_request(), **override}.items() if v is not None}
    resp = concur.http.post(
        f"{concur.geo()}/api/v3.0/invoice/paymentrequest", json=body, headers=concur.headers()
    )
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json()["Error"]["Message"]


def test_vendor_resolution_by_name_address_and_postal_code(concur: ConcurHarness) -> None:
    body = payment_request(
        VendorRemitToIdentifier={
            "Name": "Vandelay Industries",
            "Address1": "1 Latex Ave",
            "PostalCode": "07102",
        },
        LedgerCode=None,
        EmployeeLoginId="alice.chen@sandbox-us.example",
    )
    body = {k: v for k, v in body.items() if v is not None}
    h = concur.headers()
    resp = concur.http.post(f"{concur.geo()}/api/v3.0/invoice/paymentrequest", json=body, headers=h)
    assert resp.status_code == 200, resp.text
    pr = concur.http.get(resp.json()["URI"], headers=h).json()
    assert pr["VendorRemitToIdentifier"]["VendorCode"] == "VANDEL2"
    assert pr["EmployeeName"] == "Alice Chen"
    # Digest owner is the employee the request was assigned to
    digest = concur.http.get(
        f"{concur.geo()}/api/v3.0/invoice/paymentrequestdigests",
        params={"vendorInvoiceNumber": "B-1001"},
        headers=h,
    ).json()
    assert digest["Items"][0]["OwnerLoginID"] == "alice.chen@sandbox-us.example"


def test_digest_by_invoice_number_flags_duplicates(concur: ConcurHarness) -> None:
    h = concur.headers()
    base = f"{concur.geo()}/api/v3.0/invoice"
    ids = [
        concur.http.post(f"{base}/paymentrequest", json=payment_request(), headers=h).json()["ID"]
        for _ in range(2)
    ]
    digests = concur.http.get(
        f"{base}/paymentrequestdigests", params={"vendorInvoiceNumber": "B-1001"}, headers=h
    ).json()
    assert digests["TotalCount"] == 2
    assert digests["PaymentRequestDigest"] == digests["Items"]
    d = digests["Items"][0]
    assert d["VendorName"] == "Acme Office Supplies"
    assert d["Total"] == "300.00" and d["CurrencyCode"] == "USD"
    assert d["PaymentRequestId"] in ids and d["IsDeleted"] is False
    assert d["ApprovalStatusCode"] == "A_NOTF"
    one = concur.http.get(f"{base}/paymentrequest/{quote(ids[0], safe='')}", headers=h).json()
    assert one["IsPaymentRequestDuplicate"] == "true"
    dupes = concur.admin.duplicates()["payment_requests"]
    assert any(set(g["ids"]) == set(ids) and g["VendorCode"] == "ACME001" for g in dupes)
    single = concur.http.get(
        f"{base}/paymentrequestdigests/{quote(ids[0], safe='')}", headers=h
    ).json()
    assert single["PaymentRequestId"] == ids[0]
    empty = concur.http.get(
        f"{base}/paymentrequestdigests", params={"vendorInvoiceNumber": "NOPE"}, headers=h
    ).json()
    assert empty["TotalCount"] == 0 and empty["Items"] == []


def test_put_updates_while_editable_then_refuses(concur: ConcurHarness) -> None:
    h = concur.headers()
    base = f"{concur.geo()}/api/v3.0/invoice/paymentrequest"
    pr_id = concur.http.post(base, json=payment_request(), headers=h).json()["ID"]
    line_id = concur.http.get(f"{base}/{quote(pr_id, safe='')}", headers=h).json()["LineItems"][
        "LineItem"
    ][0]["LineItemId"]
    put = {
        "RequestID": pr_id,
        "InvoiceAmount": "350.00",
        "InvoiceNumber": "B-1001-A",
        "LineItems": [
            {"LineItemID": line_id, "Action": "UPDATE", "TotalPrice": "300.00"},
            {"Action": "INSERT", "Description": "Freight", "TotalPrice": "50.00"},
        ],
    }
    resp = concur.http.put(base, json=put, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["ID"] == pr_id
    got = concur.http.get(f"{base}/{quote(pr_id, safe='')}", headers=h).json()
    assert got["InvoiceAmount"] == "350.00"
    assert len(got["LineItems"]["LineItem"]) == 2
    assert got["LineItemTotalAmount"] == "350.00"
    digests = concur.http.get(
        f"{concur.geo()}/api/v3.0/invoice/paymentrequestdigests",
        params={"vendorInvoiceNumber": "B-1001-A"},
        headers=h,
    ).json()
    assert digests["TotalCount"] == 1  # the invoice-number index follows the edit
    concur.admin.advance_payment_request(pr_id, "A_APPR")
    refused = concur.http.put(base, json={"RequestID": pr_id, "InvoiceAmount": "1"}, headers=h)
    assert refused.status_code == 400
    assert "editable" in refused.json()["Error"]["Message"]
    missing = concur.http.put(base, json={"RequestID": "nope", "Name": "x"}, headers=h)
    assert missing.status_code == 404
    assert concur.http.get(f"{base}/nope", headers=h).status_code == 404


def test_created_read_back(concur: ConcurHarness) -> None:
    h = concur.headers()
    concur.http.post(
        f"{concur.geo()}/api/v3.1/invoice/vendors", json={"Vendor": [vendor("RB1")]}, headers=h
    )
    concur.http.post(
        f"{concur.geo()}/api/v3.0/invoice/paymentrequest", json=payment_request(), headers=h
    )
    created = concur.admin.created()
    assert [v["VendorCode"] for v in created["vendors"]] == ["RB1"]
    assert created["payment_requests"][0]["InvoiceNumber"] == "B-1001"
    assert created["payment_requests"][0]["VendorCode"] == "ACME001"


def test_vendor_names_shared_by_codes_are_reported(concur: ConcurHarness) -> None:
    names = concur.admin.duplicates()["vendor_names"]
    assert any(n["codes"] == ["VANDEL1", "VANDEL2"] for n in names)


def test_per_endpoint_limit_answers_documented_429(concur: ConcurHarness) -> None:
    h = concur.headers()
    concur.admin.set_limit("vendors", 2, 60, company_id=US)
    url = f"{concur.geo()}/api/v3.1/invoice/vendors"
    assert [concur.http.get(url, headers=h).status_code for _ in range(2)] == [200, 200]
    limited = concur.http.get(url, headers=h)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "0"
    body = limited.json()
    assert body["httpStatus"] == "429 - Too Many Requests"
    assert body["error"] == {"id": "security.rate.limit.reached", "message": "Too many requests"}
    assert body["path"].endswith("/api/v3.1/invoice/vendors") and body["timestamp"]
    # other endpoints are unaffected
    assert concur.http.get(f"{concur.geo()}/api/v3.0/expense/reports", headers=h).status_code == 200
    if concur.state is not None:
        assert concur.state.stats.snapshot()["rate_limited"][f"concur:{US}"] == 1
    concur.admin.clear_limits()
    assert concur.http.get(url, headers=h).status_code == 200
