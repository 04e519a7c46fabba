"""The sandbox as the benchmarks run it: its own process, seeded, plus extra Zoho organizations.

``python -m bench.sandbox_serve --port N [--extra-orgs K]`` runs the ordinary sandbox (same app,
same state, same limits) and, after the demo seed, adds ``K`` more US organizations for the
default user (``finance@acme.example``), each with five vendors in its base currency. B5 needs
20 organizations and the demo seed has four; the admin API has no "create organization", so the
benchmark adds them here rather than changing the sandbox.
"""

from __future__ import annotations

import argparse
import time

#: Ids of the extra organizations: 10990001, 10990002, ...
EXTRA_ORG_BASE = 10990000


def extra_org_ids(count: int) -> list[str]:
    return [str(EXTRA_ORG_BASE + i + 1) for i in range(count)]


def add_orgs(state: object, count: int) -> list[str]:
    from sandbox.zoho import seed as zseed

    store = state.zoho  # type: ignore[attr-defined]
    ids = extra_org_ids(count)
    with store.state.lock:
        user = store.user_by_email(zseed.MAIN_USER)
        for n, org_id in enumerate(ids, start=1):
            org = zseed._org(
                store,
                org_id,
                "us",
                f"Bench Org {n:02d}",
                "USD",
                [],
                prefix=f"47{n:02d}000",
                tz="America/Los_Angeles",
                plan="PREMIUM",
                contact="Bench Operator",
                email=zseed.MAIN_USER,
            )
            zseed._gen_vendors(store, org, 5, False)
            if org_id not in user.org_ids:
                user.org_ids.append(org_id)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--extra-orgs", type=int, default=0)
    args = parser.parse_args()

    from sandbox.server import SandboxServer

    server = SandboxServer(port=args.port, seed=True)
    server.start()
    if args.extra_orgs:
        add_orgs(server.state, args.extra_orgs)
    print(f"sandbox ready at {server.url}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
