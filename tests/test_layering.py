"""Dependencies point one way (issue #16, brief §2):

    webhooks, cli  ->  tasks  ->  flows  ->  mappings  ->  connector

Every module's source is parsed (imports inside functions and under ``TYPE_CHECKING``
included), so a lazy import against the arrow fails here as surely as a top-level one. There
is no list of exceptions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Product packages by layer; a module may import its own layer and the layers below.
LAYER = {"connector": 0, "mappings": 1, "flows": 2, "tasks": 3, "webhooks": 4, "cli": 4}
#: Packages outside the product that a layer may still import (the CLI starts the sandbox).
EXTRA = {"cli": {"sandbox"}}
#: Never imported by product code.
FOREIGN = {"sandbox", "bench", "tests", "scripts"}


def modules_of(package: str) -> list[str]:
    base = ROOT / package
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in base.rglob("*.py")
    )


def imports_in(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in the file, wherever it stands: (line, top-level package)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations() -> list[str]:
    out = []
    for package, layer in LAYER.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, top in imports_in(path):
                where = f"{path.relative_to(ROOT)}:{line}"
                if top in LAYER and top != package and LAYER[top] >= layer:
                    out.append(f"{where}: {package} (layer {layer}) imports {top}")
                elif top in FOREIGN and top not in EXTRA.get(package, set()):
                    out.append(f"{where}: {package} imports {top}")
    return out


def test_imports_point_one_way() -> None:
    assert violations() == []


def test_the_checker_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flows import FLOWS\n    import tasks.celery\n")
    assert imports_in(module) == [(2, "flows"), (3, "tasks")]


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


@pytest.mark.parametrize("package", ["connector", "mappings", "flows"])
def test_core_and_flows_load_neither_flask_nor_celery(package: str) -> None:
    loaded = imported_after(modules_of(package))
    assert "flask" not in loaded and "celery" not in loaded
    assert "webhooks" not in loaded and "tasks" not in loaded and "cli" not in loaded


def test_worker_never_imports_flask() -> None:
    loaded = imported_after(
        ["tasks.celery", *[m for m in modules_of("tasks") if m != "tasks.celery"]]
    )
    assert "celery" in loaded and "flask" not in loaded and "webhooks" not in loaded
