"""B3 webhook ingest: the real receiver under gunicorn vs a bare Flask app answering 202.

Both run with the same gunicorn settings on this machine; 20 closed-loop senders post signed
Zoho bill webhooks (each a distinct bill, so every one is verified, stored and enqueued) for the
same duration. Targets: throughput ratio >= 0.5, p99 time to 202 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    flush_redis,
    free_port,
    fresh_schema,
    process,
    python,
    stack_env,
    write_result,
)

WEBHOOK_SECRET = "benchSecret0123456789"
GUNICORN = ["--workers", "2", "--threads", "4", "--log-level", "warning"]


def load(url: str, senders: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            python(),
            "-m",
            "bench.load",
            url,
            "--secret",
            WEBHOOK_SECRET,
            "--senders",
            str(senders),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def run(seconds: float = 20.0, senders: int = 20) -> dict[str, Any]:
    from bench.common import SECRET_KEY
    from connector.db import Database
    from connector.models import Connection
    from connector.vault import Vault

    url = fresh_schema("bench_b3")
    flush_redis()
    db = Database(url)
    with db.session() as session:
        conn = Connection(
            name="bench", webhook_secret_enc=Vault([SECRET_KEY]).encrypt(WEBHOOK_SECRET)
        )
        session.add(conn)
        session.flush()
        connection_id = conn.id
    db.dispose()
    env = stack_env(url, Path(tempfile.mkdtemp(prefix="bench-b3-")))
    results: dict[str, Any] = {}
    for name, app in (("bare", "bench.bare_app:app"), ("receiver", "webhooks.wsgi:app")):
        port = free_port()
        argv = [python(), "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", *GUNICORN]
        ready = (
            f"http://127.0.0.1:{port}/healthz"
            if name == "receiver"
            else f"http://127.0.0.1:{port}/"
        )
        with process(argv, env, ready_url=ready):
            results[name] = load(
                f"http://127.0.0.1:{port}/webhooks/zoho/{connection_id}", senders, seconds
            )
    flush_redis()
    ratio = results["receiver"]["throughput"] / results["bare"]["throughput"]
    return {
        "senders": senders,
        "seconds": seconds,
        "gunicorn": " ".join(GUNICORN),
        "baseline": results["bare"],
        "measured": results["receiver"],
        "ratio": round(ratio, 3),
        "target_ratio": 0.5,
        "target_p99_ms": 50,
        "met": ratio >= 0.5
        and results["receiver"]["p99_ms"] <= 50
        and results["receiver"]["errors"] == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--senders", type=int, default=20)
    args = parser.parse_args()
    result = run(args.seconds, args.senders)
    print(json.dumps(result, indent=2))
    write_result("b3_ingest", result)


if __name__ == "__main__":
    main()
