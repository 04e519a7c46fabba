"""B3 webhook ingest: the real receiver under gunicorn vs a bare Flask app answering 202.

Both run with the same gunicorn settings on this machine; 20 closed-loop senders post signed
Zoho bill webhooks (each a distinct bill, so every one is verified, stored and enqueued) for the
same duration. The stack is the benchmark harness's: a private ``redis-server`` as the broker
and a PostgreSQL schema of its own. Targets: throughput ratio >= 0.5, p99 time to 202 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from typing import Any

from bench import harness as h
from bench.common import free_port, python, write_result

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


def _serve(bench: h.Bench, name: str, app: str) -> tuple[str, int]:
    from bench.stack import wait_until

    port = free_port()
    bench.stack.start(
        name,
        [python(), "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", *GUNICORN],
    )
    ready = (
        f"http://127.0.0.1:{port}/healthz" if name == "receiver" else f"http://127.0.0.1:{port}/"
    )
    wait_until(lambda: h._answers(ready), timeout=60, what=name)
    return name, port


def run(seconds: float = 20.0, senders: int = 20) -> dict[str, Any]:
    from connector.models import Connection
    from connector.vault import Vault

    with h.bench_stack("b3") as bench:
        with bench.db.session() as session:
            conn = Connection(
                name="bench",
                webhook_secret_enc=Vault(bench.settings.secret_keys).encrypt(WEBHOOK_SECRET),
            )
            session.add(conn)
            session.flush()
            connection_id = conn.id
        results: dict[str, Any] = {}
        loads: dict[str, Any] = {}
        for name, app in (("bare", "bench.bare_app:app"), ("receiver", "webhooks.wsgi:app")):
            _, port = _serve(bench, name, app)
            url = f"http://127.0.0.1:{port}/webhooks/zoho/{connection_id}"
            load(url, senders, 2.0)  # warm-up: imports, pools, first connections
            loads[name] = h.load_average()
            results[name] = load(url, senders, seconds)
            bench.stack.procs[name].stop()
    ratio = results["receiver"]["throughput"] / results["bare"]["throughput"]
    p99 = results["receiver"]["p99_ms"]
    return {
        "id": "B3",
        "what": "webhook ingest: receiver vs bare Flask, gunicorn, 20 senders",
        "inputs": {"senders": senders, "seconds": seconds, "gunicorn": " ".join(GUNICORN)},
        "baseline": results["bare"],
        "measured": results["receiver"],
        "ratio": round(ratio, 3),
        "target": "ratio >= 0.5, p99 <= 50 ms",
        "met": ratio >= 0.5 and p99 <= 50 and results["receiver"]["errors"] == 0,
        "load_average": loads,
        "summary": {
            "baseline": f"{results['bare']['throughput']} req/s, p50 {results['bare']['p50_ms']} ms, "
            f"p99 {results['bare']['p99_ms']} ms",
            "measured": f"{results['receiver']['throughput']} req/s, "
            f"p50 {results['receiver']['p50_ms']} ms, p99 {p99} ms",
        },
    }


def bench_run(quick: bool = False) -> dict[str, Any]:
    return run(seconds=8.0 if quick else 20.0)


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
