"""Every declared runtime dependency is used by the product (issue #16).

A dependency nobody imports is a package we install, lock, audit and patch for nothing; worse,
it can hide hand-written code that duplicates it (requests-oauthlib was declared for years while
``connector/`` spoke OAuth by hand). So each distribution in ``[project].dependencies`` must be
imported somewhere in the product packages, found by parsing every module (imports inside
functions included), or be named in :data:`NOT_IMPORTED` with the reason it is still needed.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Where runtime code lives (tests, sandbox, bench and scripts use the test/dev extras).
PRODUCT = ("connector", "mappings", "flows", "tasks", "webhooks", "cli")
PRODUCT_FILES = ("celeryconfig.py",)

#: Distribution name -> the top-level module it installs, where the two differ.
IMPORT_NAMES = {
    "psycopg2-binary": "psycopg2",
    "requests-oauthlib": "requests_oauthlib",
    "python-dateutil": "dateutil",
    "pyyaml": "yaml",
}

#: Needed at run time but never imported by our code, and why. Keep this list short.
NOT_IMPORTED = {
    # The PostgreSQL driver: SQLAlchemy loads it from the database URL (postgresql://...).
    "psycopg2-binary": "SQLAlchemy's PostgreSQL driver, loaded by URL",
    # The web server: the Procfile, the image and `connector run` start it as a command.
    "gunicorn": "the WSGI server, started as `gunicorn webhooks.wsgi:app`",
    # The monitoring UI: `connector flower` runs `celery -A tasks flower` as a process.
    "flower": "Celery's monitoring UI, started by `connector flower`",
}


def declared() -> list[str]:
    """Distribution names in ``[project].dependencies``, normalised, extras and pins dropped."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = []
    for requirement in project["dependencies"]:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, requirement
        names.append(re.sub(r"[-_.]+", "-", match[1]).lower())
    return names


def import_name(distribution: str) -> str:
    return IMPORT_NAMES.get(distribution, distribution.replace("-", "_"))


def imported_modules() -> set[str]:
    """Top-level names of every absolute import in the product's modules."""
    files = [p for package in PRODUCT for p in (ROOT / package).rglob("*.py")]
    files += [ROOT / name for name in PRODUCT_FILES]
    found: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_every_runtime_dependency_is_imported_by_the_product() -> None:
    imported = imported_modules()
    unused = [
        f"{name} (import {import_name(name)!r})"
        for name in declared()
        if name not in NOT_IMPORTED and import_name(name) not in imported
    ]
    assert not unused, (
        f"declared in [project].dependencies but imported nowhere in {PRODUCT}: {unused}; "
        "use it where its job is done by hand, drop it, or say in NOT_IMPORTED why it stays"
    )


def test_the_allow_list_names_only_declared_packages_that_are_really_not_imported() -> None:
    names = set(declared())
    imported = imported_modules()
    stale = [n for n in NOT_IMPORTED if n not in names or import_name(n) in imported]
    assert not stale, f"NOT_IMPORTED lists packages that are gone or now imported: {stale}"
