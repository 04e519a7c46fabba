"""The contract between the pipeline engine and a flow: what a step gets and what it returns.

The engine (``connector.pipeline``) drives any object that satisfies ``FlowHandler`` through the
ledger; the flows themselves live above the core, in the top-level ``flows`` package, and reach
the engine through an explicit ``connector.registry.Registry`` (issue #16: the core never imports
a flow, and nothing registers itself by being imported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from connector import audit
from connector.models import SyncRecord

if TYPE_CHECKING:
    from connector.concur.client import ConcurClient
    from connector.config import Settings
    from connector.db import Database
    from connector.zoho.client import ZohoBooksClient


@dataclass(frozen=True)
class StepContext:
    """What a step runs with: the database and settings of this process, and who runs it.

    Handlers get their vendor clients from it (``ctx.zoho(record, "fetch")``), already audited:
    every call the step makes is an ``audit_events`` row on the record, with its step and task,
    and no flow wires that observer by hand (issue #16).
    """

    db: Database
    settings: Settings
    owner: str
    task_id: str | None = None

    def zoho(self, record: SyncRecord, step: str) -> ZohoBooksClient:
        """The record's connection's Zoho client, its calls audited on ``record`` as ``step``."""
        return audit.audited_zoho(
            self.db,
            self.settings,
            record.connection_id,
            record_id=record.id,
            step=step,
            task_id=self.task_id,
        )

    def concur(self, record: SyncRecord, step: str) -> ConcurClient:
        """The record's connection's Concur client, its calls audited on ``record`` as ``step``."""
        return audit.audited_concur(
            self.db,
            self.settings,
            record.connection_id,
            record_id=record.id,
            step=step,
            task_id=self.task_id,
        )


@dataclass(frozen=True)
class PostResult:
    """What ``post`` may return instead of a bare target id, to say what it did.

    ``outcome`` names the audit row (``posted``, ``updated``, ``unchanged``, ``superseded``...)
    and ``message`` its text; the record is ``posted`` with ``target_id`` either way.
    """

    target_id: str
    outcome: str = "posted"
    message: str | None = None


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
