"""Flows against the sandbox in each documented answer shape, and in one nobody documents (#14.11).

Concur's vendor search may answer ``{"Items": [...]}`` (Vendor v3.1 reference), ``{"Vendor": [...]}``
or ``{"Items": {"Vendor": [...]}}``; Zoho's reporting-tag options ``results``, ``options`` or
``reporting_tag.options``. Each must work end to end; an unknown shape must fail the record with
a message naming the URL and keys, not crash with an ``AttributeError`` or wait for a vendor that
exists.
"""

from __future__ import annotations

from typing import Any

import pytest

from connector import connections
from connector.db import Database
from connector.errors import UnexpectedResponseError
from flows import FLOWS, payables_vendors
from flows import vendor_sync as vendors
from sandbox.concur.admin import ConcurAdmin
from tests.flows import payables_support as ps

CONCUR_VENDORS = "/concur/*/api/v3.1/invoice/vendors"
SHAPES = ("items", "vendor", "items_vendor")


@pytest.fixture
def env(db: Database, sandbox_settings: Any, connected: int, admin: Any, sandbox: Any) -> Any:
    # No snapshots on the links: the payables map step must search Concur for the vendor.
    contacts = ps.set_up(db, sandbox_settings, connected, sandbox.url, snapshots=False)

    class Env:
        pass

    e = Env()
    e.db, e.settings, e.cid, e.admin, e.sandbox = db, sandbox_settings, connected, admin, sandbox
    e.contacts, e.accounts = contacts, ps.zoho_accounts(db, sandbox_settings, connected)
    e.concur = ConcurAdmin(sandbox.url)
    yield e
    payables_vendors.forget_vendors()


def post_bill(env: Any, contact: str = "Delta Air Lines") -> Any:
    doc = env.admin.zoho_create(
        ps.ORG,
        "bill",
        vendor_name=contact,
        currency_code="USD",
        line_items=[
            {"account_id": env.accounts["Airfare"], "description": "x", "rate": 100, "quantity": 1}
        ],
    )
    rid = ps.new_record(env.db, env.cid, "bill", doc)
    ps.drive(env.db, env.settings, rid)
    return ps.record(env.db, rid)


@pytest.mark.parametrize("shape", SHAPES)
def test_payables_vendor_lookup_reads_every_shape(env: Any, shape: str) -> None:
    assert env.concur.settings(vendor_search_shape=shape)["vendor_search_shape"] == shape
    rec = post_bill(env)
    assert rec.state == "posted", rec.last_error_message
    code, address, *_ = ps.LINKS["Delta Air Lines"]
    [request] = ps.requests_numbered(env.sandbox, rec.stable_ref)
    remit = request["VendorRemitToIdentifier"]
    assert (remit["VendorCode"], remit["AddressCode"]) == (code, address)
    assert remit["Name"] == "Delta Air Lines"  # read from the search: the link had no snapshot


def test_payables_unknown_vendor_shape_fails_with_the_url_and_keys(env: Any) -> None:
    env.admin.add_fault("GET", CONCUR_VENDORS, "unexpected_shape", count=5)
    rec = post_bill(env)
    message = rec.last_error_message or ""
    assert rec.state == "failed", (rec.state, message)
    assert "unexpected vendor search shape" in message
    assert "/api/v3.1/invoice/vendors" in message and "?" not in message
    assert "'unexpected'" in message and "Items.Vendor" in message
    assert "AttributeError" not in message and "Traceback" not in message


@pytest.mark.parametrize("shape", SHAPES)
def test_vendors_pass_reads_every_shape(
    db: Database, sandbox_settings: Any, connected: int, sandbox: Any, shape: str
) -> None:
    ConcurAdmin(sandbox.url).settings(vendor_search_shape=shape)
    result = FLOWS.sync(db, sandbox_settings, connected, vendors.FLOW)
    assert result.summary.startswith("ok: 6 linked"), result.summary  # as in the default shape
    client = connections.concur_client(db, sandbox_settings, connected)
    try:
        found = client.vendors.find(vendorCode="GLOBEX")
    finally:
        client.close()
    assert {v["AddressCode"] for v in found} == {"HQ", "REMIT2"}


def test_vendors_pass_unknown_shape_is_a_clear_error(
    db: Database, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    admin.add_fault("GET", CONCUR_VENDORS, "unexpected_shape")
    with pytest.raises(UnexpectedResponseError, match=r"invoice/vendors.*'unexpected'"):
        FLOWS.sync(db, sandbox_settings, connected, vendors.FLOW)


@pytest.mark.parametrize("key", ["results", "options", "reporting_tag.options"])
def test_tag_options_read_every_key(
    db: Database, sandbox_settings: Any, connected: int, admin: Any, key: str
) -> None:
    admin.zoho_settings(tag_options_key=key)
    client = connections.zoho_client(db, sandbox_settings, connected)
    try:
        tags = list(client.reporting_tags.iter_all())
        options = client.reporting_tags.options(str(tags[0]["tag_id"]))
        admin.add_fault(
            "GET", "/zoho/*/api/books/v3/reportingtags/*/options/all", "unexpected_shape"
        )
        with pytest.raises(UnexpectedResponseError) as caught:
            client.reporting_tags.options(str(tags[0]["tag_id"]))
    finally:
        client.close()
    assert {o["option_id"] for o in options} >= {"untagged"} and len(options) > 1
    assert f"reportingtags/{tags[0]['tag_id']}/options/all" in str(caught.value)
