"""``POST /webhooks/zoho/<id>``: authenticated, stored before 202, de-duplicated, every bad input
answered with a clear 4xx and nothing stored for an unauthenticated request."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from connector.config import Settings
from connector.db import Database
from connector.models import Connection, WebhookEvent
from connector.vault import Vault
from connector.webhook_secrets import derive_token
from webhooks import create_app
from webhooks.zoho import NOT_AUTHENTICATED

KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="
SECRET = "whsecAbc123def456"
#: The delivery token goes with the secret but is not the secret (docs/security.md).
TOKEN = derive_token(SECRET)
BILL = {
    "bill": {
        "bill_id": "4600000001",
        "bill_number": "BILL-1",
        "last_modified_time": "2026-11-28T10:00:00+0000",
    }
}


def sign(params: list[tuple[str, str]], body: bytes, secret: str = SECRET) -> str:
    canonical = "".join(k + v for k, v in sorted(params)).encode() + body
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


@pytest.fixture
def app_and_calls(db: Database, tmp_path: Path) -> tuple[Any, list[int], int]:
    settings = Settings.from_env({"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path)})
    with db.session() as s:
        conn = Connection(name="zoho-wh", webhook_secret_enc=Vault([KEY]).encrypt(SECRET))
        bare = Connection(name="no-secret")
        s.add_all([conn, bare])
        s.flush()
        ids = (conn.id, bare.id)
    calls: list[int] = []
    app = create_app(settings, db=db, config={"ENQUEUE_EVENT": calls.append})
    return app.test_client(), calls, ids  # type: ignore[return-value]


def events(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(WebhookEvent)) or 0


def test_signed_json_is_stored_enqueued_and_deduplicated(app_and_calls: Any, db: Database) -> None:
    client, calls, (cid, _) = app_and_calls
    body = json.dumps(BILL).encode()
    headers = {"X-Zoho-Webhook-Signature": sign([], body), "Content-Type": "application/json"}
    first = client.post(f"/webhooks/zoho/{cid}", data=body, headers=headers)
    assert first.status_code == 202, first.json
    event_id = first.json["event_id"]
    again = client.post(f"/webhooks/zoho/{cid}", data=body, headers=headers)
    assert again.status_code == 200 and calls == [event_id, event_id] and events(db) == 1
    with db.session() as s:
        s.get(WebhookEvent, event_id).status = "processed"
    third = client.post(f"/webhooks/zoho/{cid}", data=body, headers=headers)
    assert third.status_code == 200 and third.json["status"] == "duplicate" and len(calls) == 2
    with db.session() as s:
        event = s.get(WebhookEvent, first.json["event_id"])
        assert event.event_type == "bill" and event.status == "processed"
        assert event.dedupe_key == f"{cid}:bill:4600000001:2026-11-28T10:00:00+0000"
        assert "x-zoho-webhook-signature" in event.headers and "authorization" not in event.headers


def test_form_encoded_jsonstring_with_query_params_is_accepted(app_and_calls: Any) -> None:
    client, calls, (cid, _) = app_and_calls
    payload = json.dumps(BILL)
    params = [("src", "books"), ("JSONString", payload)]
    response = client.post(
        f"/webhooks/zoho/{cid}?src=books",
        data=urlencode({"JSONString": payload}),
        headers={
            "X-Zoho-Webhook-Signature": sign(params, b""),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 202, response.json
    assert len(calls) == 1


@pytest.mark.parametrize("where", ["header", "query"])
def test_shared_token_instead_of_signature(app_and_calls: Any, where: str) -> None:
    client, _, (cid, _) = app_and_calls
    url = f"/webhooks/zoho/{cid}" + (f"?token={TOKEN}" if where == "query" else "")
    headers = {"X-Connector-Token": TOKEN} if where == "header" else {}
    assert client.post(url, json=BILL, headers=headers).status_code == 202


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({}, "unauthenticated", id="nothing"),
        pytest.param({"X-Zoho-Webhook-Signature": "00" * 32}, "does not match", id="bad-signature"),
        pytest.param({"X-Connector-Token": "wrong"}, "shared token does not match", id="bad-token"),
    ],
)
def test_unauthenticated_requests_get_401_and_store_nothing(
    app_and_calls: Any,
    db: Database,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    reason: str,
) -> None:
    """The sender gets one uniform answer (#12.5: no telling which part was wrong); the
    operator's log says exactly why the delivery was refused."""
    client, calls, (cid, _) = app_and_calls
    with caplog.at_level(logging.WARNING, logger="webhooks.zoho"):
        response = client.post(f"/webhooks/zoho/{cid}", json=BILL, headers=headers)
    assert response.status_code == 401
    assert response.json["message"] == NOT_AUTHENTICATED
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and reason in refusals[0], refusals
    assert events(db) == 0 and calls == []


def test_signature_over_a_tampered_body_fails(app_and_calls: Any, db: Database) -> None:
    client, _, (cid, _) = app_and_calls
    body = json.dumps(BILL).encode()
    tampered = body.replace(b"BILL-1", b"BILL-2")
    response = client.post(
        f"/webhooks/zoho/{cid}",
        data=tampered,
        headers={"X-Zoho-Webhook-Signature": sign([], body), "Content-Type": "application/json"},
    )
    assert response.status_code == 401 and events(db) == 0


def test_unknown_connection_and_connection_without_secret(app_and_calls: Any, db: Database) -> None:
    """Issue #12.5, no enumeration: an unknown id, a known id without a secret and a known id
    with a wrong signature get the same status and the same body; nothing is stored."""
    client, _, (cid, bare) = app_and_calls
    wrong = {"X-Zoho-Webhook-Signature": "0" * 64}
    answers = [
        client.post("/webhooks/zoho/999999", json=BILL, headers=wrong),
        client.post("/webhooks/zoho/999999", json=BILL),
        client.post(f"/webhooks/zoho/{bare}", json=BILL, headers={"X-Connector-Token": "x"}),
    ]
    known_bad = client.post(f"/webhooks/zoho/{cid}", json=BILL, headers=wrong)
    assert known_bad.status_code == 401
    for response in answers:
        assert response.status_code == known_bad.status_code
        assert set(response.json) == set(known_bad.json) == {"error", "message"}
        assert response.json["error"] == known_bad.json["error"]
    assert answers[0].json == answers[1].json == answers[2].json
    assert events(db) == 0


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        pytest.param(b"", "application/json", "empty body", id="empty"),
        pytest.param(b"{not json", "application/json", "not valid JSON", id="broken-json"),
        pytest.param(b"[1, 2]", "application/json", "JSON object", id="array"),
        pytest.param(b'{"bill": "x"}', "application/json", "must hold an object", id="not-object"),
        pytest.param(
            b'{"bill": {"bill_number": "B"}}', "application/json", "no bill_id", id="no-id"
        ),
        pytest.param(
            b"foo=bar",
            "application/x-www-form-urlencoded",
            "without a JSONString",
            id="form-no-jsonstring",
        ),
    ],
)
def test_malformed_bodies_get_400_naming_the_problem(
    app_and_calls: Any, db: Database, body: bytes, content_type: str, fragment: str
) -> None:
    client, _, (cid, _) = app_and_calls
    params = [("foo", "bar")] if content_type.endswith("urlencoded") else []
    sig = sign(params, b"" if params else body)
    response = client.post(
        f"/webhooks/zoho/{cid}",
        data=body,
        headers={"X-Zoho-Webhook-Signature": sig, "Content-Type": content_type},
    )
    assert response.status_code == 400 and fragment in response.json["message"], response.json
    assert events(db) == 0


def test_other_entities_are_stored_for_the_record(app_and_calls: Any, db: Database) -> None:
    client, calls, (cid, _) = app_and_calls
    response = client.post(
        f"/webhooks/zoho/{cid}",
        json={"payment": {"payment_id": "9"}},
        headers={"X-Connector-Token": TOKEN},
    )
    assert response.status_code == 202 and events(db) == 1 and len(calls) == 1


def test_broker_down_answers_503_and_the_retry_enqueues(db: Database, tmp_path: Path) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    settings = Settings.from_env({"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path)})
    with db.session() as s:
        conn = Connection(name="brokerless", webhook_secret_enc=Vault([KEY]).encrypt(SECRET))
        s.add(conn)
        s.flush()
        cid = conn.id
    calls: list[int] = []
    broken = {"down": True}

    def enqueue(event_id: int) -> None:
        if broken["down"]:
            raise RedisConnectionError("connection refused")
        calls.append(event_id)

    client = create_app(settings, db=db, config={"ENQUEUE_EVENT": enqueue}).test_client()
    first = client.post(f"/webhooks/zoho/{cid}", json=BILL, headers={"X-Connector-Token": TOKEN})
    assert first.status_code == 503 and first.json["error"] == "unavailable"
    assert events(db) == 1  # kept: the sweeper can relay it even if the sender never retries
    broken["down"] = False
    retry = client.post(f"/webhooks/zoho/{cid}", json=BILL, headers={"X-Connector-Token": TOKEN})
    assert retry.status_code == 200 and len(calls) == 1 and events(db) == 1


def test_database_down_answers_503(tmp_path: Path) -> None:
    settings = Settings.from_env({"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path)})
    dead = Database("postgresql://postgres@127.0.0.1:1/none")
    client = create_app(settings, db=dead, config={"ENQUEUE_EVENT": lambda _id: None}).test_client()
    response = client.post("/webhooks/zoho/1", json=BILL)
    assert response.status_code == 503 and "database unavailable" in response.json["message"]


def test_sandbox_signed_delivery_verifies() -> None:
    """The sandbox signs independently (sandbox/zoho/webhooks.py); our verifier must agree."""
    from sandbox.zoho.webhooks import sign as sandbox_sign
    from webhooks.signatures import verify_zoho

    body = json.dumps(BILL).encode()
    params = [("a", "1"), ("JSONString", "x")]
    assert (
        verify_zoho(
            SECRET,
            params=params,
            body=body,
            signature=sandbox_sign(SECRET, params, body),
            token=None,
        )
        == "signature"
    )


def test_a_rotated_secret_applies_to_the_very_next_delivery(
    app_and_calls: Any, db: Database
) -> None:
    """The receiver keeps decrypted secrets per stored ciphertext (B3): rotating the secret
    stores a new ciphertext, so the old secret stops working at once and the new one works."""
    client, _calls, (cid, _) = app_and_calls
    body = json.dumps(BILL).encode()
    headers = {"X-Zoho-Webhook-Signature": sign([], body), "Content-Type": "application/json"}
    assert client.post(f"/webhooks/zoho/{cid}", data=body, headers=headers).status_code == 202
    with db.session() as s:
        s.get(Connection, cid).webhook_secret_enc = Vault([KEY]).encrypt("rotatedSecret9876")
    other = json.dumps({"bill": {**BILL["bill"], "bill_id": "4600000002"}}).encode()
    stale = {"X-Zoho-Webhook-Signature": sign([], other), "Content-Type": "application/json"}
    assert client.post(f"/webhooks/zoho/{cid}", data=other, headers=stale).status_code == 401
    fresh = {
        "X-Zoho-Webhook-Signature": sign([], other, "rotatedSecret9876"),
        "Content-Type": "application/json",
    }
    assert client.post(f"/webhooks/zoho/{cid}", data=other, headers=fresh).status_code == 202
