"""What the deploy tests share: a clean copy of the repository, the Procfile, processes in their
own process groups, and the production environment a user sets (issue #19).

The point of these tests is that nothing is re-typed: commands come from the ``Procfile`` (or
the README's ``connector run``), run through ``bash -c`` in a copy of the working tree that has
no ``var/`` and no ``.venv``, with only the documented variables set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def parse_procfile(path: Path) -> dict[str, str]:
    """``{process: command}`` from a Procfile (``name: command`` per line, ``#`` comments)."""
    entries: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"{path}: not a Procfile line: {raw!r}")
        entries[name.strip()] = command.strip()
    return entries


def clean_copy(target: Path) -> Path:
    """The working tree as a fresh clone would have it: tracked and untracked-but-not-ignored
    files only, so no ``var/``, ``.venv``, caches or schedule files come along."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.is_file():  # deleted in the working tree but still in the index
            continue
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(source.read_bytes())
        dest.chmod(source.stat().st_mode & 0o777)
    return target


def base_env(app_dir: Path, home: Path) -> dict[str, str]:
    """What the platform gives every process before the user's variables: PATH with the
    interpreter's bin directory (``connector``, ``celery``, ``gunicorn``), HOME, and the app
    directory on PYTHONPATH (the platform's "install the app" step; the test reuses the
    existing .venv for its packages, but the code that runs is the clean copy's)."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": os.pathsep.join([bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(app_dir),
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class Process:
    """One process started through ``bash -c`` in its own session (so its group can be killed)."""

    name: str
    command: str
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the whole group, then SIGKILL to whatever is left of it."""
        pgid = self.popen.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # children that outlived their parent
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)


@dataclass
class Processes:
    app_dir: Path
    log_dir: Path
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, command: str, env: dict[str, str]) -> Process:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as handle:
            popen = subprocess.Popen(
                ["bash", "-c", command],
                cwd=self.app_dir,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Process(name, command, log, popen)
        self.started.append(proc)
        return proc

    def run(self, name: str, command: str, env: dict[str, str], timeout: float = 120) -> str:
        """Run a one-off command (the release phase, a CLI call) to completion; its output."""
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.app_dir,
            env=env,
            capture_output=True,
            timeout=timeout,
        )
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if done.returncode != 0:
            raise AssertionError(f"{name}: `{command}` exited {done.returncode}:\n{out}")
        return out

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()

    def report(self) -> str:
        return "\n".join(
            f"--- {p.name} ({'up' if p.alive else f'exited {p.popen.returncode}'}): {p.command}\n"
            f"{p.tail()}"
            for p in self.started
        )


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    procs: Processes | None = None,
    interval: float = 0.5,
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` (and the processes' logs) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if procs is not None:
            dead = [p for p in procs.started if not p.alive]
            if dead:
                raise AssertionError(
                    f"waiting for {what}: {', '.join(p.name for p in dead)} exited\n"
                    + procs.report()
                )
        time.sleep(interval)  # polling a condition with a deadline, not a race workaround
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}\n" + (procs.report() if procs else "")
    )


def answers(url: str, status: int = 200, auth: tuple[str, str] | None = None) -> bool:
    try:
        return requests.get(url, timeout=3, auth=auth).status_code == status
    except requests.RequestException:
        return False


def status_of(url: str, auth: tuple[str, str] | None = None) -> int:
    return requests.get(url, timeout=5, auth=auth).status_code
