"""Concur Event Subscription Service: subscriptions and signed, retried statusChanged delivery."""

from __future__ import annotations

import json

try:
    from tests.sandbox.concur_fixtures import (
        US,
        ConcurHarness,
        ConcurReceiver,
        concur,
        concur_receiver,
    )
except ImportError:
    from concur_fixtures import (  # type: ignore[no-redef]  # noqa: F401
        US,
        ConcurHarness,
        ConcurReceiver,
        concur,
        concur_receiver,
    )

from sandbox.concur.signing import verify_event

TOPIC = "public.concur.expense.report"


def subscribe(concur: ConcurHarness, endpoint: str, sub_id: str = "zoho-connector", **extra: str):
    body = {"id": sub_id, "topic": TOPIC, "filter": ".*", "webHookConfig": {"endpoint": endpoint}}
    body.update(extra)
    return concur.http.put(
        f"{concur.geo()}/events/v4/subscriptions/webhook", json=body, headers=concur.app_headers()
    )


def pending_report(concur: ConcurHarness) -> dict:
    return concur.http.get(
        f"{concur.geo()}/api/v3.0/expense/reports",
        params={"user": "ALL", "approvalStatusCode": "A_PEND"},
        headers=concur.headers(),
    ).json()["Items"][0]


def test_subscription_crud_and_limits(concur: ConcurHarness) -> None:
    app = concur.app_headers()
    base = f"{concur.geo()}/events/v4/subscriptions"
    assert concur.http.get(f"{concur.geo()}/events/v4/topics", headers=app).json() == [TOPIC]
    resp = subscribe(concur, "https://example.test/hook", "sub-a")
    assert resp.status_code == 200
    assert resp.json() == {"message": "Subscription 'sub-a' saved successfully"}
    # PUT again updates in place
    assert subscribe(concur, "https://example.test/hook2", "sub-a").status_code == 200
    listed = concur.http.get(base, headers=app).json()
    assert [s["id"] for s in listed] == ["sub-a"]
    sub = listed[0]
    assert sub["webHookConfig"]["endpoint"] == "https://example.test/hook2"
    assert US in sub["companyIds"] and sub["applicationId"]
    assert concur.http.get(f"{base}/sub-a", headers=app).json()["id"] == "sub-a"
    for n in range(4):
        assert subscribe(concur, "https://example.test/h", f"sub-{n}").status_code == 200
    sixth = subscribe(concur, "https://example.test/h", "sub-too-many")
    assert sixth.status_code == 400
    assert sixth.json()["error"]["id"] == "subscription.limit.reached"
    deleted = concur.http.delete(f"{base}/sub-a", headers=app)
    assert deleted.status_code == 200 and "sub-a" in deleted.json()["message"]
    assert concur.http.get(f"{base}/sub-a", headers=app).status_code == 404
    assert subscribe(concur, "https://example.test/h", "sub-too-many").status_code == 200


def test_subscription_validation(concur: ConcurHarness) -> None:
    assert subscribe(concur, "https://example.test/h", "Has Upper").status_code == 400
    assert subscribe(concur, "not-a-url").status_code == 400
    unknown = concur.http.put(
        f"{concur.geo()}/events/v4/subscriptions/webhook",
        json={"id": "x", "topic": "public.concur.nope", "webHookConfig": {"endpoint": "https://a"}},
        headers=concur.app_headers(),
    )
    assert unknown.status_code == 404
    assert subscribe(concur, "https://example.test/h", filter="(").status_code == 400


def test_approval_delivers_signed_status_changed(
    concur: ConcurHarness, concur_receiver: ConcurReceiver
) -> None:
    assert subscribe(concur, concur_receiver.url).status_code == 200
    report = pending_report(concur)
    result = concur.admin.approve(report["ID"])
    assert len(result["events"]) == 1
    call = concur_receiver.wait_for(1)[0]
    pem = concur.http.get(f"{concur.url}/_admin/concur/public-key.pem").content
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert verify_event(pem, call["body"], call["headers"]["Concur-Signature"])
    assert not verify_event(pem, call["body"] + b" ", call["headers"]["Concur-Signature"])
    event = call["json"]
    assert set(event) == {
        "id",
        "correlationId",
        "route",
        "topic",
        "eventType",
        "timeStamp",
        "facts",
    }
    assert event["topic"] == TOPIC and event["eventType"] == "statusChanged"
    assert event["route"] == "stable" and event["timeStamp"].endswith("Z")
    facts = event["facts"]
    assert facts["companyId"] == US and facts["reportId"] == report["ID"]
    assert facts["previousApprovalStatus"] == "A_PEND"
    assert facts["currentApprovalStatus"] == "A_APPR"
    assert facts["currentPaymentStatus"] == "P_PROC"
    assert facts["reportType"] == "Regular"
    assert facts["href"].startswith(concur.geo("us2") + "/expensereports/v4/users/")
    # the href works with a company token
    detail = concur.http.get(facts["href"], headers=concur.headers())
    assert detail.status_code == 200 and detail.json()["approvalStatusId"] == "A_APPR"
    # and the report now shows up as ready to post
    ready = concur.http.get(
        f"{concur.geo()}/api/v3.0/expense/reports",
        params={"user": "ALL", "approvalStatusCode": "A_APPR", "paymentStatusCode": "P_PROC"},
        headers=concur.headers(),
    ).json()["Items"]
    assert report["ID"] in {r["ID"] for r in ready}


def test_delivery_retries_on_5xx_and_429(
    concur: ConcurHarness, concur_receiver: ConcurReceiver
) -> None:
    concur_receiver.script = [500, 429, 403]
    subscribe(concur, concur_receiver.url)
    concur.admin.approve(pending_report(concur)["ID"])
    calls = concur_receiver.wait_for(4)
    assert [c["status"] for c in calls] == [500, 429, 403, 200]
    assert len({c["json"]["id"] for c in calls}) == 1  # same event, at least once
    assert len({c["headers"]["Concur-Signature"] for c in calls}) == 1
    assert concur.state.deliverer.flush(5)
    assert len(concur_receiver.requests) == 4


def test_filter_and_other_transitions(
    concur: ConcurHarness, concur_receiver: ConcurReceiver
) -> None:
    subscribe(concur, concur_receiver.url, filter="reportCreated")
    report = pending_report(concur)
    assert concur.admin.approve(report["ID"])["events"] == []
    subscribe(concur, concur_receiver.url)  # now every event type
    paid = concur.admin.transition(report["ID"], "pay")
    assert paid["facts"]["currentPaymentStatus"] == "P_PAID"
    assert paid["facts"]["stepCode"] == "PAIDREPORT"
    event = concur_receiver.wait_for(1)[0]["json"]
    assert event["facts"]["previousPaymentStatus"] == "P_PROC"
    published = concur.admin.events()
    assert [e["event"]["id"] for e in published["events"]] == [event["id"]]
    assert (
        concur.http.post(
            f"{concur.url}/_admin/concur/reports/{report['ID']}/approve", json={}
        ).status_code
        == 409
    )


def test_html_page_approval_fires_the_event(
    concur: ConcurHarness, concur_receiver: ConcurReceiver
) -> None:
    subscribe(concur, concur_receiver.url)
    report = pending_report(concur)
    page = concur.http.get(f"{concur.url}/_admin/concur/ui")
    assert page.status_code == 200 and report["ID"] in page.text
    resp = concur.http.post(
        f"{concur.url}/_admin/concur/reports/{report['ID']}/approve",
        data={"via": "ui"},
        allow_redirects=False,
    )
    assert resp.status_code == 303
    event = concur_receiver.wait_for(1)[0]["json"]
    assert event["facts"]["reportId"] == report["ID"]


def test_new_company_joins_company_ids_on_bootstrap(
    concur: ConcurHarness, concur_receiver: ConcurReceiver
) -> None:
    made = concur.admin.create_company(geo="us2", name="Fresh Co")
    subscribe(concur, concur_receiver.url)
    subs = concur.http.get(
        f"{concur.geo()}/events/v4/subscriptions", headers=concur.app_headers()
    ).json()
    assert made["company_id"] not in subs[0]["companyIds"]
    assert concur.bootstrap("us2", made["company_id"], made["request_token"]).status_code == 200
    subs = concur.http.get(
        f"{concur.geo()}/events/v4/subscriptions", headers=concur.app_headers()
    ).json()
    assert made["company_id"] in subs[0]["companyIds"]
    assert json.loads(json.dumps(subs))  # plain JSON
