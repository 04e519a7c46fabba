"""Authenticated deliveries whose values PostgreSQL would refuse as they are (found by the chaos
suite's receiver fuzzing, docs/chaos.md): never answered 500 or 503. Since issue #12.3 they are
refused with 400 and a message (``connector.payloads``), and nothing is stored; before, they
were stored escaped or shortened:

- a NUL character (``\\u0000`` in the JSON) in an event id or a document id: PostgreSQL text
  refuses NUL, psycopg2 raised ``ValueError`` and the receiver answered 500;
- an ``eventType`` (or Zoho entity key) longer than the 64-character column: ``DataError``,
  answered 503 "database unavailable", so the sender retried it for ever;
- two event ids longer than the 255-character key column that share their first 255
  characters: the key was cut to 255, so the second event was taken for a repeat of the first
  and dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError

from connector.config import Settings
from connector.db import Database
from connector.models import Connection, WebhookEvent
from connector.vault import Vault
from tests.webhooks.test_concur_receiver import COMPANY, KEY, event, signed, write_key
from tests.webhooks.test_zoho_receiver import BILL, SECRET, sign
from webhooks import create_app


@pytest.fixture
def client(db: Database, tmp_path: Path) -> Any:
    private = write_key(tmp_path / "ess.pem")
    settings = Settings.from_env({
        "CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path),
        "CONCUR_WEBHOOK_PUBLIC_KEYS": str(tmp_path / "ess.pem"),
    })  # fmt: skip
    with db.session() as s:
        conn = Connection(
            name="limits", concur_company_id=COMPANY,
            webhook_secret_enc=Vault([KEY]).encrypt(SECRET),
        )  # fmt: skip
        s.add(conn)
        s.flush()
        cid = conn.id
    app = create_app(settings, db=db, config={"ENQUEUE_EVENT": lambda _id: None})
    return app, app.test_client(), private, cid


def _events(db: Database) -> list[WebhookEvent]:
    with db.session() as s:
        rows = list(s.execute(select(WebhookEvent).order_by(WebhookEvent.id)).scalars())
        for row in rows:
            s.expunge(row)
        return rows


def _concur(client: Any, private: Any, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    return client.post(
        "/webhooks/concur", data=body,
        headers={"Content-Type": "application/json", "Concur-Signature": signed(private, body)},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        pytest.param({"id": "evt\x00one"}, "NUL", id="nul-id"),
        pytest.param(
            {"eventType": "statusChanged" * 10}, "eventType is 130 characters", id="long-type"
        ),
        pytest.param({"id": "e" * 300}, "id is 300 characters", id="long-id"),
        pytest.param({"id": "evt one/../x"}, "id holds characters", id="odd-chars"),
    ],
)
def test_concur_values_a_column_cannot_hold_are_400(
    client: Any, db: Database, change: dict[str, Any], fragment: str
) -> None:
    """Issue #12.3 reverses the earlier "store it escaped or shortened" policy: a value that
    does not fit its column is refused at the door with a message, and nothing is stored."""
    _, http, private, _ = client
    answer = _concur(http, private, {**event(), **change})
    assert answer.status_code == 400 and fragment in answer.json["message"], answer.json
    assert _events(db) == []


def test_zoho_ids_with_nul_and_long_entity_keys_are_400(client: Any, db: Database) -> None:
    _, http, _, cid = client
    for payload, fragment in (
        ({"bill": {**BILL["bill"], "bill_id": "46\x0001"}}, "NUL"),
        (
            {"x" * 100: {"some_id": "1", "last_modified_time": "2026-11-28T10:00:00+0000"}},
            "100 characters",
        ),
        ({"bill": {**BILL["bill"], "bill_id": "4" * 70}}, "bill.bill_id is 70 characters"),
    ):
        body = json.dumps(payload).encode()
        answer = http.post(
            f"/webhooks/zoho/{cid}", data=body,
            headers={"X-Zoho-Webhook-Signature": sign([], body), "Content-Type": "application/json"},
        )  # fmt: skip
        assert answer.status_code == 400 and fragment in answer.json["message"], answer.json
    assert _events(db) == []


def test_a_value_the_database_refuses_is_a_400_not_a_503(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector import inbox

    _, http, private, _ = client

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise DataError("INSERT ...", {}, ValueError("value too long for type character varying"))

    monkeypatch.setattr(inbox, "store", refuse)
    answer = _concur(http, private, event())
    assert answer.status_code == 400
    assert answer.json["message"]
