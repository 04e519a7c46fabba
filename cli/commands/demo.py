"""``connector demo``: the whole pipeline in one command, against the sandbox.

Reuses a running ``connector run`` of the same var dir (its ``run.json``), or starts one on the
embedded default in a temporary var dir (so a demo never touches ``var/``), then runs
``cli.demo.run_scenario`` and prints the table. Exit 0 only if every flow completed.
Importing this module loads neither Celery nor Flask.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Stack:
    """A ``connector run`` this command started (its own process group), and its var dir."""

    def __init__(self, var_dir: Path, keep: bool) -> None:
        self.var_dir, self.keep = var_dir, keep
        self.log = var_dir.parent / "run.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> Any:
        from cli import demo

        port, sandbox_port = _free_port(), _free_port()
        env = demo.embedded_env(os.environ, self.var_dir)
        argv = [sys.executable, "-m", "cli.main", "run", "--port", str(port),
                "--sandbox-port", str(sandbox_port)]  # fmt: skip
        click.echo(f"starting the stack (sandbox, web, worker + beat) in {self.var_dir.parent}")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=Path(__file__).resolve().parents[2],
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise click.ClickException("connector run exited:\n" + _tail(self.log))
            info = demo.read_state(self.var_dir)
            if info is not None:
                return info
            time.sleep(0.3)  # waiting for the stack to boot
        raise click.ClickException("the stack did not start in time:\n" + _tail(self.log))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.keep:
            click.echo(f"kept {self.var_dir.parent} (ledger, broker, logs: run.log)")
        else:
            shutil.rmtree(self.var_dir.parent, ignore_errors=True)


def register(main: click.Group) -> None:
    @main.command("demo")
    @click.option("--timeout", default=120.0, show_default=True, help="seconds to wait for flows")
    @click.option("--keep", is_flag=True, help="keep the temporary directory of a started stack")
    @click.option(
        "--reuse/--no-reuse",
        default=True,
        show_default=True,
        help="use a `connector run` already running on this var dir",
    )
    def demo_command(timeout: float, keep: bool, reuse: bool) -> None:
        """Push a vendor, a bill and an approved expense report through the real pipeline.

        On the embedded default with the sandbox: starts (or reuses) the sandbox, web and
        worker (+beat), creates a vendor in Zoho (webhook), a bill for it (webhook) and
        approves a report in Concur (signed event), waits for the three records and prints
        them with their states, target ids and API calls. Exit 0 iff all three were posted.
        """
        from cli import demo
        from connector.config import DEFAULT_VAR_DIR, Settings
        from connector.db import Database

        # Not get_settings(): in embedded mode it would create var/ (a key) just by looking.
        var_dir = Path(os.environ.get("CONNECTOR_VAR_DIR") or DEFAULT_VAR_DIR).resolve()
        info = demo.read_state(var_dir) if reuse else None
        stack: _Stack | None = None
        if info is not None and (info.sandbox is None or info.connection_id is None):
            click.echo(f"the stack on {info.receiver} runs without the sandbox set-up; not reused")
            info = None
        if info is None:
            root = Path(tempfile.mkdtemp(prefix="connector-demo-"))
            stack = _Stack(root / "var", keep)
            env: dict[str, str] = demo.embedded_env(os.environ, stack.var_dir)
        else:
            click.echo(f"reusing the stack on {info.receiver} (sandbox {info.sandbox})")
            env = dict(os.environ)
        code = 1
        try:
            if stack is not None:
                info = stack.start(timeout=90)
            assert info is not None and info.sandbox and info.connection_id
            settings = Settings.from_env(demo.sandbox_env(info.sandbox, env))
            db = Database(settings.database_url)
            click.echo(f"receiver {info.receiver}/ops, sandbox {info.sandbox}/")
            click.echo(
                "pushing: a new Zoho vendor, a bill for it (Zoho webhooks), an approved "
                "expense report (Concur event)..."
            )
            admin = demo.SandboxAdmin(info.sandbox)
            before, dups_before = admin.stats(), admin.duplicates()
            started = time.monotonic()
            rows = demo.run_scenario(db, info.sandbox, info.connection_id, timeout=timeout)
            took = time.monotonic() - started
            after = admin.stats()
            click.echo("")
            click.echo(demo.table(rows))
            click.echo("")
            click.echo(_totals(before, after, took))
            duplicates = demo.new_duplicates(dups_before, admin.duplicates())
            click.echo(
                "sandbox duplicates report: "
                + ("; ".join(duplicates) if duplicates else "nothing new (no duplicates)")
            )
            ok = all(r.state == "posted" for r in rows) and not duplicates
            click.echo("every flow completed" if ok else "NOT every flow completed")
            db.dispose()
            code = 0 if ok else 1
        finally:
            if stack is not None:
                stack.stop()
        sys.exit(code)


def _totals(before: dict[str, Any], after: dict[str, Any], took: float) -> str:
    tenants = after.get("per_tenant") or {}
    old = before.get("per_tenant") or {}
    calls = {k: v - old.get(k, 0) for k, v in tenants.items() if v - old.get(k, 0)}
    zoho = sum(v for k, v in calls.items() if k.startswith("zoho:"))
    concur = sum(v for k, v in calls.items() if k.startswith("concur:"))
    return (
        f"{took:.1f} s; API calls seen by the sandbox meanwhile (all processes, incl. intake "
        f"and beat): Zoho {zoho}, Concur {concur}"
    )
