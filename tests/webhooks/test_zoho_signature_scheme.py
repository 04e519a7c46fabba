"""The Zoho receiver's authentication (issue #14.2, #12.2): the signature covers every query
parameter (``token`` included), the token is not the signing secret, a wrong signature is not
rescued by a right token, hex or base64 by setting, and a masked diagnosis for
``--inspect-last``. Deliveries are built by the sandbox's own signer (sandbox/zoho/webhooks.py)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from connector.config import Settings
from connector.db import Database
from connector.models import AuditEvent, Connection, WebhookEvent
from connector.vault import Vault
from connector.webhook_secrets import DIAGNOSIS_STEP, derive_token, last_diagnosis
from sandbox.zoho.webhooks import build_request
from webhooks import create_app
from webhooks import zoho as zoho_receiver

KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="
SECRET = "Zk3v9QpL2mW8xR4tY7uB1nC6dF0gH5jK"
TOKEN = derive_token(SECRET)
BILL = {"bill_id": "4600000009", "last_modified_time": "2026-12-01T10:00:00+0000"}


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    zoho_receiver._diagnosed.clear()
    yield
    zoho_receiver._diagnosed.clear()


def _client(db: Database, tmp_path: Path, **env: str) -> tuple[Any, int]:
    settings = Settings.from_env(
        {"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path), **env}
    )
    with db.session() as s:
        conn = Connection(name="sig", webhook_secret_enc=Vault([KEY]).encrypt(SECRET))
        s.add(conn)
        s.flush()
        cid = conn.id
    app = create_app(settings, db=db, config={"ENQUEUE_EVENT": lambda _id: None})
    return app.test_client(), cid


def _deliver(client: Any, cid: int, query: str, *, fmt: str = "json", encoding: str = "hex",
             secret: str = SECRET, extra: dict[str, str] | None = None) -> Any:  # fmt: skip
    """POST exactly what the sandbox's Zoho would send for a webhook configured with ``query``."""
    config = {"url": f"http://receiver/webhooks/zoho/{cid}{query}", "secret": secret, "format": fmt}
    url, body, headers = build_request(config, "bill", BILL, encoding)
    return client.post(url.removeprefix("http://receiver"), data=body,
                       headers={**headers, **(extra or {})})  # fmt: skip


def _events(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(WebhookEvent)) or 0


@pytest.mark.parametrize("fmt", ["json", "form"])
def test_signature_covers_the_token_query_parameter(db: Database, tmp_path: Path, fmt: str) -> None:
    """A customer who signs AND puts the token in the URL: Zoho signs the whole URL's query, so
    the receiver must too (it used to leave ``token`` out and refuse every such delivery)."""
    client, cid = _client(db, tmp_path)
    response = _deliver(client, cid, f"?src=books&token={TOKEN}", fmt=fmt)
    assert response.status_code == 202, response.json


def test_the_signing_secret_is_not_accepted_as_token(db: Database, tmp_path: Path) -> None:
    """The token in the URL is not the HMAC key: the secret itself is refused as a token."""
    client, cid = _client(db, tmp_path)
    for headers, url in (({"X-Connector-Token": SECRET}, ""), ({}, f"?token={SECRET}")):
        response = client.post(f"/webhooks/zoho/{cid}{url}", json={"bill": BILL}, headers=headers)
        assert (
            response.status_code == 401
            and response.json["message"] == zoho_receiver.NOT_AUTHENTICATED
        )
    assert _events(db) == 0
    assert (
        client.post(f"/webhooks/zoho/{cid}?token={TOKEN}", json={"bill": BILL}).status_code == 202
    )


def test_a_wrong_signature_is_refused_even_with_the_right_token(
    db: Database, tmp_path: Path
) -> None:
    """Fail closed: the logged credential (token) never overrides the signature."""
    client, cid = _client(db, tmp_path)
    response = _deliver(client, cid, f"?token={TOKEN}", secret="WrongSecret0123456789")
    assert response.status_code == 401
    assert response.json["message"] == zoho_receiver.NOT_AUTHENTICATED and _events(db) == 0
    header = _deliver(client, cid, "", secret="WrongSecret0123456789",
                      extra={"X-Connector-Token": TOKEN})  # fmt: skip
    assert header.status_code == 401 and _events(db) == 0


@pytest.mark.parametrize(("setting", "sent", "status"),
                         [("hex", "hex", 202), ("base64", "base64", 202), ("hex", "base64", 401),
                          ("base64", "hex", 401)])  # fmt: skip
def test_signature_encoding_follows_the_setting(
    db: Database, tmp_path: Path, setting: str, sent: str, status: int
) -> None:
    client, cid = _client(db, tmp_path, ZOHO_WEBHOOK_SIGNATURE_ENCODING=setting)
    assert _deliver(client, cid, "?a=1", encoding=sent).status_code == status


def test_bad_encoding_setting_is_a_configuration_error(tmp_path: Path) -> None:
    from connector.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="ZOHO_WEBHOOK_SIGNATURE_ENCODING"):
        Settings.from_env({"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path),
                           "ZOHO_WEBHOOK_SIGNATURE_ENCODING": "hmac"})  # fmt: skip


def test_diagnosis_is_kept_masked_and_throttled(db: Database, tmp_path: Path) -> None:
    client, cid = _client(db, tmp_path)
    start = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)
    with freeze_time(start) as frozen:
        assert _deliver(client, cid, f"?token={TOKEN}&x=1", encoding="base64").status_code == 401
        found = last_diagnosis(db, cid)
        assert found is not None and found["outcome"] == "refused"
        by_variant = {t["variant"]: t["matches"] for t in found["tried"]}
        documented = next(v for v in by_variant if v.startswith("all query"))
        assert by_variant[documented] == {"hex": False, "base64": True}
        assert ["token", "***"] in found["query"] and ["x", "1"] in found["query"]
        assert found["token_received"] and found["token_matches"]
        # A flood of refusals costs one row a minute, not one per request.
        for _ in range(5):
            _deliver(client, cid, "?x=2", encoding="base64")
        frozen.tick(dt.timedelta(seconds=61))
        _deliver(client, cid, "?x=3", encoding="base64")
        assert _deliver(client, cid, "?x=4").status_code == 202
    with db.session() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.step == DIAGNOSIS_STEP)).all()
        assert [r.outcome for r in rows] == ["refused", "refused", "accepted_signature"]
        dumped = json.dumps([r.details for r in rows]) + " ".join(r.message or "" for r in rows)
    assert SECRET not in dumped and TOKEN not in dumped
