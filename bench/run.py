"""Run the benchmarks, write ``bench/results/<id>.json`` and regenerate ``docs/benchmarks.md``.

``python -m bench.run [--only B1,B3] [--quick]`` (``make bench`` runs them all at full size).
Each benchmark measures its baseline in the same run and reports a ratio, so the figures hold on
a noisy machine; the load average is recorded next to each result. ``--quick`` uses smaller
sizes for development and writes its results to ``var/bench-quick/`` (not committed), so committed
results always come from a full run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT

#: id -> (module, result file name)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "B1": ("bench.b1_ratelimit", "b1_ratelimit"),
    "B2": ("bench.b2_calls", "b2_calls"),
    "B3": ("bench.b3_ingest", "b3_ingest"),
    "B4": ("bench.b4_overhead", "b4_overhead"),
    "B5": ("bench.b5_fairness", "b5_fairness"),
    "B7": ("bench.b7_scaleout", "b7_scaleout"),
    "B6": ("bench.b6_memory", "b6_memory"),  # last: the longest, and its figure ignores load
}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_one(bid: str, quick: bool) -> dict[str, Any]:
    module_name, _ = BENCHMARKS[bid]
    module = importlib.import_module(module_name)
    entry = getattr(module, "bench_run", None) or module.run
    started = time.monotonic()
    load = [round(x, 2) for x in os.getloadavg()]
    try:
        result = entry(quick=quick)
    except Exception as exc:  # a crashed benchmark is a result too, not a lost run
        result = {
            "id": bid,
            "what": module.__doc__.strip().splitlines()[0] if module.__doc__ else bid,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "met": False,
        }
    result.setdefault("id", bid)
    result["runtime_seconds"] = round(time.monotonic() - started, 1)
    result["load_average_at_start"] = load
    result["quick"] = quick
    result["machine"] = machine()
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


def write(result: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{BENCHMARKS[result['id']][1]}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def load_results(directory: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for bid, (_, name) in BENCHMARKS.items():
        path = directory / f"{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("id") == bid:
                out[bid] = data
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. B1,B3")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (development)")
    parser.add_argument("--no-docs", action="store_true", help="do not regenerate the docs table")
    parser.add_argument(
        "--docs-only", action="store_true", help="only regenerate docs/benchmarks.md from results"
    )
    args = parser.parse_args(argv)
    if args.docs_only:
        from bench.report import render

        (ROOT / "docs" / "benchmarks.md").write_text(render(load_results(RESULTS)))
        return 0
    ids = [i.strip().upper() for i in args.only.split(",") if i.strip()] or list(BENCHMARKS)
    unknown = [i for i in ids if i not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    directory = ROOT / "var" / "bench-quick" if args.quick else RESULTS
    total = time.monotonic()
    for bid in [b for b in BENCHMARKS if b in ids]:
        print(f"[bench] {bid} {'(quick) ' if args.quick else ''}...", flush=True)
        result = run_one(bid, args.quick)
        path = write(result, directory)
        verdict = (
            "error"
            if "error" in result
            else {True: "met", False: "MISSED", None: "-"}[result.get("met")]
        )
        print(
            f"[bench] {bid} {verdict} in {result['runtime_seconds']}s -> "
            f"{path.relative_to(ROOT)}: {result.get('summary', result.get('error'))}",
            flush=True,
        )
    elapsed = time.monotonic() - total
    print(f"[bench] total {elapsed / 60:.1f} min", flush=True)
    if not args.no_docs and not args.quick:
        from bench.report import render

        (ROOT / "docs" / "benchmarks.md").write_text(render(load_results(RESULTS)))
        print("[bench] wrote docs/benchmarks.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
