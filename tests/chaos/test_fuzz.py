"""Issue #9, scenario 8: bad input, property-based (hypothesis).

- Both receivers (Flask test client, PostgreSQL): signed, unsigned and wrongly signed requests,
  random bodies, content types, headers, query strings and sizes. Never a 5xx, never a stored
  event for a request that did not authenticate, and every refusal a JSON body whose ``message``
  names the problem.
- The mapping layer: Zoho bills/invoices and Concur reports/entries/allocations, mutated from
  the fixtures (fields dropped or replaced by any JSON value), through the load schemas, the
  mapping functions and the pre-POST validators. The only exceptions allowed are the documented
  ones: ``ValidationFailed`` (the record fails, every problem listed) and ``ParkError`` (it
  waits, with the reason); never ``KeyError``, ``TypeError``, ``InvalidOperation``...

Deterministic in CI: ``derandomize=True`` (the examples are a function of the test), no example
database, 200 examples per test, no deadline (``CHAOS_FUZZ_EXAMPLES``/``CHAOS_FUZZ_RANDOM`` explore
further by hand).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from connector.config import Settings
from connector.db import Database
from connector.errors import ParkError, ValidationFailed
from connector.models import Connection, WebhookEvent
from connector.vault import Vault
from connector.webhook_secrets import derive_token
from mappings.concur_reports import assemble_report
from mappings.expenses import journal_date_for, map_report
from mappings.expenses_validation import validate_journal
from mappings.payables import map_document
from mappings.payables_validation import validate_payment_request
from mappings.zoho_documents import load_zoho_document
from tests.mappings import test_expenses_mapping as em
from tests.mappings import test_payables_mapping as pm
from webhooks import create_app

pytestmark = pytest.mark.chaos

#: CI: 200 fixed examples per test. Exploring locally: CHAOS_FUZZ_EXAMPLES=5000 CHAOS_FUZZ_RANDOM=1.
FUZZ = settings(
    max_examples=int(os.environ.get("CHAOS_FUZZ_EXAMPLES", "200")),
    deadline=None,
    derandomize=not os.environ.get("CHAOS_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="
SECRET = "whsecFuzz0123456789"
COMPANY = "9d6f3a52-0c1e-4d7b-9a35-5b1f0c2e7a11"
MAX_BODY = 4096

# --------------------------------------------------------------------------- strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
    | st.sampled_from(["", "0", "-1", "1e309", "NaN", "12.345", "2026-02-30", "USD", "€", "\x00"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def mutate(data: st.DataObject, obj: Any, *, most: int = 4) -> Any:
    """A copy of ``obj`` with 1..``most`` fields dropped or replaced by any JSON value."""
    obj = copy.deepcopy(obj)
    for _ in range(data.draw(st.integers(1, most), label="mutations")):
        paths = _paths(obj)
        if not paths:
            return obj
        path = data.draw(st.sampled_from(paths), label="path")
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans(), label="drop") and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values, label="value")
    return obj


# --------------------------------------------------------------------------- receivers


def _events(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


def _check_answer(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if response.status_code >= 400:
        body = response.get_json(silent=True)
        assert isinstance(body, dict), f"{response.status_code} without a JSON body"
        assert str(body.get("message") or "").strip(), f"{response.status_code} names no problem"


@pytest.fixture
def receivers(pg_db: Database, tmp_path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "ess.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    settings_ = Settings.from_env({
        "CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path),
        "CONCUR_WEBHOOK_PUBLIC_KEYS": str(pem), "CONNECTOR_MAX_BODY_BYTES": str(MAX_BODY),
    })  # fmt: skip
    with pg_db.session() as s:
        signed_conn = Connection(
            name="fuzz", webhook_secret_enc=Vault([KEY]).encrypt(SECRET), concur_company_id=COMPANY
        )
        bare = Connection(name="fuzz-no-secret")
        s.add_all([signed_conn, bare])
        s.flush()
        ids = {"good": signed_conn.id, "no_secret": bare.id, "unknown": signed_conn.id + 1000}
    enqueued: list[int] = []
    app = create_app(settings_, db=pg_db, config={"ENQUEUE_EVENT": enqueued.append})
    return app.test_client(), pg_db, ids, key


def _zoho_sign(params: list[tuple[str, str]], body: bytes, secret: str = SECRET) -> str:
    canonical = "".join(k + v for k, v in sorted(params)).encode() + body
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


BILL = json.loads((pm.FIXTURES / "bill_basic_usd.json").read_text())


@FUZZ
@given(data=st.data())
def test_zoho_receiver_never_fails_and_stores_nothing_unauthenticated(
    receivers: Any, data: st.DataObject
) -> None:
    client, db, ids, _ = receivers
    target = data.draw(st.sampled_from(["good", "good", "good", "no_secret", "unknown"]))
    auth = data.draw(
        st.sampled_from(["signature", "token", "token_query", "bad_signature", "bad_token", "none"])
    )
    kind = data.draw(st.sampled_from(["json", "mutated", "bytes", "form", "form_random", "huge"]))
    query = data.draw(st.lists(st.tuples(st.text("abcxyz", min_size=1, max_size=5), header_text),
                               max_size=3))  # fmt: skip
    headers: dict[str, str] = {}
    form: list[tuple[str, str]] = []
    if kind == "json":
        body = json.dumps(data.draw(json_values)).encode()
        content_type = "application/json"
    elif kind == "mutated":
        body = json.dumps(mutate(data, BILL)).encode()
        content_type = data.draw(st.sampled_from(["application/json", "text/plain", ""]))
    elif kind == "bytes":
        body = data.draw(st.binary(max_size=600))
        content_type = data.draw(st.sampled_from(["application/json", "application/octet-stream",
                                                  "multipart/form-data", ""]))  # fmt: skip
    elif kind in ("form", "form_random"):
        payload = json.dumps(mutate(data, BILL)) if kind == "form" else data.draw(header_text)
        extra = data.draw(
            st.lists(st.tuples(st.text("defg", min_size=1, max_size=4), header_text), max_size=2)
        )
        form = [("JSONString", payload), *extra]
        body = urlencode(form).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = b'{"bill": {"bill_id": "1", "x": "' + b"a" * (MAX_BODY + 10) + b'"}}'
        content_type = "application/json"
    if content_type:
        headers["Content-Type"] = content_type
    params = list(query) + (form if content_type == "application/x-www-form-urlencoded" else [])
    signed_body = b"" if content_type == "application/x-www-form-urlencoded" else body
    if auth == "signature":
        headers["X-Zoho-Webhook-Signature"] = _zoho_sign(params, signed_body)
    elif auth == "bad_signature":
        headers["X-Zoho-Webhook-Signature"] = data.draw(header_text)
    elif auth == "token":
        headers["X-Connector-Token"] = derive_token(SECRET)
    elif auth == "bad_token":
        headers["X-Connector-Token"] = data.draw(
            header_text.filter(lambda t: t != derive_token(SECRET))
        )
    elif auth == "token_query":
        query = [*query, ("token", derive_token(SECRET))]
    url = f"/webhooks/zoho/{ids[target]}" + (f"?{urlencode(query)}" if query else "")
    before = _events(db)
    response = client.post(url, data=body, headers=headers)
    _check_answer(response)
    stored = _events(db) - before
    authenticated = target == "good" and auth in ("signature", "token", "token_query")
    if not authenticated:
        assert stored == 0, f"stored an event for an unauthenticated request ({auth}, {target})"
        assert response.status_code >= 400
    if response.status_code < 300:
        assert authenticated and response.status_code in (200, 202)


def _concur_event(**facts: Any) -> dict[str, Any]:
    return {
        "id": "evt-1", "correlationId": "c-1", "route": "stable",
        "topic": "public.concur.expense.report", "eventType": "statusChanged",
        "timeStamp": "2026-11-28T10:00:00Z",
        "facts": {"companyId": COMPANY, "reportId": "ABCDEF123", "currentApprovalStatus": "A_APPR",
                  **facts},
    }  # fmt: skip


@FUZZ
@given(data=st.data())
def test_concur_receiver_never_fails_and_stores_nothing_unauthenticated(
    receivers: Any, data: st.DataObject
) -> None:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    client, db, _, key = receivers
    kind = data.draw(st.sampled_from(["mutated", "json", "bytes", "huge"]))
    if kind == "mutated":
        body = json.dumps(mutate(data, _concur_event())).encode()
    elif kind == "json":
        body = json.dumps(data.draw(json_values)).encode()
    elif kind == "bytes":
        body = data.draw(st.binary(max_size=600))
    else:
        body = json.dumps({**_concur_event(), "pad": "a" * (MAX_BODY + 10)}).encode()
    auth = data.draw(st.sampled_from(["valid", "valid", "other_key", "garbage", "none"]))
    headers = {"Content-Type": data.draw(st.sampled_from(["application/json", "text/plain"]))}
    if auth == "valid":
        headers["Concur-Signature"] = base64.b64encode(
            key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        ).decode()
    elif auth == "other_key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        headers["Concur-Signature"] = base64.b64encode(
            other.sign(body, padding.PKCS1v15(), hashes.SHA256())
        ).decode()
    elif auth == "garbage":
        headers["Concur-Signature"] = data.draw(header_text)
    before = _events(db)
    response = client.post("/webhooks/concur", data=body, headers=headers)
    _check_answer(response)
    stored = _events(db) - before
    if auth != "valid":
        assert stored == 0, f"stored an event with a {auth} signature"
        assert response.status_code >= 400
    if response.status_code < 300:
        assert auth == "valid"


# --------------------------------------------------------------------------- mappings


ALLOWED = (ValidationFailed, ParkError)


def _named(exc: Exception) -> None:
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


@FUZZ
@given(data=st.data())
def test_zoho_documents_load_map_and_validate_with_documented_errors_only(
    data: st.DataObject,
) -> None:
    name = data.draw(st.sampled_from(pm.POSTABLE))
    raw = mutate(data, pm.raw(name))
    try:
        doc = load_zoho_document(raw)
        body = map_document(doc, pm.VENDOR, pm.rules_of(), account_names=pm.ACCOUNT_NAMES)
        validate_payment_request(body, currency=doc.currency_code or "")
    except ALLOWED as exc:
        _named(exc)


@FUZZ
@given(data=st.data())
def test_concur_reports_assemble_map_and_validate_with_documented_errors_only(
    data: st.DataObject,
) -> None:
    name = data.draw(st.sampled_from(["usd_mixed", "eur", "jpy"]))
    report_raw, entries_raw, allocations_raw = em.raw_fixture(name)
    part = data.draw(st.sampled_from(["report", "entries", "allocations", "all"]))
    if part in ("report", "all"):
        report_raw = mutate(data, report_raw)
    if part in ("entries", "all"):
        entries_raw = mutate(data, entries_raw)
    if part in ("allocations", "all"):
        allocations_raw = mutate(data, allocations_raw)
    try:
        report = assemble_report(report_raw, entries_raw, allocations_raw)
        rules_ = em.rules()
        journal_date_for(report, rules_)
        body = map_report(report, rules_, em.ORG, exchange_rate=Decimal("1.085"))
        precision = em.ORG.currencies[report.currency.upper()].precision
        validate_journal(body, currency_precision=int(precision))
    except ALLOWED as exc:
        _named(exc)
