"""The Zoho web authorization through the Flask app and the real sandbox accounts server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from freezegun import freeze_time

from connector import connections, ping
from connector.errors import ReauthRequired
from sandbox.zoho import seed as zoho_seed
from webhooks.app import create_app


@pytest.fixture
def web(db: Any, sandbox_settings: Any) -> Any:
    enqueued: list[tuple[int, str]] = []
    app = create_app(
        sandbox_settings,
        db=db,
        config={
            "TESTING": True,
            "ENQUEUE_EVENT": lambda *a, **k: None,
            "ENQUEUE_RECORD": lambda record_id, step: enqueued.append((record_id, step)),
        },
    )
    client = app.test_client()
    client.enqueued = enqueued  # type: ignore[attr-defined]
    return client


def start(web: Any, connection_id: int) -> dict[str, list[str]]:
    answer = web.get(f"/oauth/zoho/start?connection={connection_id}")
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return parse_qs(urlsplit(answer.headers["Location"]).query) | {
        "_url": [answer.headers["Location"]]
    }


def consent(start_query: dict[str, list[str]], user: str | None = None) -> str:
    """What the browser does at Zoho: the sandbox approves at once and redirects back."""
    url = start_query["_url"][0] + (f"&{urlencode({'login_hint': user})}" if user else "")
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/oauth/zoho/callback"
    return f"{back.path}?{back.query}"


def test_start_redirects_to_zoho_with_offline_access_and_a_state(
    web: Any, db: Any, sandbox_settings: Any
) -> None:
    cid = connections.create(db, "web")
    query = start(web, cid)
    assert query["_url"][0].startswith(f"{sandbox_settings.zoho_accounts_url}/oauth/v2/auth?")
    assert query["access_type"] == ["offline"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [f"{sandbox_settings.public_url}/oauth/zoho/callback"]
    assert "fullaccess" not in query["scope"][0].lower()
    assert len(query["state"][0]) > 40


def test_unknown_connection_is_a_readable_page(web: Any) -> None:
    answer = web.get("/oauth/zoho/start?connection=999")
    assert answer.status_code == 404
    assert "no connection" in answer.get_data(as_text=True)


def test_multi_org_user_is_asked_which_organization(
    web: Any, db: Any, sandbox_settings: Any, admin: Any
) -> None:
    cid = connections.create(db, "multi")
    answer = web.get(consent(start(web, cid)))
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "Choose the Zoho Books organization" in page
    assert "Acme Corporation" in page and "Acme Labs LLC" in page
    # Nothing chosen silently: the side is authorized but waits for the choice.
    assert connections.show(db, cid)["zoho"]["status"] == "choose_organization"
    state = page.split('name="state" value="', 1)[1].split('"', 1)[0]
    chosen = web.post("/oauth/zoho/organization",
                      data={"state": state, "organization_id": zoho_seed.LABS_ORG_ID})  # fmt: skip
    assert chosen.status_code == 200 and "Zoho Books connected" in chosen.get_data(as_text=True)
    shown = connections.show(db, cid)["zoho"]
    assert shown["status"] == "connected" and shown["organization_id"] == zoho_seed.LABS_ORG_ID
    assert all(c.ok for c in ping.ping_zoho(db, sandbox_settings, cid))
    # The choice form is single-use too.
    again = web.post("/oauth/zoho/organization",
                     data={"state": state, "organization_id": zoho_seed.MAIN_ORG_ID})  # fmt: skip
    assert again.status_code == 400 and "already used" in again.get_data(as_text=True)
    assert connections.show(db, cid)["zoho"]["organization_id"] == zoho_seed.LABS_ORG_ID


def test_single_org_user_in_another_data_centre_connects_directly(
    web: Any, db: Any, sandbox_settings: Any
) -> None:
    cid = connections.create(db, "eu")
    callback = consent(start(web, cid), user=zoho_seed.EU_USER)
    assert parse_qs(urlsplit(callback).query)["location"] == ["eu"]
    answer = web.get(callback)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert "Zoho Books connected" in answer.get_data(as_text=True)
    shown = connections.show(db, cid)["zoho"]
    assert shown["region"] == "eu" and shown["organization_id"] == zoho_seed.EU_ORG_ID
    assert shown["auth_base_url"].endswith("/zoho/eu/accounts")
    assert all(c.ok for c in ping.ping_zoho(db, sandbox_settings, cid))


def test_state_is_single_use(web: Any, db: Any) -> None:
    cid = connections.create(db, "replay")
    callback = consent(start(web, cid), user=zoho_seed.EU_USER)
    assert web.get(callback).status_code == 200
    replay = web.get(callback)
    assert replay.status_code == 400 and "already used" in replay.get_data(as_text=True)


def test_state_expires_after_ten_minutes(web: Any, db: Any) -> None:
    cid = connections.create(db, "late")
    callback = consent(start(web, cid), user=zoho_seed.EU_USER)
    with freeze_time(datetime.now(UTC) + timedelta(minutes=11)):
        late = web.get(callback)
    assert late.status_code == 400 and "expired" in late.get_data(as_text=True)
    assert connections.show(db, cid)["zoho"]["status"] == "not_connected"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda s: s[:-3] + "abc", id="bad-signature"),
        pytest.param(lambda s: "", id="missing"),
        pytest.param(lambda s: "x" + s, id="garbled"),
    ],
)
def test_forged_state_is_refused(web: Any, db: Any, tamper: Any) -> None:
    cid = connections.create(db, "forged")
    callback = consent(start(web, cid), user=zoho_seed.EU_USER)
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["state"] = tamper(query["state"])
    answer = web.get(f"{parts.path}?{urlencode(query)}")
    assert answer.status_code == 400
    assert connections.show(db, cid)["zoho"]["status"] == "not_connected"


def test_untrusted_accounts_server_in_the_redirect_is_refused(web: Any, db: Any) -> None:
    cid = connections.create(db, "evil")
    callback = consent(start(web, cid), user=zoho_seed.EU_USER)
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["accounts-server"] = "https://accounts.evil.example"
    answer = web.get(f"{parts.path}?{urlencode(query)}")
    assert answer.status_code == 400 and "evil.example" in answer.get_data(as_text=True)


def test_reauthorizing_through_the_web_resumes_parked_records(
    web: Any, db: Any, sandbox_settings: Any, connected: int, admin: Any
) -> None:
    from connector import ledger
    from connector.models import RecordState

    for token in admin.zoho_tokens():
        admin.zoho_revoke(id=token["id"])
    with pytest.raises(ReauthRequired):
        connections.zoho_client(db, sandbox_settings, connected).accounts.list()
    with db.session() as session:
        record, _ = ledger.get_or_create(
            session, connection_id=connected, flow="payables", source_system="zoho",
            source_type="bill", source_id="B-9", source_version="v1", target_system="concur",
        )  # fmt: skip
        ledger.transition(session, record, RecordState.NEEDS_REAUTH, owner=None, message="dead")
        record_id = record.id
    answer = web.get(consent(start(web, connected)))  # the US user: org already chosen, kept
    assert answer.status_code == 200 and "Zoho Books connected" in answer.get_data(as_text=True)
    assert web.enqueued == [(record_id, "fetch")]
    assert connections.show(db, connected)["status"] == "active"


def test_expired_states_are_purged_a_day_later(db: Any, sandbox_settings: Any) -> None:
    from connector import oauth_state

    cid = connections.create(db, "purge")
    oauth_state.issue(db, sandbox_settings, cid, oauth_state.AUTHORIZE)
    assert oauth_state.purge_expired(db) == 0
    with freeze_time(datetime.now(UTC) + timedelta(days=2)):
        assert oauth_state.purge_expired(db) == 1
