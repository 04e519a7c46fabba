"""The flow registry: which handler runs the steps of each flow.

A handler is a plain object with ``fetch``, ``map``, ``validate``, ``find_existing`` and
``post`` (see ``FlowHandler``); the generic pipeline in ``connector.pipeline`` drives it through
the ledger. Flows are looked up by name so that task messages carry only a record id.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from connector.models import SyncRecord

if TYPE_CHECKING:
    from connector.config import Settings
    from connector.db import Database


@dataclass(frozen=True)
class StepContext:
    """What a step runs with: the database and settings of this process, and who runs it.

    Handlers build their vendor clients from it (``connections.zoho_client(ctx.db, ctx.settings,
    record.connection_id, on_response=audit.recorder(ctx.db, record_id=record.id, ...))``).
    """

    db: Database
    settings: Settings
    owner: str
    task_id: str | None = None


#: Built-in flows, imported on first use so a worker only loads what it runs.
BUILTIN: dict[str, str] = {
    "selftest": "connector.flows.selftest:handler",
    "expenses": "connector.flows.expenses:handler",
    "payables": "connector.flows.payables:handler",
    "vendors": "connector.flows.vendors:handler",
}


@dataclass(frozen=True)
class PostResult:
    """What ``post`` may return instead of a bare target id, to say what it did.

    ``outcome`` names the audit row (``posted``, ``updated``, ``unchanged``, ``superseded``...)
    and ``message`` its text; the record is ``posted`` with ``target_id`` either way.
    """

    target_id: str
    outcome: str = "posted"
    message: str | None = None


_registry: dict[str, FlowHandler] = {}


class FlowHandler(Protocol):
    """What a flow provides. Every method runs outside any database transaction and may call
    Zoho or Concur; ``record`` is a detached snapshot of the ledger row.
    """

    name: str

    def queue_for(self, step: str) -> str:
        """Which Celery queue runs ``step`` (the one whose vendor the step calls)."""
        ...

    def fetch(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        """Re-read the source record (a webhook is only a hint) and return its payload."""
        ...

    def map(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        """Turn ``record.source_payload`` into the target payload."""
        ...

    def validate(self, ctx: StepContext, record: SyncRecord) -> None:
        """Raise ``ParkError`` for a missing dependency, ``ValidationFailed`` for bad data."""
        ...

    def find_existing(self, ctx: StepContext, record: SyncRecord) -> str | None:
        """Search the target by the record's stable reference; the target id if it is there."""
        ...

    def post(self, ctx: StepContext, record: SyncRecord) -> str | PostResult:
        """Create the target object and return its id (or a ``PostResult`` saying more)."""
        ...


def register(handler: FlowHandler) -> None:
    _registry[handler.name] = handler


def get(name: str) -> FlowHandler:
    handler = _registry.get(name)
    if handler is None:
        target = BUILTIN.get(name)
        if target is None:
            raise KeyError(f"no flow named {name!r}")
        module_name, attr = target.split(":")
        handler = getattr(importlib.import_module(module_name), attr)
        _registry[name] = handler
    return handler
