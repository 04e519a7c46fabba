"""Outgoing Zoho webhooks: default payload, X-Zoho-Webhook-Signature, retries, triggers."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import requests

from sandbox.zoho.seed import MAIN_ORG_ID as MAIN_ORG

if TYPE_CHECKING:
    from sandbox.admin import AdminClient
    from tests.sandbox.conftest import Receiver, Zoho

SECRET = "s3cretS3cretS3cret"


def _expected(secret: str, params: list[tuple[str, str]], body: bytes) -> str:
    canonical = "".join(k + v for k, v in sorted(params)).encode() + body
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def test_new_bill_posts_default_payload_with_signature(
    admin: AdminClient, receiver: Receiver
) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/webhooks/zoho/1", SECRET)
    bill = admin.zoho_create(MAIN_ORG, "bill", amount=250.0, bill_number="WH-1")
    got = receiver.get()
    assert got.path == "/webhooks/zoho/1"
    assert got.headers["Content-Type"] == "application/json"
    payload = got.json()
    assert list(payload) == ["bill"] and payload["bill"]["bill_id"] == bill["bill_id"]
    assert payload["bill"]["total"] == 250.0 and payload["bill"]["line_items"]
    assert got.headers["X-Zoho-Webhook-Signature"] == _expected(SECRET, [], got.body)


def test_edit_invoice_and_vendor_fire_too(admin: AdminClient, receiver: Receiver) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook", SECRET)
    inv = admin.zoho_create(MAIN_ORG, "invoice", amount=10)
    assert receiver.get().json()["invoice"]["invoice_id"] == inv["invoice_id"]
    admin.zoho_edit(MAIN_ORG, "invoice", inv["invoice_id"], status="paid")
    edited = receiver.get().json()["invoice"]
    assert edited["status"] == "paid" and edited["balance"] == 0
    vendor = admin.zoho_create(MAIN_ORG, "vendor", contact_name="New Supplier Ltd")
    assert receiver.get().json()["contact"]["contact_id"] == vendor["contact_id"]
    admin.zoho_edit(MAIN_ORG, "vendor", vendor["contact_id"], contact_name="New Supplier Limited")
    assert receiver.get().json()["contact"]["contact_name"] == "New Supplier Limited"


def test_query_params_in_the_url_are_signed(admin: AdminClient, receiver: Receiver) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook?z=last&a=first", SECRET)
    admin.zoho_create(MAIN_ORG, "bill")
    got = receiver.get()
    params = [("a", "first"), ("z", "last")]
    assert got.headers["X-Zoho-Webhook-Signature"] == _expected(SECRET, params, got.body)


def test_form_encoded_jsonstring_format(admin: AdminClient, receiver: Receiver) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook", SECRET, format="form")
    bill = admin.zoho_create(MAIN_ORG, "bill")
    got = receiver.get()
    assert got.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = dict(parse_qsl(got.body.decode()))
    assert json.loads(form["JSONString"])["bill"]["bill_id"] == bill["bill_id"]
    expected = _expected(SECRET, [("JSONString", form["JSONString"])], b"")
    assert got.headers["X-Zoho-Webhook-Signature"] == expected


def test_failed_deliveries_are_retried(admin: AdminClient, receiver: Receiver) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook", SECRET)
    receiver.statuses[:] = [500, 503]
    admin.zoho_create(MAIN_ORG, "bill")
    bodies = [receiver.get().body for _ in range(3)]
    assert bodies[0] == bodies[1] == bodies[2]
    admin.flush_deliveries()
    attempts = admin.deliveries()["attempts"]
    assert [(a["attempt"], a["status"], a["ok"]) for a in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]


def test_client_errors_are_not_retried_and_attempts_are_capped(
    admin: AdminClient, receiver: Receiver
) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook", SECRET, attempts=3)
    receiver.statuses[:] = [400]
    admin.zoho_create(MAIN_ORG, "bill")
    admin.flush_deliveries()
    assert [a["status"] for a in admin.deliveries()["attempts"]] == [400]
    # Nothing listening: every attempt fails with an I/O error, three attempts in all.
    admin.zoho_set_webhook(MAIN_ORG, "http://127.0.0.1:9/closed", SECRET, attempts=3)
    admin.zoho_create(MAIN_ORG, "bill")
    admin.flush_deliveries()
    failed = [a for a in admin.deliveries()["attempts"] if a["url"].endswith("/closed")]
    assert len(failed) == 3 and all(a["error"] for a in failed)
    assert [a["will_retry"] for a in failed] == [True, True, False]


def test_api_created_vendor_fires_but_customer_does_not(
    zoho: Zoho, admin: AdminClient, receiver: Receiver
) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook", SECRET)
    zoho.post("/contacts", json={"contact_name": "Customer Co"})
    v = zoho.post("/contacts", json={"contact_name": "Vendor Co", "contact_type": "vendor"})
    got = receiver.get()
    assert got.json()["contact"]["contact_id"] == v.json()["contact"]["contact_id"]
    admin.flush_deliveries()
    assert receiver.drain() == []


def test_seed_fires_for_configured_orgs(admin: AdminClient, receiver: Receiver) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook", SECRET, entities=["vendor"])
    admin.seed()
    admin.flush_deliveries()
    got = receiver.drain()
    assert len(got) == 12 and all(r.json()["contact"]["contact_type"] == "vendor" for r in got)


def test_generated_records_fire_only_when_asked(admin: AdminClient, receiver: Receiver) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook", SECRET)
    admin.generate("zoho.bills", 5)
    admin.flush_deliveries()
    assert receiver.drain() == []
    admin.generate("zoho.bills", 3, webhooks=True)
    admin.flush_deliveries()
    assert len(receiver.drain()) == 3


def test_html_page_new_bill_and_edit_buttons(admin: AdminClient, receiver: Receiver) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook", SECRET)
    page = requests.get(f"{admin.base_url}/?org={MAIN_ORG}")
    assert page.status_code == 200 and "new bill" in page.text and "edit" in page.text
    vendor = admin.zoho_orgs()  # any vendor id will do
    assert vendor
    r = requests.post(
        f"{admin.base_url}/_admin/ui/{MAIN_ORG}/bill",
        data={"amount": "77.70", "bill_number": "UI-1"},
        allow_redirects=False,
    )
    assert r.status_code == 302
    created = receiver.get().json()["bill"]
    assert created["bill_number"] == "UI-1" and created["total"] == 77.7
    r = requests.post(
        f"{admin.base_url}/_admin/ui/{MAIN_ORG}/bill/{created['bill_id']}",
        data={"amount": "80", "status": "paid"},
    )
    assert r.status_code == 200 and "edited bill" in r.text
    edited = receiver.get().json()["bill"]
    assert edited["total"] == 80 and edited["status"] == "paid"
    r = requests.post(
        f"{admin.base_url}/_admin/ui/{MAIN_ORG}/vendor", data={"contact_name": "UI Vendor"}
    )
    assert "created vendor UI Vendor" in r.text
    assert receiver.get().json()["contact"]["contact_name"] == "UI Vendor"


def test_webhook_config_can_be_read_and_removed(admin: AdminClient, receiver: Receiver) -> None:
    admin.zoho_set_webhook(MAIN_ORG, f"{receiver.url}/hook", SECRET)
    got = admin._call("GET", f"/zoho/orgs/{MAIN_ORG}/webhook")["webhook"]
    assert got["url"].endswith("/hook") and got["entities"] == ["bill", "invoice", "vendor"]
    admin._call("DELETE", f"/zoho/orgs/{MAIN_ORG}/webhook")
    admin.zoho_create(MAIN_ORG, "bill")
    admin.flush_deliveries()
    assert receiver.drain() == []
