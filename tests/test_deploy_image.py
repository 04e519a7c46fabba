"""Issue #19: the container image and the compose stack agree with the Procfile.

Docker is not available everywhere (CI machines without an engine), so two layers:

- static checks that always run: the Dockerfile's base, its non-root ``USER`` and entrypoint;
  the entrypoint (``scripts/procfile-run``) resolving each name to the Procfile's own line and
  really running ``release``; every Procfile process present in ``docker-compose.yml`` with the
  deploy variables the README lists, ``release`` before the others;
- ``test_image_builds_and_runs_as_non_root``: ``docker build`` and a run of the image, only
  where ``docker info`` succeeds; elsewhere it skips and says why.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_support import ROOT, parse_procfile

ENTRYPOINT = ROOT / "scripts" / "procfile-run"
PROCFILE = parse_procfile(ROOT / "Procfile")
#: What the README's deploy steps require in production (README, "Deploying on a Heroku-style
#: platform"); compose must set each for every connector service.
DEPLOY_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CONNECTOR_SECRET_KEY",
    "OPS_BASIC_AUTH",
    "FLOWER_BASIC_AUTH",
    "CONNECTOR_PUBLIC_URL",
)


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of ``(INSTRUCTION, arguments)``, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def run_entrypoint(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_dockerfile_is_small_and_runs_as_a_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    assert final[0] == ("FROM", "python:3.11-slim")
    users = [args for instruction, args in final if instruction == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    entry = [args for instruction, args in final if instruction == "ENTRYPOINT"]
    assert entry == ['["/app/scripts/procfile-run"]']
    assert ("WORKDIR", "/app") in final
    # Beat's schedule goes to a directory the user owns (CONNECTOR_BEAT_SCHEDULE's default).
    env = " ".join(args for instruction, args in final if instruction == "ENV")
    assert "CONNECTOR_VAR_DIR=/var/lib/connector" in env
    run = " ".join(args for instruction, args in final if instruction == "RUN")
    assert "-o connector" in run and "/var/lib/connector" in run


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", "var", ".env"} <= ignored


@pytest.mark.parametrize("name", sorted(PROCFILE))
def test_entrypoint_runs_the_procfile_line_itself(name: str) -> None:
    done = run_entrypoint("--print", name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == PROCFILE[name]


def test_entrypoint_refuses_an_unknown_process_and_passes_commands_through() -> None:
    unknown = run_entrypoint("--print", "webb")
    assert unknown.returncode == 2 and "no Procfile process named 'webb'" in unknown.stderr
    passed = run_entrypoint("echo", "one-off")
    assert passed.returncode == 0 and passed.stdout.strip() == "one-off"


def test_entrypoint_release_migrates(tmp_path: Path) -> None:
    """The entrypoint really runs the Procfile's release line (on SQLite, so no server)."""
    import sys

    database = tmp_path / "release.sqlite"
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{database}",
        "CONNECTOR_VAR_DIR": str(tmp_path / "var"),
    }
    done = run_entrypoint("release", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"alembic_version", "connections", "sync_records"} <= tables


def test_compose_runs_every_procfile_process_from_the_image() -> None:
    services = compose()["services"]
    for name in PROCFILE:
        service = services[name]
        assert service["command"] == [name], f"{name}: command must be the Procfile name"
        assert service["build"] == "." and service.get("user") in (None, "connector")
        env = service["environment"]
        missing = [v for v in DEPLOY_VARIABLES if not env.get(v)]
        assert not missing, f"{name}: compose does not set {missing}"
    for name in ("web", "worker", "beat", "flower"):
        needs = services[name]["depends_on"]
        assert needs["release"]["condition"] == "service_completed_successfully"
        assert needs["postgres"]["condition"] == "service_healthy"
        assert needs["redis"]["condition"] == "service_healthy"
    assert services["web"]["environment"]["PORT"] != services["flower"]["environment"]["PORT"]
    assert {"postgres", "redis", "sandbox"} <= set(services)
    assert "noeviction" in services["redis"]["command"]


def test_compose_points_the_connector_at_the_sandbox_service() -> None:
    services = compose()["services"]
    env = services["worker"]["environment"]
    assert env["CONNECTOR_SANDBOX_URL"] == "http://sandbox:8090"
    sandbox_cmd = services["sandbox"]["command"]
    assert sandbox_cmd[:3] == ["connector", "sandbox", "serve"]
    assert sandbox_cmd[sandbox_cmd.index("--port") + 1] == "8090"
    # The README's compose steps name the service and script that exist.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docker compose exec web python scripts/sandbox_connect.py" in readme
    assert (ROOT / "scripts" / "sandbox_connect.py").is_file()


def _docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker info` failed: {exc}"
    if info.returncode != 0:
        reason = (info.stderr or info.stdout).strip().splitlines()
        return "no Docker engine (`docker info`: " + (reason[-1] if reason else "failed") + ")"
    return None


@pytest.mark.slow
def test_image_builds_and_runs_as_non_root() -> None:
    reason = _docker_unavailable()
    if reason:
        pytest.skip(f"cannot build the image here: {reason}")
    tag = "zoho-concur-connector:test"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1200
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    whoami = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert whoami.returncode == 0 and whoami.stdout.strip() not in {"", "0"}, whoami.stderr
    for name, line in PROCFILE.items():
        shown = subprocess.run(
            ["docker", "run", "--rm", tag, "--print", name],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert shown.stdout.strip() == line, shown.stderr
    version = subprocess.run(
        ["docker", "run", "--rm", tag, "connector", "--version"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert version.returncode == 0, version.stderr
