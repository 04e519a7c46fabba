"""The ``connector`` command: set-up, operations and the all-in-one embedded runner.

Every subcommand turns a ``ConfigurationError`` into one readable message and exit status 2,
never a traceback: a newcomer with a typo in an environment variable should see the list of
problems, not Python internals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from cli.commands.common import for_connection, friendly_errors, load_settings
from connector import __version__
from connector.errors import ConfigurationError, ConnectorError
from flows import FLOWS

ROOT = Path(__file__).resolve().parent.parent


def _settings() -> Any:
    return load_settings()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="connector")
def main() -> None:
    """Zoho Books ⇄ SAP Concur connector."""


# --------------------------------------------------------------------------- config


@main.command("config")
@friendly_errors
def show_config() -> None:
    """Check the configuration and print it (secrets masked)."""
    settings = _settings()
    for key, value in settings.safe_summary().items():
        click.echo(f"{key:28} {value}")
    click.echo(f"{'mode':28} {'embedded' if settings.embedded else 'production'}")
    _show_ess_keys(settings.concur_webhook_public_keys)


def _show_ess_keys(paths: tuple[str, ...]) -> None:
    """List the Concur signing keys with their end dates; warn (stderr, exit 0) before they lapse.

    A warning, not a refusal: the keys still verify today, and the fix (adding next year's key)
    is the operator's to schedule.
    """
    from connector.ess_keys import describe_all, expiry_warning

    keys = describe_all(paths)
    for key in keys:
        fingerprint = f"sha256:{key.fingerprint[:16]}…" if key.fingerprint else "-"
        click.echo(f"{'concur ESS key':28} {key.path}  {key.kind}  {fingerprint}  until {key.end}")
    warning = expiry_warning(keys)
    if warning:
        click.echo(f"warning: {warning}", err=True)


# --------------------------------------------------------------------------- db


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@friendly_errors
def db_upgrade(revision: str) -> None:
    """Apply migrations (the Procfile's release step)."""
    from connector.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}")


# --------------------------------------------------------------------------- keys


@main.group()
def keys() -> None:
    """Encryption keys for stored credentials."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key for CONNECTOR_SECRET_KEY."""
    from connector.vault import generate_key

    click.echo(generate_key())


@keys.command("rotate")
@friendly_errors
def keys_rotate() -> None:
    """Re-encrypt every stored secret under the first key of CONNECTOR_SECRET_KEY."""
    from connector.db import get_database
    from connector.secrets import rotate_all
    from connector.vault import Vault

    settings = _settings()
    count = rotate_all(get_database(settings.database_url), Vault(settings.secret_keys))
    click.echo(f"re-encrypted {count} secret(s) under the first key")


# --------------------------------------------------------------------------- sandbox


@main.group()
def sandbox() -> None:
    """The simulated Zoho Books and SAP Concur."""


@sandbox.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="keep the sandbox's documents and tokens in DIR/sandbox.snapshot across restarts",
)
def sandbox_serve(host: str, port: int, state_dir: str | None) -> None:
    """Run both simulated systems until interrupted."""
    from sandbox.server import serve

    serve(host, port, state_dir=state_dir)


# --------------------------------------------------------------------------- selftest


@main.command("selftest")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for the worker")
@friendly_errors
def selftest(timeout: float) -> None:
    """Push one record through the real broker and worker and report how it went."""
    from tasks.selftest import run_selftest

    _settings()
    report = run_selftest(timeout=timeout)
    click.echo(json.dumps(report, indent=2))
    sys.exit(0 if report["state"] == "posted" else 1)


# --------------------------------------------------------------------------- sync


@main.command("sync")
@click.argument("connection")
@click.option("--flow", "flows", multiple=True, help="payables, expenses or vendors (default: all)")
@friendly_errors
def sync_now(connection: str, flows: tuple[str, ...]) -> None:
    """Run the polling pass of each flow for a connection now and enqueue what it finds."""
    from tasks.pipeline import enqueue_all

    settings, db, connection_id = for_connection(connection)
    for flow in flows or tuple(FLOWS.polled()):
        result = FLOWS.sync(db, settings, connection_id, flow)
        enqueue_all(result.records)
        click.echo(f"{flow}: {len(result.records)} record(s) enqueued. {result.summary}".strip())


# --------------------------------------------------------------------------- flower


@main.command("flower", context_settings={"ignore_unknown_options": True})
@click.option("--port", type=int, default=None, help="default: $PORT or 5555")
@click.option(
    "--address",
    default=None,
    help="listen address (default: 127.0.0.1 in embedded mode, 0.0.0.0 in production)",
)
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@friendly_errors
def flower(port: int | None, address: str | None, extra: tuple[str, ...]) -> None:
    """Run Flower; listening anywhere but loopback needs FLOWER_BASIC_AUTH.

    Flower without authentication is a remote control for the whole cluster, so whether it
    needs a password is decided by where it listens (issue #12): on loopback it may run open,
    anywhere else it refuses to start without FLOWER_BASIC_AUTH. The credentials go to Flower
    through its own environment variable, not the command line, so they never show in ``ps``.
    """
    settings = _settings()
    argv = flower_argv(settings, port or int(os.environ.get("PORT", "5555")), address, extra)
    env = dict(os.environ)
    if settings.flower_basic_auth:
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth
    os.execvpe(argv[0], argv, env)  # noqa: S606  (replace this process: signals reach Flower)


def flower_argv(
    settings: Any, port: int, address: str | None, extra: tuple[str, ...] = ()
) -> list[str]:
    """Flower's command line, or an error when it would listen beyond loopback without auth.

    Default address: 127.0.0.1 in embedded mode, 0.0.0.0 in production (the platform's router
    must reach it, and FLOWER_BASIC_AUTH is then required).
    """
    from connector.config import is_loopback_host

    for arg in extra:
        name = arg.split("=", 1)[0]
        if name in ("--address", "--basic-auth", "--basic_auth", "--auth"):
            raise click.UsageError(
                f"set {name} through connector flower's own options and FLOWER_BASIC_AUTH, "
                "not as a Flower argument"
            )
    address = address or ("127.0.0.1" if settings.embedded else "0.0.0.0")  # noqa: S104
    if not settings.flower_basic_auth and not is_loopback_host(address):
        raise ConfigurationError(
            f"FLOWER_BASIC_AUTH (user:password) is required to run Flower on {address} "
            "(only a loopback address may run without it)"
        )
    return [
        sys.executable, "-m", "celery", "-A", "tasks", "flower",
        f"--address={address}", f"--port={port}", *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------- run


@main.command("run")
@click.option("--port", type=int, default=None, help="web port (default: $PORT or 5000)")
@click.option("--sandbox-port", type=int, default=8090, show_default=True)
@click.option(
    "--sandbox/--no-sandbox",
    "use_sandbox",
    default=None,
    help="run the sandbox in place of Zoho and Concur (default: on in embedded mode)",
)
@click.option(
    "--setup/--no-setup",
    default=True,
    show_default=True,
    help="with the sandbox: create, authorize and wire the demo connection (idempotent)",
)
@click.option("--concurrency", type=int, default=2, show_default=True)
@friendly_errors
def run(
    port: int | None,
    sandbox_port: int,
    use_sandbox: bool | None,
    setup: bool,
    concurrency: int,
) -> None:
    """Run the whole connector on this machine: web, worker, beat (and the sandbox).

    With neither DATABASE_URL nor REDIS_URL set this needs no servers: SQLite for the ledger,
    an SQLite-backed broker and limiter under var/. With them set, it uses those instead.

    With the sandbox, the sandbox starts first; its ESS public key is saved under var/ and
    given to the web process (CONCUR_WEBHOOK_PUBLIC_KEYS), and the demo connection
    ("sandbox-demo") is created, authorized on both sides, given the demo rules and wired to
    the sandbox's Zoho webhook and Concur event subscription (cli/demo.py), so a bill
    created on the sandbox page goes through the pipeline.
    """
    from cli import demo
    from connector.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    port = port or settings.port
    var_dir = settings.var_dir.resolve()
    env = dict(os.environ)
    env.setdefault("CONNECTOR_VAR_DIR", str(settings.var_dir))
    if use_sandbox is None:
        use_sandbox = settings.embedded and not settings.zoho_client_id
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    receiver = f"http://127.0.0.1:{port}"
    # The web process learns where it listens from WEB_BIND (loopback: /ops may run without a
    # password for local requests; docs/security.md).
    env["WEB_BIND"] = f"127.0.0.1:{port}"
    sandbox_url = f"http://127.0.0.1:{sandbox_port}" if use_sandbox else None
    connection_id: int | None = None

    def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        click.echo(f"starting {name}: {' '.join(argv)}")
        proc = subprocess.Popen(argv, env=env, cwd=ROOT)
        procs.append((name, proc))
        return proc

    def stop_all() -> None:
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    py = sys.executable
    if sandbox_url:
        env = demo.sandbox_env(sandbox_url, env)
        # The sandbox keeps its documents and issued tokens under var/ like the ledger, so a
        # record from yesterday still points at a bill that exists; `make clean` starts over.
        sandbox_proc = start(
            "sandbox",
            [py, "-m", "sandbox", "serve", "--host", "127.0.0.1", "--port", str(sandbox_port),
             "--state-dir", str(var_dir / "sandbox")],
        )  # fmt: skip
        if not demo.wait_until(
            f"{sandbox_url}/_admin/stats", timeout=30, alive=lambda: sandbox_proc.poll() is None
        ):
            stop_all()
            raise ConnectorError(f"the sandbox did not start on {sandbox_url}")
        # The receiver verifies Concur-Signature with the sandbox's key (new per sandbox
        # process): fetched before the web process starts, added to any configured keys.
        pem = demo.fetch_public_key(sandbox_url, var_dir)
        keys = [k for k in env.get("CONCUR_WEBHOOK_PUBLIC_KEYS", "").split(",") if k.strip()]
        env["CONCUR_WEBHOOK_PUBLIC_KEYS"] = ",".join([*keys, str(pem)])
        if setup:
            restored = demo.sandbox_restored(sandbox_url)
            connection_id = _sandbox_setup(env, sandbox_url, receiver, fresh=not restored)
    from connector.logs import ACCESS_LOG_FORMAT as access_log_format

    start(
        "web",
        [
            py,
            "-m",
            "gunicorn",
            "webhooks.wsgi:app",
            "--bind",
            env["WEB_BIND"],
            "--workers",
            "2",
            "--threads",
            "4",
            "--access-logfile",
            "-",
            "--access-logformat",
            access_log_format,
        ],
    )
    from tasks.launch import worker_argv

    start("worker", worker_argv(concurrency=concurrency, beat=True, python=py))
    ready = demo.wait_until(
        f"{receiver}/healthz", timeout=30, alive=lambda: procs[-2][1].poll() is None
    )
    click.echo("")
    click.echo(f"connector receiver on {receiver}  (health: /healthz, readiness: /readyz)")
    click.echo(f"operator's page:       {receiver}/ops")
    if sandbox_url:
        click.echo(f"sandbox page:          {sandbox_url}/  (simulated Zoho Books + SAP Concur)")
        click.echo(f"Concur reports page:   {sandbox_url}/_admin/concur/ui")
        if connection_id is not None:
            click.echo(
                f"Create a bill on the sandbox page (organization Acme Corporation, {demo.ZOHO_ORG}) "
                f"or approve a report on the Concur page, and watch it arrive on {receiver}/ops "
                f"(connection {connection_id}, {demo.CONNECTION_NAME})."
            )
    if not ready:
        click.echo("warning: the web process did not answer /healthz within 30 s", err=True)
    click.echo("Ctrl-C stops everything; state is kept in " + str(var_dir))
    state = demo.write_state(
        var_dir,
        demo.StackInfo(os.getpid(), receiver, sandbox_url, connection_id, str(var_dir)),
    )
    try:
        _supervise(procs)
    finally:
        state.unlink(missing_ok=True)


def _sandbox_setup(
    env: dict[str, str], sandbox_url: str, receiver: str, *, fresh: bool = True
) -> int | None:
    """The demo connection's set-up; a failure is reported, the stack still starts.

    ``fresh``: the sandbox started without a snapshot, so the stored credentials cannot work
    and are re-issued at once; after a restore they are tried first (``demo.set_up``).
    """
    from cli import demo
    from connector.config import Settings
    from connector.db import get_database

    try:
        settings = Settings.from_env(env)
        db = get_database(settings.database_url)
        report = demo.set_up(db, settings, sandbox_url, receiver, fresh_sandbox=fresh)
    except Exception as exc:  # shown, not fatal: the processes are useful without it
        click.echo(f"warning: sandbox set-up failed: {type(exc).__name__}: {exc}", err=True)
        return None
    for line in report.done:
        click.echo(f"set-up: {line}")
    click.echo(f"set-up: connection {report.connection_id} ({report.name}) is ready")
    return report.connection_id


def _supervise(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Wait until Ctrl-C or until any child exits, then stop the others."""
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    try:
        while not stopping:
            for name, proc in procs:
                code = proc.poll()
                if code is not None:
                    click.echo(f"{name} exited with status {code}; stopping the rest", err=True)
                    exit_code = code or 1
                    stopping = True
                    break
            else:
                time.sleep(0.5)  # supervisor poll interval, not a race workaround
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for _, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    sys.exit(exit_code)


# Connections, authorization, ping, webhook and ESS set-up, rules (cli/commands/connections.py).
from cli.commands.connections import register as _register_connection_commands  # noqa: E402

_register_connection_commands(main)

# Operator commands: replay, records list/show (cli/commands/ops.py).
from cli.commands.ops import register as _register_ops_commands  # noqa: E402

_register_ops_commands(main)

# Vendor master: vendors diff (cli/commands/vendors.py).
from cli.commands import vendors as _vendors  # noqa: E402

_vendors.register(main)


# Backfill and demo (cli/commands/backfill.py, cli/commands/demo.py).
from cli.commands import backfill as _backfill  # noqa: E402

_backfill.register(main)

from cli.commands import demo as _demo  # noqa: E402

_demo.register(main)


if __name__ == "__main__":  # pragma: no cover
    main()
