"""``python -m sandbox serve [--host H] [--port N] [--state-dir DIR]``."""

from __future__ import annotations

import argparse

from sandbox.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the simulated Zoho Books and SAP Concur")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--no-seed", action="store_true", help="start empty instead of the demo tenant")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.add_argument(
        "--state-dir",
        help="keep documents, vendors and issued tokens in DIR/sandbox.snapshot across restarts "
        "(default: start fresh every time)",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(
            args.host,
            args.port,
            seed=not args.no_seed,
            verbose=args.verbose,
            state_dir=args.state_dir,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
