"""Tolerant readers for unconfirmed answer shapes (#14.11).

Every documented variant reads the same records; a single object is one record and ``null`` none;
anything else is an ``UnexpectedResponseError`` that names the URL (no query string) and the key
names it saw, never their values, and never an ``AttributeError``.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from connector.api.shapes import first_list
from connector.concur.resources import vendor_items
from connector.errors import FatalError, UnexpectedResponseError
from connector.zoho.resources import read_tag_options

VENDORS_URL = "https://us2.api.concursolutions.com/api/v3.1/invoice/vendors"
OPTIONS_URL = "https://www.zohoapis.eu/books/v3/reportingtags/77/options/all"
V1 = {"VendorCode": "ACME", "AddressCode": "HQ", "VendorName": "Acme Secret Name"}
V2 = {"VendorCode": "GLOBEX", "AddressCode": "REMIT2"}
O1 = {"option_id": "1", "option_name": "Sales"}


@pytest.mark.parametrize(
    "body",
    [
        {"Items": [V1, V2], "NextPage": None, "TotalCount": 2},  # Vendor v3.1 reference
        {"Vendor": [V1, V2]},  # as the batch bodies name them
        {"Items": {"Vendor": [V1, V2]}},  # the XML answer read as JSON
    ],
    ids=["items", "vendor", "items_vendor"],
)
def test_vendor_search_shapes(body: dict[str, Any]) -> None:
    assert vendor_items(body, url=VENDORS_URL) == [V1, V2]


@pytest.mark.parametrize(
    "body",
    [{"Items": V1}, {"Vendor": V1}, {"Items": {"Vendor": V1}}],
    ids=["items", "vendor", "items_vendor"],
)
def test_single_vendor_object_is_a_one_element_list(body: dict[str, Any]) -> None:
    assert vendor_items(body, url=VENDORS_URL) == [V1]


@pytest.mark.parametrize(
    "body",
    [{"Items": None}, {"Vendor": None}, {"Items": {"Vendor": None}}, {"Items": []}],
)
def test_null_vendors_mean_none(body: dict[str, Any]) -> None:
    assert vendor_items(body, url=VENDORS_URL) == []


@pytest.mark.parametrize(
    "body",
    [
        {"results": [O1]},
        {"options": [O1]},
        {"reporting_tag": {"tag_id": "77", "options": [O1]}},
        {"results": O1},
    ],
    ids=["results", "options", "reporting_tag.options", "single"],
)
def test_tag_option_shapes(body: dict[str, Any]) -> None:
    assert read_tag_options({"code": 0, "message": "success", **body}, url=OPTIONS_URL) == [O1]
    assert read_tag_options({"code": 0, "options": None}, url=OPTIONS_URL) == []


def test_unknown_vendor_shape_names_url_and_keys_not_values() -> None:
    body = {"Data": [V1], "Count": 1}
    with pytest.raises(UnexpectedResponseError) as caught:
        vendor_items(body, url=VENDORS_URL + "?vendorCode=ACME&limit=10")
    err = caught.value
    message = str(err)
    assert VENDORS_URL in message and "?" not in message and "ACME" not in message
    assert "'Count'" in message and "'Data'" in message
    assert "Secret" not in message and "Items.Vendor" in message
    assert isinstance(err, FatalError) and err.system == "concur"
    assert err.keys_seen == ["Count", "Data"] and err.url == VENDORS_URL


@pytest.mark.parametrize(
    ("body", "seen"),
    [
        ({"reporting_tag": {"tag_id": "77", "tag_options": [O1]}}, "reporting_tag.tag_options"),
        ({"results": "Sales"}, "'results'"),  # present, but not records
        ({"results": ["Sales"]}, "'results'"),
        ({}, "keys (none)"),
    ],
)
def test_unknown_tag_option_shapes(body: dict[str, Any], seen: str) -> None:
    with pytest.raises(UnexpectedResponseError) as caught:
        read_tag_options(body, url=OPTIONS_URL)
    message = str(caught.value)
    assert OPTIONS_URL in message and seen in message and "Sales" not in message
    assert caught.value.system == "zoho"


@pytest.mark.parametrize("body", [None, [V1], "oops", 3])
def test_not_an_object_is_a_clear_failure(body: Any) -> None:
    with pytest.raises(UnexpectedResponseError, match="not a JSON object"):
        first_list(body, [("Items",)], url=VENDORS_URL)


def test_error_survives_pickling_for_celery() -> None:
    with pytest.raises(UnexpectedResponseError) as caught:
        vendor_items({"Data": []}, url=VENDORS_URL)
    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value) and again.keys_seen == ["Data"]
