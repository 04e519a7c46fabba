"""The receiver skeleton: health, readiness naming what failed, JSON errors, size limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.config import Settings
from connector.db import Database
from webhooks import create_app

KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


def make_client(db: Database, env: dict[str, str]) -> Any:
    settings = Settings.from_env(
        {"CONNECTOR_SECRET_KEY": KEY, "CONNECTOR_PUBLIC_URL": "https://c.example", **env}
    )
    return create_app(settings, db=db).test_client()


@pytest.fixture
def client(db: Database, tmp_path: Path, redis_url: str) -> Any:
    env = {"CONNECTOR_VAR_DIR": str(tmp_path)}
    if db.dialect == "postgresql":
        env |= {"DATABASE_URL": db.url, "REDIS_URL": redis_url}
    return make_client(db, env)


def test_healthz(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"


def test_readyz_checks_database_and_broker(client: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["checks"]["database"]["ok"] and response.json["checks"]["broker"]["ok"]


def test_readyz_names_the_broker_when_it_is_down(pg_db: Database) -> None:
    client = make_client(pg_db, {"DATABASE_URL": pg_db.url, "REDIS_URL": "redis://127.0.0.1:1/0"})
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["failed"] == ["broker"]


def test_readyz_names_the_database_when_it_is_down(tmp_path: Path, redis_url: str) -> None:
    dead = Database("postgresql://postgres@127.0.0.1:1/none")
    client = make_client(
        dead, {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "REDIS_URL": redis_url}
    )
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json["failed"] == ["database"]
    assert (
        "127.0.0.1" not in response.json["checks"]["database"]["detail"]
        or "password" not in response.json["checks"]["database"]["detail"]
    )


def test_errors_are_json_and_oversized_bodies_get_413(client: Any) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.is_json and missing.json["error"] == "not_found"
    big = client.post("/healthz", data=b"x" * (1_048_576 + 1), content_type="application/json")
    assert big.status_code == 413 and big.is_json and "larger than" in big.json["message"]
    wrong = client.post("/healthz")
    assert wrong.status_code == 405 and wrong.is_json
