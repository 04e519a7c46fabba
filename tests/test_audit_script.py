"""``make audit`` (scripts/audit.py, #12.6): a known vulnerability in the lock fails, also for a
package pip-audit had to skip because the index lacks its per-version advisory page."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import responses

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("audit_script", ROOT / "scripts" / "audit.py")
assert spec and spec.loader
audit_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit_script)

LOCK = "flask==3.0.0 \\\n    --hash=sha256:00\nurllib3==2.0.0 \\\n    --hash=sha256:11\n"


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "lock.txt"
    path.write_text(LOCK)
    return path


def _report(monkeypatch: pytest.MonkeyPatch, deps: list[dict[str, Any]]) -> None:
    monkeypatch.setattr(audit_script, "pip_audit", lambda _lock, _bin: deps)


def _project(name: str, latest: str, vulns: list[dict[str, Any]]) -> None:
    responses.add(responses.GET, f"https://pypi.org/pypi/{name}/json",
                  json={"info": {"version": latest}, "vulnerabilities": vulns})  # fmt: skip


def test_finding_from_pip_audit_fails(lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _report(monkeypatch, [
        {"name": "flask", "version": "3.0.0", "vulns": []},
        {"name": "urllib3", "version": "2.0.0",
         "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["2.0.7"]}]},
    ])  # fmt: skip
    assert audit_script.audit(lock, Path("/bin"), strict=False) == 1


def test_clean_report_passes(lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _report(monkeypatch, [{"name": n, "version": v, "vulns": []}
                          for n, v in (("flask", "3.0.0"), ("urllib3", "2.0.0"))])  # fmt: skip
    assert audit_script.audit(lock, Path("/bin"), strict=True) == 0


@responses.activate
def test_skipped_package_is_checked_on_its_project_page(
    lock: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    skip = "Dependency not found on PyPI and could not be audited"
    _report(monkeypatch, [{"name": "flask", "skip_reason": skip},
                          {"name": "urllib3", "skip_reason": skip}])  # fmt: skip
    _project("flask", "3.0.0", [{"id": "PYSEC-1", "fixed_in": ["3.0.1"]}])
    _project("urllib3", "2.9.9", [])
    assert audit_script.audit(lock, Path("/bin"), strict=False) == 1
    out = capsys.readouterr().out
    assert "VULNERABLE flask 3.0.0: PYSEC-1" in out and "unchecked (1" in out


@responses.activate
def test_unchecked_fails_only_when_strict(lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skip = "Dependency not found on PyPI and could not be audited"
    _report(monkeypatch, [{"name": "flask", "skip_reason": skip},
                          {"name": "urllib3", "version": "2.0.0", "vulns": []}])  # fmt: skip
    _project("flask", "9.9.9", [])
    assert audit_script.audit(lock, Path("/bin"), strict=False) == 0
    assert audit_script.audit(lock, Path("/bin"), strict=True) == 1


@responses.activate
def test_an_audit_that_checked_nothing_fails(lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline or index down: every package skipped and no project page: not a pass."""
    skip = "Dependency not found on PyPI and could not be audited"
    _report(monkeypatch, [{"name": "flask", "skip_reason": skip},
                          {"name": "urllib3", "skip_reason": skip}])  # fmt: skip
    responses.add(responses.GET, "https://pypi.org/pypi/flask/json", status=503)
    responses.add(responses.GET, "https://pypi.org/pypi/urllib3/json", status=503)
    assert audit_script.audit(lock, Path("/bin"), strict=False) == 1
