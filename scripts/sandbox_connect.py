"""Connect a deployed connector to the sandbox with the same CLI commands a user runs for real.

    python scripts/sandbox_connect.py --sandbox http://sandbox:8090 [--name sandbox-acme]

For a production-mode deployment (Procfile or ``docker compose up``) pointed at the sandbox
(``CONNECTOR_SANDBOX_URL`` and the sandbox client variables set). It runs, printing each:

1. ``connector connections create NAME --json``
2. ``connector connect zoho ID --code … --organization-id …`` with a grant code from the
   sandbox's Self Client (in real life: the Zoho API console)
3. ``connector connect concur ID --company-id … --request-token …`` (the sandbox's seeded
   company; in real life: Concur's Company Request Token tool)
4. ``connector mappings import ID cli/demo_rules.yml``
5. ``connector webhooks zoho ID --json``, and the URL and secret given to the sandbox's Zoho
   workflow webhook (in real life: pasted into Zoho Books' settings)
6. ``connector concur subscribe ID --endpoint <CONNECTOR_PUBLIC_URL>/webhooks/concur``

Idempotent enough to re-run: an existing connection of that name is reused. The deploy test
(tests/test_deploy.py) runs this script, so the README's steps are the tested ones. Secrets
(the grant code, the request token, the webhook secret) are never printed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
#: Arguments that follow these flags are secrets: shown as *** in the printed commands.
SECRET_FLAGS = {"--code", "--request-token"}


def connector(*args: str) -> str:
    shown = []
    hide = False
    for arg in args:
        shown.append("***" if hide else shlex.quote(arg))
        hide = arg in SECRET_FLAGS
    print("$ connector " + " ".join(shown), flush=True)
    done = subprocess.run(["connector", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"connector {args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def sandbox_call(sandbox: str, method: str, path: str, body: object) -> dict[str, object]:
    answer = requests.request(method, f"{sandbox}/_admin{path}", json=body, timeout=30)
    if answer.status_code >= 400:
        sys.exit(f"sandbox {method} {path} -> {answer.status_code}: {answer.text[:300]}")
    return answer.json() if answer.content else {}  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    from cli import demo
    from connector.zoho.auth import SCOPE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sandbox", required=True, help="the sandbox's URL, e.g. http://sandbox:8090"
    )
    parser.add_argument("--name", default="sandbox-acme", help="connection name")
    args = parser.parse_args(argv)
    sandbox = args.sandbox.rstrip("/")

    listed = json.loads(connector("connections", "list", "--json"))
    existing = [c for c in listed if c.get("name") == args.name]
    if existing:
        cid = str(existing[0]["id"])
    else:
        cid = str(json.loads(connector("connections", "create", args.name, "--json"))["id"])

    grant = sandbox_call(sandbox, "POST", "/zoho/self-client", {"scope": SCOPE})
    connector("connect", "zoho", cid, "--code", str(grant["code"]),
              "--organization-id", demo.ZOHO_ORG,
              "--accounts-server", str(grant["accounts_server"]))  # fmt: skip
    connector("connect", "concur", cid, "--company-id", demo.CONCUR_COMPANY,
              "--request-token", demo.CONCUR_REQUEST_TOKEN)  # fmt: skip
    connector("mappings", "import", cid, str(demo.RULES_FILE.relative_to(ROOT)))

    hook = json.loads(connector("webhooks", "zoho", cid, "--json"))
    sandbox_call(sandbox, "PUT", f"/zoho/orgs/{demo.ZOHO_ORG}/webhook",
                 {"url": hook["url"], "secret": hook["secret"],
                  "entities": demo.ZOHO_WEBHOOK_ENTITIES})  # fmt: skip
    print(f"sandbox Zoho webhook -> {hook['url']}")
    public = str(hook["url"]).rsplit("/webhooks/zoho/", 1)[0]
    connector("concur", "subscribe", cid, "--endpoint", f"{public}/webhooks/concur")
    print(f"connection {cid} ({args.name}) is connected to the sandbox on both sides")
    return 0


if __name__ == "__main__":
    sys.exit(main())
