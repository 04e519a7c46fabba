"""Issue #12.3: poison bodies with a VALID signature are 400 with a message and stored nowhere.

Property test (hypothesis, derandomized): each kind of poison (NUL raw or escaped, ``NaN``,
``Infinity``, a float overflowing to infinity, a lone surrogate, an integer of thousands of digits,
nesting up to 100,000 deep, an id longer than its column or with odd characters) is placed in an
id or in an extra field of an otherwise valid event, signed properly and sent to the Zoho receiver
(JSON and form bodies) and the Concur receiver. Always 4xx (never 5xx), always a JSON ``message``,
never a stored event, never an enqueue. Before the fix some were 202 (and looped in the sweeper)
and others 500 (``ValueError`` from int(), ``RecursionError``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from connector.config import Settings
from connector.db import Database
from connector.models import Connection, WebhookEvent
from connector.vault import Vault
from tests.webhooks.test_concur_receiver import COMPANY, KEY, event, signed, write_key
from tests.webhooks.test_zoho_receiver import SECRET, sign
from webhooks import create_app

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MODIFIED = "2026-11-28T10:00:00+0000"


def poison_text(kind: str, size: int) -> str:
    """The JSON text of one poison value (``size`` scales the big ones)."""
    return {
        "nul-escaped": '"a\\u0000b"',
        "nul-raw": '"a\x00b"',
        "nan": "NaN",
        "infinity": "Infinity",
        "minus-infinity": "-Infinity",
        "float-overflow": "1e999",
        "surrogate": '"\\ud800"',
        "low-surrogate": '"x\\udc00y"',
        "huge-int": "9" * (41 + size * 10),
        "deep": "[" * (65 + size * 1000) + "]" * (65 + size * 1000),
        "long-id": json.dumps("7" * (65 + size)),
        "odd-id": json.dumps("46/../0" + "x" * (size % 10)),
    }[kind]


KINDS = (
    "nul-escaped", "nul-raw", "nan", "infinity", "minus-infinity", "float-overflow",
    "surrogate", "low-surrogate", "huge-int", "deep", "long-id", "odd-id",
)  # fmt: skip
#: Poisons that only matter where an id is expected (elsewhere a long string is fine).
ID_ONLY = {"long-id", "odd-id"}


def zoho_text(poison: str, at_id: bool) -> str:
    bill_id = poison if at_id else '"4600000001"'
    extra = '"x"' if at_id else poison
    return (
        f'{{"bill": {{"bill_id": {bill_id}, "last_modified_time": "{MODIFIED}", '
        f'"bill_number": "B-1", "extra": {extra}}}}}'
    )


def concur_text(poison: str, at_id: bool) -> str:
    template = event()
    template["facts"]["extra"] = "@EXTRA@"
    template["id"] = "@ID@"
    text = json.dumps(template)
    return text.replace('"@ID@"', poison if at_id else '"evt-1"').replace(
        '"@EXTRA@"', '"x"' if at_id else poison
    )


@pytest.fixture
def receivers(db: Database, tmp_path: Path) -> Any:
    private = write_key(tmp_path / "ess.pem")
    env = {
        "CONNECTOR_SECRET_KEY": KEY,
        "CONNECTOR_VAR_DIR": str(tmp_path),
        "CONCUR_WEBHOOK_PUBLIC_KEYS": str(tmp_path / "ess.pem"),
    }
    with db.session() as s:
        conn = Connection(
            name="poison",
            concur_company_id=COMPANY,
            webhook_secret_enc=Vault([KEY]).encrypt(SECRET),
        )
        s.add(conn)
        s.flush()
        cid = conn.id
    calls: list[int] = []
    app = create_app(Settings.from_env(env), db=db, config={"ENQUEUE_EVENT": calls.append})
    return app.test_client(), private, cid, calls


def _send(receivers: Any, route: str, text: str) -> Any:
    client, private, cid, _ = receivers
    body = text.encode("utf-8", errors="surrogatepass")
    if route == "zoho-json":
        headers = {"X-Zoho-Webhook-Signature": sign([], body), "Content-Type": "application/json"}
        return client.post(f"/webhooks/zoho/{cid}", data=body, headers=headers)
    if route == "zoho-form":
        params = [("JSONString", text)]
        form = urlencode(params, encoding="utf-8", errors="surrogatepass").encode()
        headers = {
            "X-Zoho-Webhook-Signature": sign(params, b""),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return client.post(f"/webhooks/zoho/{cid}", data=form, headers=headers)
    headers = {"Content-Type": "application/json", "Concur-Signature": signed(private, body)}
    return client.post("/webhooks/concur", data=body, headers=headers)


def _stored(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(WebhookEvent)) or 0


@FUZZ
@given(
    kind=st.sampled_from(KINDS),
    size=st.integers(min_value=0, max_value=100),
    at_id=st.booleans(),
    route=st.sampled_from(("zoho-json", "zoho-form", "concur")),
)
@example(kind="deep", size=99, at_id=False, route="zoho-json")  # 100,000 deep
@example(kind="deep", size=99, at_id=False, route="concur")
@example(kind="deep", size=99, at_id=False, route="zoho-form")
@example(kind="huge-int", size=100, at_id=True, route="concur")
@example(kind="huge-int", size=100, at_id=False, route="zoho-form")
def test_signed_poison_is_400_with_a_message_and_stored_nowhere(
    receivers: Any, db: Database, kind: str, size: int, at_id: bool, route: str
) -> None:
    at_id = at_id or kind in ID_ONLY
    poison = poison_text(kind, size)
    text = zoho_text(poison, at_id) if route.startswith("zoho") else concur_text(poison, at_id)
    answer = _send(receivers, route, text)
    assert 400 <= answer.status_code < 500, (kind, route, answer.status_code, answer.get_json())
    assert answer.is_json and answer.json["message"], answer.get_data()[:200]
    assert _stored(db) == 0 and receivers[3] == []


@pytest.mark.parametrize("route", ["zoho-json", "zoho-form", "concur"])
def test_the_same_event_without_poison_is_accepted(
    receivers: Any, db: Database, route: str
) -> None:
    """The control: the templates above are valid events, so a 400 means the poison."""
    ok = '"fine"'
    text = zoho_text(ok, False) if route.startswith("zoho") else concur_text(ok, False)
    answer = _send(receivers, route, text)
    assert answer.status_code == 202, answer.json
    with db.session() as s:
        stored = s.execute(select(WebhookEvent)).scalar_one()
        # Issue #12.5: the raw body exactly as received, not a re-serialized dict.
        sent = text if route != "zoho-form" else urlencode([("JSONString", text)])
        assert stored.body == sent
