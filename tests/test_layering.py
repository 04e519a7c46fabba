"""Dependencies point one way: webhooks -> tasks -> mappings -> connector (brief §2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def modules_of(package: str) -> list[str]:
    base = ROOT / package
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in base.rglob("*.py")
    )


def imported_after(modules: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('\\n'.join(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    env = {"CONNECTOR_VAR_DIR": str(ROOT / "var"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.parametrize("package", ["connector", "mappings"])
def test_core_imports_neither_flask_nor_celery(package: str) -> None:
    loaded = imported_after(modules_of(package))
    assert "flask" not in loaded and "celery" not in loaded
    assert "webhooks" not in loaded and "tasks" not in loaded


def test_worker_never_imports_flask() -> None:
    loaded = imported_after(
        ["tasks.celery", *[m for m in modules_of("tasks") if m != "tasks.celery"]]
    )
    assert "celery" in loaded and "flask" not in loaded and "webhooks" not in loaded
