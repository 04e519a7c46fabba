"""``/ops`` shows each Zoho organization's remaining daily quota and whether bulk work waits."""

from __future__ import annotations

import time
from pathlib import Path

from connector import connections
from connector.config import Settings
from connector.db import Database
from connector.models import Connection
from tests.webhooks.test_ops_page import AUTH, KEY, PROD
from webhooks import create_app


def _connection(db: Database, name: str, org: str) -> None:
    with db.session() as s:
        s.add(Connection(name=name, zoho_organization_id=org))


def test_ops_lists_the_remaining_daily_quota_per_organization(db: Database, tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path), "OPS_BASIC_AUTH": "admin:s3cret"}
    )  # fmt: skip
    _connection(db, "acme", "111")
    _connection(db, "globex", "222")
    _connection(db, "initech", "333")
    store = connections.quota_store(settings)
    now = time.time()
    store.observe("111", {"X-Rate-Limit-Limit": "5000", "X-Rate-Limit-Remaining": "4321",
                          "X-Rate-Limit-Reset": "3600"}, now=now)  # fmt: skip
    store.observe("222", {"X-Rate-Limit-Limit": "1000", "X-Rate-Limit-Remaining": "80",
                          "X-Rate-Limit-Reset": "3600"}, now=now)  # fmt: skip
    client = create_app(settings, db=db, config={"ENQUEUE_EVENT": lambda _e: None}).test_client()
    page = client.get("/ops/", headers=AUTH).get_data(as_text=True)
    section = page.split('id="zoho-quota"', 1)[1].split("</table>", 1)[0]
    acme = section.split('data-org="111"', 1)[1].split("</tr>", 1)[0]
    globex = section.split('data-org="222"', 1)[1].split("</tr>", 1)[0]
    initech = section.split('data-org="333"', 1)[1].split("</tr>", 1)[0]
    assert "4,321" in acme and "of 5,000" in acme and ">500<" in acme and ">ok<" in acme
    assert "80" in globex and "reserve reached: backfills and reconciliation wait" in globex
    assert "no Zoho answer read yet today" in initech


def test_ops_still_renders_when_the_quota_store_is_down(db: Database, tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_VAR_DIR": str(tmp_path),
         "OPS_BASIC_AUTH": "admin:s3cret", **PROD}
    )  # fmt: skip
    _connection(db, "acme", "111")
    client = create_app(settings, db=db, config={"ENQUEUE_EVENT": lambda _e: None}).test_client()
    response = client.get("/ops/", headers=AUTH)
    assert response.status_code == 200
    assert "unavailable (ConnectionError)" in response.get_data(as_text=True)
