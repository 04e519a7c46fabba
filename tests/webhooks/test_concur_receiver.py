"""``POST /webhooks/concur``: ESS events verified with Concur-Signature, routed by companyId."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select

from connector.config import Settings
from connector.db import Database
from connector.models import Connection, WebhookEvent
from webhooks import create_app

KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="
COMPANY = "9d6f3a52-0c1e-4d7b-9a35-5b1f0c2e7a11"


def write_key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key


def signed(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def event(**facts: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "correlationId": "c-1",
        "route": "stable",
        "topic": "public.concur.expense.report",
        "eventType": "statusChanged",
        "timeStamp": "2026-11-28T10:00:00Z",
        "facts": {
            "companyId": COMPANY,
            "reportId": "ABCDEF123",
            "currentApprovalStatus": "A_APPR",
            **facts,
        },
    }


@pytest.fixture
def setup(db: Database, tmp_path: Path) -> Any:
    old, new = write_key(tmp_path / "old.pem"), write_key(tmp_path / "new.pem")
    settings = Settings.from_env(
        {
            "CONNECTOR_SECRET_KEY": KEY,
            "CONNECTOR_VAR_DIR": str(tmp_path),
            "CONCUR_WEBHOOK_PUBLIC_KEYS": f"{tmp_path / 'old.pem'},{tmp_path / 'new.pem'}",
        }
    )
    with db.session() as s:
        s.add(Connection(name="concur-wh", concur_company_id=COMPANY))
    calls: list[int] = []
    client = create_app(settings, db=db, config={"ENQUEUE_EVENT": calls.append}).test_client()
    return client, calls, old, new


def count(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(WebhookEvent)) or 0


def post(client: Any, body: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"} | (
        {"Concur-Signature": signature} if signature else {}
    )
    return client.post("/webhooks/concur", data=body, headers=headers)


def test_signed_event_is_stored_once_with_either_rotation_key(setup: Any, db: Database) -> None:
    client, calls, old, new = setup
    body = json.dumps(event()).encode()
    assert post(client, body, signed(old, body)).status_code == 202
    # A redelivery before processing is stored once and enqueued again (processing is idempotent).
    assert post(client, body, signed(new, body)).status_code == 200  # other rotation key
    assert count(db) == 1 and calls == [calls[0], calls[0]]
    with db.session() as s:
        s.get(WebhookEvent, calls[0]).status = "processed"
    again = post(client, body, signed(new, body))
    assert again.status_code == 200 and again.json["status"] == "duplicate" and len(calls) == 2


@pytest.mark.parametrize(
    ("mutate", "status", "fragment"),
    [
        pytest.param(lambda b, k: (b, None), 401, "missing Concur-Signature", id="unsigned"),
        pytest.param(lambda b, k: (b, "!!notbase64"), 401, "not base64", id="garbage"),
        pytest.param(lambda b, k: (b + b" ", signed(k, b)), 401, "does not verify", id="tampered"),
    ],
)
def test_bad_signatures_get_401_and_store_nothing(
    setup: Any, db: Database, mutate: Any, status: int, fragment: str
) -> None:
    client, calls, old, _ = setup
    body, sig = mutate(json.dumps(event()).encode(), old)
    response = post(client, body, sig)
    assert response.status_code == status and fragment in response.json["message"]
    assert count(db) == 0 and calls == []


def test_unknown_company_is_stored_unrouted_and_malformed_is_400(setup: Any, db: Database) -> None:
    """An unknown company is answered like a known one (no enumeration; ESS drops 4xx) and
    stored unrouted (no connection) for intake to route once the company is connected."""
    client, _, old, _ = setup
    unknown = json.dumps(event(companyId="00000000-0000-0000-0000-000000000000")).encode()
    response = post(client, unknown, signed(old, unknown))
    assert response.status_code == 202 and set(response.json) == {"status", "event_id"}
    with db.session() as s:
        stored = s.get(WebhookEvent, response.json["event_id"])
        assert stored is not None and stored.connection_id is None
        assert stored.body == unknown.decode()  # the raw body, as received
        s.delete(stored)
    for body, fragment in [
        (b"{oops", "not valid JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"id": "x", "topic": "t"}).encode(), "eventType, facts"),
    ]:
        response = post(client, body, signed(old, body))
        assert response.status_code == 400 and fragment in response.json["message"], response.json
    assert count(db) == 0


def test_no_keys_configured_refuses_everything(db: Database, tmp_path: Path) -> None:
    settings = Settings.from_env({"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path)})
    client = create_app(settings, db=db, config={"ENQUEUE_EVENT": lambda _i: None}).test_client()
    response = client.post("/webhooks/concur", json=event(), headers={"Concur-Signature": "AAAA"})
    assert response.status_code == 401 and "CONCUR_WEBHOOK_PUBLIC_KEYS" in response.json["message"]


def test_sandbox_signed_event_verifies(tmp_path: Path) -> None:
    """The sandbox signs with its own key (sandbox/concur/signing.py); we verify with its PEM."""
    from sandbox.concur.signing import public_key_pem, sign_event
    from webhooks.signatures import load_public_keys, verify_concur

    (tmp_path / "sandbox.pem").write_bytes(public_key_pem())
    body = json.dumps(event()).encode()
    verify_concur(
        load_public_keys([str(tmp_path / "sandbox.pem")]), body=body, signature=sign_event(body)
    )
