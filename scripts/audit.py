"""``make audit``: known vulnerabilities in requirements/lock.txt; exit 1 on any finding.

pip-audit does the work (``--require-hashes --disable-pip -r``: it audits the pinned lock as it
is, without building an environment). It asks PyPI for the advisories of each *pinned version*
(``/pypi/NAME/VERSION/json``). Where that answer is missing (a mirror that serves only the
project pages, as on this project's build machines), pip-audit skips the package and would
report "No known vulnerabilities" for an audit that checked nothing. So every skipped package is
looked up once more in its project page (``/pypi/NAME/json``), whose ``vulnerabilities`` list
is PyPI's advisories for the latest release: a pin equal to the latest release is audited that
way; any other pin is reported as unchecked. ``AUDIT_STRICT=1`` makes an unchecked package a
failure too (use it where PyPI answers in full).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import requests

PYPI = os.environ.get("AUDIT_PYPI_URL", "https://pypi.org").rstrip("/")


def pip_audit(lock: Path, venv_bin: Path) -> list[dict]:
    """pip-audit's JSON report of the lock (its exit status says nothing we do not re-derive)."""
    result = subprocess.run(
        [str(venv_bin / "pip-audit"), "--require-hashes", "--disable-pip", "-r", str(lock),
         "--progress-spinner", "off", "--format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        return json.loads(result.stdout)["dependencies"]
    except (json.JSONDecodeError, KeyError):
        sys.stderr.write(result.stderr)
        raise SystemExit(f"pip-audit did not produce a report (exit {result.returncode})") from None


def pinned(lock: Path) -> dict[str, str]:
    out = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("==", 1)
            out[name.strip().lower()] = version.split()[0].rstrip("\\").strip()
    return out


def latest_advisories(session: requests.Session, name: str, version: str) -> list[dict] | None:
    """PyPI's advisories for ``name`` when ``version`` is its latest release, else None."""
    try:
        response = session.get(f"{PYPI}/pypi/{name}/json", timeout=30)
        response.raise_for_status()
        project = response.json()
    except (requests.RequestException, ValueError):
        return None
    if project.get("info", {}).get("version") != version:
        return None
    return list(project.get("vulnerabilities") or [])


def audit(lock: Path, venv_bin: Path, *, strict: bool) -> int:
    pins = pinned(lock)
    findings: list[str] = []
    unchecked: list[str] = []
    checked = 0
    session = requests.Session()
    for dep in pip_audit(lock, venv_bin):
        name = dep["name"].lower()
        if "skip_reason" not in dep:
            checked += 1
            findings += [f"{name} {dep['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or ['?'])})"
                         for v in dep.get("vulns", [])]  # fmt: skip
            continue
        version = pins.get(name, "")
        advisories = latest_advisories(session, name, version)
        if advisories is None:
            unchecked.append(f"{name} {version}")
            continue
        checked += 1
        findings += [f"{name} {version}: {v.get('id')} (fixed in {', '.join(v.get('fixed_in') or ['?'])})"
                     for v in advisories if not v.get("withdrawn")]  # fmt: skip
    print(f"audited {checked} of {len(pins)} locked packages")
    for line in findings:
        print(f"VULNERABLE {line}")
    if unchecked:
        print(f"unchecked ({len(unchecked)}; PyPI had no advisory data for the pinned version): "
              + ", ".join(unchecked))  # fmt: skip
    if findings:
        print("known vulnerabilities: move the pins (`make lock ARGS='--upgrade-package NAME'`)")
        return 1
    if checked == 0:
        print("nothing could be audited (no advisory data reachable): failing, not passing")
        return 1
    if unchecked and strict:
        print("AUDIT_STRICT=1: unchecked packages fail the audit")
        return 1
    return 0


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    lock = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "requirements" / "lock.txt"
    venv_bin = Path(sys.executable).parent
    strict = os.environ.get("AUDIT_STRICT", "") not in ("", "0", "false")
    raise SystemExit(audit(lock, venv_bin, strict=strict))


if __name__ == "__main__":
    main()
