"""Fault injection: error answers, delay, dropped connections and commit-then-fail."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
import requests

from sandbox.zoho.seed import MAIN_ORG_ID as MAIN_ORG

if TYPE_CHECKING:
    from sandbox.admin import AdminClient
    from tests.sandbox.conftest import Zoho

BILLS = "/zoho/us/api/books/v3/bills"
JOURNALS = "/zoho/us/api/books/v3/journals"


def _journal(zoho: Zoho, ref: str) -> dict[str, object]:
    acc = zoho.lookup()["accounts"]
    return {
        "journal_date": "2025-06-30",
        "reference_number": ref,
        "line_items": [
            {"account_id": acc["Airfare"], "debit_or_credit": "debit", "amount": 300},
            {
                "account_id": acc["Employee Reimbursements"],
                "debit_or_credit": "credit",
                "amount": 300,
            },
        ],
    }


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_error_faults_answer_before_the_view_then_expire(
    zoho: Zoho, admin: AdminClient, status: int
) -> None:
    admin.add_fault("GET", BILLS, status, count=2)
    first = zoho.get("/bills")
    second = zoho.get("/bills")
    assert first.status_code == second.status_code == status
    assert zoho.get("/bills").status_code == 200
    if status in (429, 500):
        assert first.json()["code"] == {429: 45, 500: 1000}[status]
        assert "Retry-After" not in first.headers
    else:
        assert first.headers["Content-Type"].startswith("text/html")
    assert admin.faults()["faults"] == []


def test_faults_match_method_and_glob(zoho: Zoho, admin: AdminClient) -> None:
    admin.add_fault("POST", "/zoho/*/api/books/v3/*", 503)
    assert zoho.get("/bills").status_code == 200  # GET does not match
    assert zoho.post("/contacts", json={"contact_name": "X"}).status_code == 503
    admin.add_fault("*", "/zoho/eu/*", 500)
    assert zoho.get("/bills").status_code == 200  # other data centre
    admin.clear_faults()
    assert admin.faults()["faults"] == []


def test_delay_fault(zoho: Zoho, admin: AdminClient) -> None:
    admin.add_fault("GET", BILLS, "delay", delay=0.3)
    start = time.monotonic()
    r = zoho.get("/bills")
    assert r.status_code == 200 and time.monotonic() - start >= 0.3
    with pytest.raises(requests.Timeout):
        admin.add_fault("GET", BILLS, "delay", delay=0.5)
        zoho.http.get(
            zoho.books_url("/bills"),
            params={"organization_id": MAIN_ORG},
            headers={"Authorization": f"Zoho-oauthtoken {zoho.access_token}"},
            timeout=0.1,
        )


def test_drop_closes_the_connection_without_an_answer(zoho: Zoho, admin: AdminClient) -> None:
    admin.add_fault("GET", BILLS, "drop")
    with pytest.raises(requests.ConnectionError):
        zoho.get("/bills")
    assert zoho.get("/bills").status_code == 200


def test_drop_before_a_write_stores_nothing(zoho: Zoho, admin: AdminClient) -> None:
    admin.add_fault("POST", JOURNALS, "drop")
    with pytest.raises(requests.ConnectionError):
        zoho.post("/journals", json=_journal(zoho, "RPT-DROP"))
    assert zoho.get("/journals", params={"reference_number": "RPT-DROP"}).json()["journals"] == []


def test_commit_then_fail_stores_the_write_and_loses_the_answer(
    zoho: Zoho, admin: AdminClient
) -> None:
    body = _journal(zoho, "RPT-CTF")
    admin.add_fault("POST", JOURNALS, "commit_then_fail")
    with pytest.raises(requests.ConnectionError):
        zoho.post("/journals", json=body)
    stored = zoho.get("/journals", params={"reference_number": "RPT-CTF"}).json()["journals"]
    assert len(stored) == 1
    # A naive client that simply retries creates the duplicate the report is there to catch.
    assert zoho.post("/journals", json=body).status_code == 201
    dups = admin.duplicates()["zoho"]["journals_by_reference_number"]
    assert dups == [
        {
            "organization_id": MAIN_ORG,
            "reference_number": "RPT-CTF",
            "journal_ids": dups[0]["journal_ids"],
            "count": 2,
        }
    ]


def test_fault_history_and_admin_is_never_faulted(admin: AdminClient, zoho: Zoho) -> None:
    admin.add_fault("*", "*", 500, count=5)
    assert admin.stats()["total"] >= 0  # /_admin is exempt
    assert zoho.get("/bills").status_code == 500
    history = admin.faults()["history"]
    assert history[-1]["path"] == BILLS and history[-1]["kind"] == "500"
    assert admin.faults()["faults"][0]["remaining"] == 4


@pytest.mark.parametrize(
    "body", [{"kind": "explode"}, {"kind": "500", "count": 0}, {"kind": "delay", "delay": 0}]
)
def test_bad_fault_definitions_are_400(admin: AdminClient, body: dict[str, object]) -> None:
    r = requests.post(f"{admin.base_url}/_admin/faults", json={"path": "*", **body})
    assert r.status_code == 400 and r.json()["error"]


def test_faults_work_on_the_accounts_server(zoho: Zoho, admin: AdminClient) -> None:
    admin.add_fault("POST", "/zoho/us/accounts/oauth/v2/token", 503)
    r = zoho.token(
        zoho.accounts_server, grant_type="refresh_token", refresh_token=zoho.refresh_token
    )
    assert r.status_code == 503
    assert "access_token" in zoho.refresh()
