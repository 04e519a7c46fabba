"""``connector connections|connect|ping|webhooks|concur|mappings``: set up and check connections.

Registered on the main group by ``cli.main``. Every command prints one readable error line
and exits non-zero on failure (``friendly_errors``); nothing prints a token or a secret except
``webhooks zoho``, whose whole point is to show the signing secret to paste into Zoho.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from cli.commands import common
from connector.config import Settings
from connector.db import Database

log = logging.getLogger(__name__)

friendly_errors = common.friendly_errors
_settings = common.load_settings
_context = common.context
_echo_json = common.echo_json


def _connection_id(db: Database, ident: str) -> int:
    from connector import connections

    return connections.resolve(db, ident).id


def _enqueue_resumed(resumed: list[tuple[int, str]]) -> None:
    """Put resumed records back on their queues; the sweeper re-drives any that fail here."""
    if not resumed:
        return
    try:
        from tasks.pipeline import enqueue_all

        enqueue_all(resumed)
        click.echo(f"resumed {len(resumed)} parked record(s)")
    except Exception as exc:
        click.echo(
            f"resumed {len(resumed)} parked record(s); the broker is unreachable ({exc}), so "
            "the sweeper will re-drive them",
            err=True,
        )


# --------------------------------------------------------------------------- connections


@click.group("connections")
def connections_group() -> None:
    """Create, list, show and delete connections (a Zoho org paired with a Concur company)."""


@connections_group.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print {id, name} as JSON")
@friendly_errors
def connections_create(name: str, as_json: bool) -> None:
    """Create a connection named NAME and print its id."""
    from connector import connections

    _, db = _context()
    connection_id = connections.create(db, name)
    if as_json:
        _echo_json({"id": connection_id, "name": name})
    else:
        click.echo(connection_id)


def _side_line(system: str, side: dict[str, Any]) -> str:
    status = side["status"]
    parts = [f"{system:7}{status}"]
    if side.get("region"):
        parts.append(f"region {side['region']}")
    if system == "zoho" and side.get("organization_id"):
        org = side["organization_id"]
        parts.append(
            f"organization {org}" + (f" ({side['principal']})" if side.get("principal") else "")
        )
    if system == "concur" and side.get("company_id"):
        parts.append(f"company {side['company_id']}")
    if side.get("access_expires_in"):
        parts.append(f"token expires in {side['access_expires_in']}")
    if side.get("refresh_token_age"):
        parts.append(f"refresh token age {side['refresh_token_age']}")
    if side.get("refresh_expires_at"):
        parts.append(f"refresh token expires {side['refresh_expires_at'][:10]}")
    return ", ".join(parts)


@connections_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def connections_list(as_json: bool) -> None:
    """List connections with the status of each side."""
    from connector import connections

    _, db = _context()
    rows = connections.list_all(db)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no connections yet; create one with `connector connections create NAME`")
        return
    click.echo(f"{'ID':>4}  {'NAME':24} {'STATUS':13} {'ZOHO':20} {'CONCUR':14}")
    for row in rows:
        click.echo(
            f"{row['id']:>4}  {row['name'][:24]:24} {row['status']:13} "
            f"{row['zoho']['status']:20} {row['concur']['status']:14}"
        )


@connections_group.command("show")
@click.argument("connection")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def connections_show(connection: str, as_json: bool) -> None:
    """Show one connection: each side's status, region, tenant, token expiry and age."""
    from connector import connections

    _, db, connection_id = common.for_connection(connection)
    data = connections.show(db, connection_id)
    if as_json:
        _echo_json(data)
        return
    click.echo(f"connection {data['id']} ({data['name']}): {data['status']}")
    if data["status_reason"]:
        click.echo(f"  note: {data['status_reason']}")
    for system in ("zoho", "concur"):
        click.echo("  " + _side_line(system, data[system]))


@connections_group.command("delete")
@click.argument("connection")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@friendly_errors
def connections_delete(connection: str, yes: bool) -> None:
    """Delete a connection: revoke what can be revoked, remove its secrets and records."""
    from connector import connections

    settings, db, connection_id = common.for_connection(connection)
    if not yes:
        click.confirm(
            f"Delete connection {connection_id} with its tokens, records and audit trail?",
            abort=True,
        )
    for note in connections.delete(db, settings, connection_id):
        click.echo(note)


# --------------------------------------------------------------------------- connect


@click.group("connect")
def connect_group() -> None:
    """Authorize one side of a connection."""


@connect_group.command("zoho")
@click.argument("connection")
@click.option("--code", help="grant code from the Zoho API console's Self Client")
@click.option("--accounts-server", help="the accounts server of your data centre "
              "(default: ZOHO_ACCOUNTS_URL), e.g. https://accounts.zoho.eu")  # fmt: skip
@click.option("--organization-id", help="the Zoho Books organization to use")
@click.option("--client-id", help="the self client's id (default: ZOHO_CLIENT_ID)")
@click.option("--client-secret", help="the self client's secret (default: ZOHO_CLIENT_SECRET)")
@click.option(
    "--replace-organization",
    metavar="OLD_ID",
    help="confirm moving the connection from organization OLD_ID to --organization-id",
)
@friendly_errors
def connect_zoho(
    connection: str,
    code: str | None,
    accounts_server: str | None,
    organization_id: str | None,
    client_id: str | None,
    client_secret: str | None,
    replace_organization: str | None,
) -> None:
    """Authorize Zoho Books with a self-client grant code (no browser needed).

    Without --code, prints the web-flow URL to open in a browser instead. Generate the code in
    the API console (Self Client) with these scopes and a few minutes' validity:

    ZohoBooks.settings.READ, ZohoBooks.contacts.READ/CREATE/UPDATE, ZohoBooks.bills.READ,
    ZohoBooks.invoices.READ, ZohoBooks.accountants.READ/CREATE/UPDATE
    """
    from connector import authorize, connections

    settings, db, connection_id = common.for_connection(connection)
    if not code:
        start = (
            f"{connections.public_base_url(settings)}/oauth/zoho/start?connection={connection_id}"
        )
        click.echo(f"Open this URL in a browser to authorize Zoho Books:\n  {start}")
        click.echo("(it asks for the operator login, OPS_BASIC_AUTH, like /ops)")
        click.echo("(or pass --code and --organization-id from a Self Client)")
        return
    if not organization_id:
        raise click.UsageError("--organization-id is required with --code")
    if bool(client_id) != bool(client_secret):
        raise click.UsageError("--client-id and --client-secret go together")
    result = authorize.connect_zoho_self_client(
        db,
        settings,
        connection_id,
        code=code,
        organization_id=organization_id,
        accounts_server=accounts_server,
        client_id=client_id,
        client_secret=client_secret,
        replace_organization=replace_organization,
    )
    org = next(o for o in result.organizations if o.organization_id == organization_id)
    click.echo(
        f"connection {connection_id}: Zoho Books connected to organization {org.organization_id} "
        f"({org.name})"
    )
    _enqueue_resumed(result.resumed)


@connect_group.command("concur")
@click.argument("connection")
@click.option("--company-id", required=True, help="the company UUID (Company Request Token tool)")
@click.option("--request-token", required=True, prompt=True, hide_input=True,
              help="the company request token (valid 24 hours); prompted if omitted")  # fmt: skip
@click.option("--auth-url", help="where the bootstrap starts (default: CONCUR_AUTH_URL)")
@click.option(
    "--replace-company",
    metavar="OLD_UUID",
    help="confirm moving the connection from company OLD_UUID to --company-id",
)
@friendly_errors
def connect_concur(
    connection: str,
    company_id: str,
    request_token: str,
    auth_url: str | None,
    replace_company: str | None,
) -> None:
    """Authorize SAP Concur with the company request token (company bootstrap)."""
    from connector import authorize, connections

    settings, db, connection_id = common.for_connection(connection)
    result = authorize.connect_concur(
        db,
        settings,
        connection_id,
        company_id=company_id,
        request_token=request_token,
        auth_url=auth_url,
        replace_company=replace_company,
    )
    data = connections.show(db, connection_id)["concur"]
    click.echo(
        f"connection {connection_id}: SAP Concur connected to company {company_id} at "
        f"{data['api_base_url']}"
    )
    _enqueue_resumed(result.resumed)


# --------------------------------------------------------------------------- ping


@click.command("ping")
@click.argument("connection", required=False)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def ping_command(connection: str | None, as_json: bool) -> None:
    """Check tokens, tenant access and one read on each side (all connections by default)."""
    from connector import connections, ping

    settings, db = _context()
    if connection is None:
        ids = [row["id"] for row in connections.list_all(db)]
        if not ids:
            click.echo("no connections to ping", err=True)
            sys.exit(1)
    else:
        ids = [_connection_id(db, connection)]
    report: dict[int, list[ping.Check]] = {cid: ping.ping(db, settings, cid) for cid in ids}
    failed = any(not c.ok for checks in report.values() for c in checks)
    if as_json:
        _echo_json({str(cid): [c.as_dict() for c in checks] for cid, checks in report.items()})
    else:
        for cid, checks in report.items():
            for c in checks:
                verdict = "ok  " if c.ok else "FAIL"
                click.echo(
                    f"{cid:>4} {c.system:7}{c.name:18} {verdict} {c.duration_ms:7.0f} ms  {c.detail}"
                )
    sys.exit(1 if failed else 0)


# --------------------------------------------------------------------------- webhooks


@click.group("webhooks")
def webhooks_group() -> None:
    """Webhook set-up helpers."""


@webhooks_group.command("zoho")
@click.argument("connection")
@click.option(
    "--rotate", is_flag=True, help="make a new signing secret and token (the old ones stop working)"
)
@click.option(
    "--inspect-last",
    is_flag=True,
    help="show the last delivery's headers and the canonical strings tried (secrets masked)",
)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def webhooks_zoho(connection: str, rotate: bool, inspect_last: bool, as_json: bool) -> None:
    """Print the receiver URL, signing secret and token to paste into a Zoho Books webhook."""
    from connector import connections, webhook_secrets

    settings, db, connection_id = common.for_connection(connection)
    if inspect_last:
        if rotate:
            raise click.UsageError("--inspect-last and --rotate do not go together")
        _inspect_last(db, connection_id, as_json)
        return
    creds = webhook_secrets.webhook_credentials(db, settings, connection_id, rotate=rotate)
    url = f"{connections.public_base_url(settings)}/webhooks/zoho/{connection_id}"
    if as_json:
        _echo_json({"connection_id": connection_id, "url": url, "secret": creds.secret,
                    "token": creds.token, "signature_header": "X-Zoho-Webhook-Signature",
                    "signature_encoding": settings.zoho_webhook_signature_encoding,
                    "token_header": "X-Connector-Token", "rotated": rotate,
                    "change": creds.change})  # fmt: skip
        return
    notes = {
        "rotated": "   (new: update Zoho now)",
        "replaced": "   (new: the stored one broke Zoho's rule, "
        f"{webhook_secrets.ZOHO_SECRET_RULE_TEXT}; update Zoho now)",
    }
    click.echo(f"receiver URL:   {url}")
    click.echo(f"signing secret: {creds.secret}" + notes.get(creds.change or "", ""))
    click.echo(f"webhook token:  {creds.token}   (only where Zoho cannot sign)")
    click.echo(
        "In Zoho Books: Settings > Automation > Workflow Actions > Webhooks: URL above, method "
        "POST, default JSON payload (or form JSONString), and the signing secret as the "
        "webhook's Secret (X-Zoho-Webhook-Signature). Where signing is unavailable, add a "
        "custom header X-Connector-Token (or query parameter token) with the webhook token "
        "instead. The token is not the secret; never put the secret in the URL."
    )
    if not settings.public_url:
        click.echo(
            "note: CONNECTOR_PUBLIC_URL is not set; the URL above is local. Set it to the "
            "address Zoho can reach.",
            err=True,
        )


def _inspect_last(db: Database, connection_id: int, as_json: bool) -> None:
    """The receiver's newest diagnosis: how Books signed one real delivery (docs/security.md)."""
    from connector import webhook_secrets

    found = webhook_secrets.last_diagnosis(db, connection_id)
    if found is None:
        raise click.ClickException(
            f"connection {connection_id}: no Zoho delivery recorded yet; trigger the webhook "
            "once (edit a bill in Zoho Books) and run this again"
        )
    if as_json:
        _echo_json(found)
        return
    click.echo(f"last delivery: {found['at']}  outcome: {found['outcome']}")
    click.echo(f"signature encoding setting: {found['encoding_setting']}")
    click.echo("headers:")
    for name, value in found["headers"].items():
        click.echo(f"  {name}: {value}")
    click.echo(f"query: {found['query']}")
    if found["form_fields"]:
        click.echo(f"form fields: {found['form_fields']}")
    click.echo(f"body: {found['body_bytes']} bytes, sha256 {found['body_sha256']}")
    click.echo(f"signature received: {found['signature_received'] or '(none)'}")
    click.echo(
        f"token received: {'yes' if found['token_received'] else 'no'}"
        + (
            f" (matches: {'yes' if found['token_matches'] else 'no'})"
            if found["token_received"]
            else ""
        )
    )
    click.echo("canonical strings tried (secrets masked as ***):")
    for tried in found["tried"]:
        hits = [enc for enc, ok in tried["matches"].items() if ok]
        verdict = f"MATCHES ({', '.join(hits)})" if hits else "no match"
        click.echo(f"  - {tried['variant']}: {verdict}")
        click.echo(f"    {tried['canonical']!r} ({tried['canonical_bytes']} bytes)")
    matched = [
        (t["variant"], enc) for t in found["tried"] for enc, ok in t["matches"].items() if ok
    ]
    if matched:
        variant, enc = matched[0]
        click.echo(
            f"=> Books signs as: {variant}, {enc}. Set ZOHO_WEBHOOK_SIGNATURE_ENCODING={enc}."
        )
    elif found["signature_received"]:
        click.echo(
            "=> no variant matches: check the secret configured in Zoho (or --rotate and paste "
            "it again), then send one more delivery"
        )
    else:
        click.echo(
            "=> no X-Zoho-Webhook-Signature header: look in the headers above for the one Books "
            "used, or configure the webhook's Secret in Zoho"
        )


# --------------------------------------------------------------------------- concur ESS


@click.group("concur")
def concur_group() -> None:
    """SAP Concur Event Subscription Service (expense report events)."""


def _app_client(settings: Settings, db: Database, connection: str | None) -> Any:
    from connector import connections
    from connector.api.oauth import StaticToken
    from connector.concur import auth as concur_auth
    from connector.concur.client import ConcurClient

    base = settings.concur_auth_url
    if connection is not None:
        data = connections.show(db, _connection_id(db, connection))["concur"]
        if data["status"] == "not_connected" or not data.get("api_base_url"):
            raise click.UsageError(f"connection {connection}: connect Concur first")
        base = data["api_base_url"]
    token, geolocation = concur_auth.app_token(settings, base)
    return ConcurClient(geolocation, None, auth=StaticToken(token))


@concur_group.command("subscribe")
@click.argument("connection")
@click.option("--endpoint", required=True, help="public https URL of POST /webhooks/concur")
@click.option("--id", "subscription_id", default="zoho-concur-connector.expense-report",
              show_default=True, help="subscription name: lowercase letters, digits, '.', '-'")  # fmt: skip
@friendly_errors
def concur_subscribe(connection: str, endpoint: str, subscription_id: str) -> None:
    """Create or update the webhook subscription for public.concur.expense.report."""
    settings, db = _context()
    client = _app_client(settings, db, connection)
    try:
        answer = client.subscriptions.put_webhook(subscription_id, endpoint)
    finally:
        client.close()
    click.echo(answer.get("message") if isinstance(answer, dict) else f"saved {subscription_id}")


@concur_group.command("subscriptions")
@click.option("--connection", help="use this connection's data centre (default: CONCUR_AUTH_URL)")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def concur_subscriptions(connection: str | None, as_json: bool) -> None:
    """List the application's ESS subscriptions."""
    settings, db = _context()
    client = _app_client(settings, db, connection)
    try:
        subs = client.subscriptions.list()
    finally:
        client.close()
    if as_json:
        _echo_json(subs)
        return
    if not subs:
        click.echo("no subscriptions")
    for sub in subs:
        endpoint = (sub.get("webHookConfig") or {}).get("endpoint")
        companies = len(sub.get("companyIds") or [])
        click.echo(
            f"{sub.get('id')}  {sub.get('topic')}  -> {endpoint}  ({companies} company(ies))"
        )


# --------------------------------------------------------------------------- mappings


@click.group("mappings")
def mappings_group() -> None:
    """The connection's mapping-rules document (vendors:, payables:, expenses:)."""


@mappings_group.command("import")
@click.argument("connection")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@friendly_errors
def mappings_import(connection: str, file: Path) -> None:
    """Validate FILE (YAML or JSON) against the live Zoho organization and store it."""
    from connector import connections, rules
    from connector.zoho.catalog import ZohoCatalog
    from mappings.rules import register_flow_sections

    register_flow_sections()
    settings, db, connection_id = common.for_connection(connection)
    document = rules.parse_text(file.read_text(encoding="utf-8"))
    client = connections.zoho_client(db, settings, connection_id)
    try:
        stored = rules.import_rules(db, connection_id, document, ZohoCatalog(client))
    finally:
        client.close()
    names = ", ".join(sorted(stored.source)) or "no sections"
    click.echo(f"connection {connection_id}: rules version {stored.version} stored ({names})")


@mappings_group.command("export")
@click.argument("connection")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def mappings_export(connection: str, as_json: bool) -> None:
    """Print the connection's rules as imported (YAML, or JSON with --json)."""
    from connector import rules

    _, db, connection_id = common.for_connection(connection)
    doc = rules.load(db, connection_id)
    if doc is None:
        click.echo(f"connection {connection_id} has no rules yet", err=True)
        sys.exit(1)
    click.echo(rules.export_text(doc, as_json=as_json), nl=False)


def register(main: click.Group) -> None:
    for command in (
        connections_group,
        connect_group,
        ping_command,
        webhooks_group,
        concur_group,
        mappings_group,
    ):
        main.add_command(command)
