"""The per-connection rules file: one document, sections registered by the flows.

A connection has one mapping-rules document with a top-level section per flow (``vendors:``,
``payables:``, ``expenses:``). Each section is a marshmallow schema in a registry; a flow adds or
replaces its section with :func:`register_section` (``mappings/rules.py`` plugs the flows' own
schemas in), naming which values refer to Zoho objects.

Import validates the whole document and reports every problem at once: schema errors of every
section, unknown sections, and every Zoho account, reporting tag or tag option that does not
resolve (by id, code or exact name) against the live organization (``connector.zoho.catalog``).
The stored document keeps both what the operator wrote (``source``, what ``export`` prints) and
the same document with Zoho references replaced by ids (``resolved``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy import select

from connector.db import Database, utcnow
from connector.errors import ConnectorError, ValidationFailed
from connector.models import MappingRules


class Catalog(Protocol):
    """Resolves Zoho references; ``connector.zoho.catalog.ZohoCatalog`` is the live one."""

    def account(self, ref: str) -> dict[str, Any] | None: ...

    def tag(self, ref: str) -> dict[str, Any] | None: ...

    def tag_option(self, tag_id: str, ref: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Section:
    """One registered section: its schema and where it names Zoho objects.

    Paths are dotted keys inside the section; ``*`` stands for every value of a mapping and
    ``@`` for every key of it (``expense_types.@``: the keys are accounts). ``tag_options``
    pairs an options path with the path of the tag the options belong to.
    """

    name: str
    schema: type[Schema]
    accounts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    tag_options: tuple[tuple[str, str], ...] = ()


_SECTIONS: dict[str, Section] = {}


def register_section(
    name: str,
    schema: type[Schema],
    *,
    accounts: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    tag_options: tuple[tuple[str, str], ...] = (),
) -> None:
    """Add or replace the schema of one top-level section."""
    _SECTIONS[name] = Section(name, schema, accounts, tags, tag_options)


def sections() -> dict[str, Section]:
    return dict(_SECTIONS)


# --------------------------------------------------------------------------- built-in sections


class VendorsSectionSchema(Schema):
    """``vendors:``: which side is the master and how Concur codes are made."""

    class Meta:
        unknown = RAISE

    master = fields.String(load_default="zoho", validate=validate.OneOf(("zoho", "concur")))
    code_from = fields.String(
        load_default="contact_number",
        validate=validate.OneOf(("contact_number", "contact_id", "contact_name")),
    )
    address_code = fields.String(load_default="MAIN", validate=validate.Length(min=1, max=64))
    directions = fields.List(
        fields.String(validate=validate.OneOf(("zoho_to_concur", "concur_to_zoho"))),
        load_default=lambda: ["zoho_to_concur", "concur_to_zoho"],
    )


class PayablesSectionSchema(Schema):
    """``payables:``: which Zoho documents become Concur payment requests, and how."""

    class Meta:
        unknown = RAISE

    include = fields.List(
        fields.String(validate=validate.OneOf(("bills", "invoices"))),
        load_default=lambda: ["bills"],
    )
    owner = fields.Dict(keys=fields.String(), values=fields.String())
    country_code = fields.String(
        allow_none=True, load_default=None, validate=validate.Regexp(r"^[A-Z]{2}$")
    )
    #: Zoho account (id, code or name) -> Concur expense type code.
    expense_types = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    default_expense_type = fields.String(allow_none=True, load_default=None)


class CostCentreSchema(Schema):
    class Meta:
        unknown = RAISE

    field = fields.String(required=True, validate=validate.Length(min=1))
    tag = fields.String(required=True, validate=validate.Length(min=1))
    options = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class ExpensesSectionSchema(Schema):
    """``expenses:``: which Zoho accounts and cost centres a Concur report's lines land on."""

    class Meta:
        unknown = RAISE

    accounts = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    default_account = fields.String(allow_none=True, load_default=None)
    credit_accounts = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    cost_centre = fields.Nested(CostCentreSchema, allow_none=True, load_default=None)
    journal_date = fields.String(
        load_default="approval",
        validate=validate.OneOf(("approval", "submit", "processing_payment", "paid")),
    )
    status = fields.String(
        load_default="published", validate=validate.OneOf(("published", "draft"))
    )


register_section("vendors", VendorsSectionSchema)
register_section("payables", PayablesSectionSchema, accounts=("expense_types.@",))
register_section(
    "expenses",
    ExpensesSectionSchema,
    accounts=("accounts.*", "default_account", "credit_accounts.*"),
    tags=("cost_centre.tag",),
    tag_options=(("cost_centre.options.*", "cost_centre.tag"),),
)


# --------------------------------------------------------------------------- parsing


def parse_text(text: str) -> dict[str, Any]:
    """Read a rules file (YAML or JSON; JSON is YAML too)."""
    try:
        document = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = f"the rules file is not valid YAML or JSON{where}: {getattr(exc, 'problem', exc)}"
        raise ValidationFailed(problem, [problem]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        problem = "the rules file must be a mapping of sections (vendors:, payables:, expenses:)"
        raise ValidationFailed(problem, [problem])
    return document


def flatten(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error dict as ``path: message`` lines."""
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, value in messages.items():
            path = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            out.extend(flatten(value, path))
        return out
    if isinstance(messages, list | tuple):
        return [line for m in messages for line in flatten(m, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]


# --------------------------------------------------------------------------- references


def _walk(
    data: Any, parts: list[str], path: str
) -> Iterator[tuple[str, Any, Callable[[Any], None]]]:
    """Yield (path, value, setter) for every value ``parts`` addresses in ``data``."""
    if not parts or not isinstance(data, dict):
        return
    head, rest = parts[0], parts[1:]
    if head in ("*", "@"):
        for key in list(data):
            here = f"{path}.{key}"
            if rest:
                yield from _walk(data[key], rest, here)
            elif head == "*":
                yield here, data[key], lambda v, k=key: data.__setitem__(k, v)
            else:
                yield here, key, lambda v, k=key: data.__setitem__(v, data.pop(k))
        return
    if head not in data or data[head] is None:
        return
    here = f"{path}.{head}"
    if rest:
        yield from _walk(data[head], rest, here)
    else:
        yield here, data[head], lambda v: data.__setitem__(head, v)


def _resolve(section: Section, data: dict[str, Any], catalog: Catalog, problems: list[str]) -> None:
    """Replace Zoho references in ``data`` (in place) by ids; collect what does not resolve."""

    def lookup(kind: str, path: str, ref: Any, find: Callable[[str], dict[str, Any] | None]) -> Any:
        if not isinstance(ref, str | int) or isinstance(ref, bool):
            return None  # a wrong type is the schema's complaint, already reported
        try:
            found = find(str(ref))
        except ValidationFailed as exc:
            problems.append(f"{path}: {exc}")
            return None
        except ConnectorError as exc:
            problems.append(f"{path}: could not look up Zoho {kind}s ({exc})")
            return None
        if found is None:
            problems.append(f"{path}: no Zoho {kind} with id, code or name {ref!r}")
        return found

    for spec in section.accounts:
        for path, ref, put in list(_walk(data, spec.split("."), section.name)):
            account = lookup("account", path, ref, catalog.account)
            if account is not None:
                put(str(account["account_id"]))
    tag_ids: dict[str, str] = {}
    for spec in section.tags:
        for path, ref, put in list(_walk(data, spec.split("."), section.name)):
            tag = lookup("reporting tag", path, ref, catalog.tag)
            if tag is not None:
                tag_ids[spec] = str(tag["tag_id"])
                put(tag_ids[spec])
    for options_spec, tag_spec in section.tag_options:
        tag_id = tag_ids.get(tag_spec)
        if tag_id is None:
            continue  # the tag itself did not resolve; already reported
        for path, ref, put in list(_walk(data, options_spec.split("."), section.name)):
            option = lookup(
                "reporting tag option", path, ref, lambda r, t=tag_id: catalog.tag_option(t, r)
            )
            if option is not None:
                put(str(option["option_id"]))


def validate_document(document: Mapping[str, Any], catalog: Catalog | None) -> dict[str, Any]:
    """Check every section and every Zoho reference; return the resolved document.

    ``catalog=None`` checks the schemas only (no Zoho connection yet).

    Raises:
        ValidationFailed: ``errors`` lists every problem, one readable line each.
    """
    problems: list[str] = []
    registry = sections()
    resolved: dict[str, Any] = {}
    for name in document:
        if name not in registry:
            problems.append(f"{name}: unknown section (known: {', '.join(sorted(registry))})")
    for name, section in registry.items():
        raw = document.get(name)
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            problems.append(f"{name}: must be a mapping of keys")
            continue
        try:
            loaded = section.schema().load(dict(raw))
        except ValidationError as exc:
            problems.extend(flatten(exc.messages, name))
            if catalog is not None:
                # Still check the Zoho names, so one import reports every problem.
                _resolve(section, json.loads(json.dumps(dict(raw), default=str)), catalog, problems)
            continue
        data = json.loads(json.dumps(loaded, default=str))
        if catalog is not None:
            _resolve(section, data, catalog, problems)
        resolved[name] = data
    if problems:
        raise ValidationFailed(
            f"the rules document has {len(problems)} problem(s):\n"
            + "\n".join(f"  - {p}" for p in problems),
            problems,
        )
    return resolved


# --------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class RulesDocument:
    """A connection's stored rules: as written, as resolved, and the version number."""

    source: dict[str, Any]
    resolved: dict[str, Any]
    version: int
    updated_at: str | None = None


def import_rules(
    db: Database, connection_id: int, document: Mapping[str, Any], catalog: Catalog | None
) -> RulesDocument:
    """Validate the whole document and store it as the connection's rules (version + 1)."""
    resolved = validate_document(document, catalog)
    source = json.loads(json.dumps(dict(document), default=str))
    now = utcnow()
    with db.session() as session:
        row = session.execute(
            select(MappingRules).where(MappingRules.connection_id == connection_id)
        ).scalar_one_or_none()
        payload = {"source": source, "resolved": resolved}
        if row is None:
            row = MappingRules(connection_id=connection_id, document=payload, version=1)
            session.add(row)
        else:
            row.document = payload
            row.version = (row.version or 0) + 1
        row.updated_at = now
        session.flush()
        return RulesDocument(source, resolved, row.version, now.isoformat(timespec="seconds"))


def load(db: Database, connection_id: int) -> RulesDocument | None:
    """The connection's rules, or ``None`` when none were imported."""
    with db.session() as session:
        row = session.execute(
            select(MappingRules).where(MappingRules.connection_id == connection_id)
        ).scalar_one_or_none()
        if row is None:
            return None
        doc = dict(row.document or {})
        return RulesDocument(
            dict(doc.get("source") or {}),
            dict(doc.get("resolved") or {}),
            row.version,
            row.updated_at.isoformat(timespec="seconds") if row.updated_at else None,
        )


def section(
    db: Database, connection_id: int, name: str, *, resolved: bool = False
) -> dict[str, Any]:
    """One section of the connection's rules (``{}`` when absent): as written, or with ids."""
    doc = load(db, connection_id)
    if doc is None:
        return {}
    return dict((doc.resolved if resolved else doc.source).get(name) or {})


def export_text(doc: RulesDocument, *, as_json: bool = False) -> str:
    """The rules as the operator wrote them, as YAML (default) or JSON."""
    if as_json:
        return json.dumps(doc.source, indent=2, sort_keys=False)
    return yaml.safe_dump(doc.source, sort_keys=False, allow_unicode=True)
