"""``make chaos-soak N=10``: the chaos suite N times, each with its own ``CHAOS_SEED``.

One green run proves little about intermittent races (issue #21), so this runs the whole suite
(``pytest -m chaos tests/chaos``) ``--runs`` times in a row, each in a fresh pytest process with a
new seed, and reports the pass rate of every scenario as a Markdown table: on stdout and in
``bench/results/chaos-soak-<UTC time>.md`` (ready to paste into docs/chaos.md). A failed
scenario's seeds are listed, so ``CHAOS_SEED=<seed> make chaos`` replays it. Exit status 1 when
any scenario failed in any run.

    python -m tests.chaos.soak --runs 10
    python -m tests.chaos.soak --runs 2 -- -k commit_then_fail   # a subset, for a quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


@dataclass
class Tally:
    """One scenario's outcomes over the runs."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: list[float] = field(default_factory=list)
    failing_seeds: list[int] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return self.passed + self.failed


@dataclass
class Run:
    seed: int
    seconds: float
    exit_code: int
    outcomes: dict[str, tuple[str, float]]


def parse_junit(path: Path) -> dict[str, tuple[str, float]]:
    """``{scenario: (outcome, seconds)}`` from pytest's JUnit XML (empty if it is missing)."""
    if not path.exists():
        return {}
    out: dict[str, tuple[str, float]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "?")
        module = (case.get("classname") or "").rsplit(".", 1)[-1]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                break
            if child.tag == "skipped":
                outcome = "skipped"
        out[f"{module}::{name}"] = (outcome, float(case.get("time") or 0.0))
    return out


def run_once(seed: int, extra: list[str], timeout: float, workdir: Path, index: int) -> Run:
    junit = workdir / f"run-{index}.xml"
    log = workdir / f"run-{index}.log"
    cmd = [
        sys.executable, "-m", "pytest", "-m", "chaos", "tests/chaos", "-q", "-p",
        "no:cacheprovider", f"--junitxml={junit}", *extra,
    ]  # fmt: skip
    env = {**os.environ, "CHAOS_SEED": str(seed)}
    started = time.monotonic()
    with log.open("w") as fh:
        try:
            code = subprocess.run(
                cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    seconds = time.monotonic() - started
    outcomes = parse_junit(junit)
    if code == -1:
        outcomes = {**outcomes, "(whole run)": ("failed", seconds)}
    return Run(seed, seconds, code, outcomes)


def tally(runs: list[Run]) -> dict[str, Tally]:
    table: dict[str, Tally] = {}
    for run in runs:
        for name, (outcome, seconds) in run.outcomes.items():
            t = table.setdefault(name, Tally())
            if outcome == "passed":
                t.passed += 1
                t.seconds.append(seconds)
            elif outcome == "failed":
                t.failed += 1
                t.failing_seeds.append(run.seed)
            else:
                t.skipped += 1
    return table


def markdown(runs: list[Run], table: dict[str, Tally], started: dt.datetime) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"Chaos soak: {len(runs)} run(s) of `make chaos`, started {started:%Y-%m-%d %H:%M} UTC on "
        f"{os.cpu_count()} cores ({platform.system()}), load average {load:.1f} at the end; "
        f"seeds {', '.join(str(r.seed) for r in runs)}.",
        "",
        "| scenario | passed | runs | pass rate | median time | failing seeds |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name in sorted(table):
        t = table[name]
        rate = f"{100 * t.passed / t.runs:.0f}%" if t.runs else "-"
        median = f"{sorted(t.seconds)[len(t.seconds) // 2]:.0f} s" if t.seconds else "-"
        seeds = ", ".join(str(s) for s in t.failing_seeds) or "-"
        lines.append(f"| `{name}` | {t.passed} | {t.runs} | {rate} | {median} | {seeds} |")
    walls = ", ".join(f"{r.seconds / 60:.1f}" for r in runs)
    lines += ["", f"Wall clock per run (minutes): {walls}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="how many runs (default 10)")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds before one run counts as failed"
    )
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    started = dt.datetime.now(dt.UTC)
    chooser = random.SystemRandom()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="chaos-soak-") as tmp:
        for i in range(args.runs):
            seed = chooser.randrange(1, 2**31)
            print(f"[soak] run {i + 1}/{args.runs}: CHAOS_SEED={seed}", flush=True)
            run = run_once(seed, args.pytest_args, args.timeout, Path(tmp), i)
            failed = sorted(n for n, (o, _) in run.outcomes.items() if o == "failed")
            print(
                f"[soak] run {i + 1}: exit {run.exit_code} in {run.seconds:.0f}s"
                + (f"; failed: {', '.join(failed)}" if failed else ""),
                flush=True,
            )
            if run.exit_code != 0 and not run.outcomes:
                print((Path(tmp) / f"run-{i}.log").read_text()[-4000:], flush=True)
            runs.append(run)
    table = tally(runs)
    text = markdown(runs, table, started)
    out = args.out or RESULTS / f"chaos-soak-{started:%Y%m%dT%H%M%SZ}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"[soak] written to {out}")
    return 0 if all(t.failed == 0 for t in table.values()) and table else 1


if __name__ == "__main__":
    raise SystemExit(main())
