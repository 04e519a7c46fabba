"""One process asking for a token, for the multi-process single-flight test (not collected).

Usage: ``python oauth_worker.py '<json spec>'``; prints ``{"token_sha": ..., "pid": ...}``.
Our clock is moved forward with freezegun (``advance`` seconds, ticking) so the stored token
looks expired to this process exactly as it would an hour later; every process waits for a
common start time so all of them contend for the refresh at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from freezegun import freeze_time

from connector import connections
from connector.config import Settings
from connector.db import Database


def main(spec: dict) -> dict:
    settings = Settings(
        database_url=spec["database_url"],
        redis_url=None,
        secret_keys=(spec["secret_key"],),
        embedded=True,
        var_dir=Path(spec["var_dir"]),
        zoho_client_id="sandbox-zoho-client",
        zoho_client_secret="sandbox-zoho-secret",
        concur_client_id="sandbox-concur-client",
        concur_client_secret="sandbox-concur-secret",
        sandbox_url=spec["sandbox_url"],
    )
    db = Database(spec["database_url"])
    db.ping()  # connect before the start line
    manager = connections.token_manager(db, settings, spec["connection_id"], spec["system"])
    later = datetime.now(UTC) + timedelta(seconds=spec["advance"])
    while time.time() < spec["start_at"]:
        time.sleep(min(0.005, max(0.0, spec["start_at"] - time.time())))
    with freeze_time(later, tick=True):
        token = manager.access_token()
    return {"token_sha": hashlib.sha256(token.encode()).hexdigest(), "pid": os.getpid()}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
