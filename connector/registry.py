"""The flows a process runs, handed to the core by the layer above it (issue #16).

A ``Flow`` names everything one flow plugs into the engine: its step handler, the webhook events
it takes in, and its polling back-stop. A ``Registry`` is a plain list of them, built once in
``flows/__init__.py`` (``FLOWS``) where a reader sees every flow the product has; the task layer,
the CLI and the receivers pass it down. Nothing registers itself by being imported and no flow is
looked up by a module path in a string, so a reader (and a type checker) can follow a record from
its task to its flow's code.

The core functions that need a flow (``pipeline.run_step``, ``intake.process``, ``sync.run``,
``operations.verify``) take the registry as an argument; the methods here are the short way to
call them with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector import intake, pipeline, sync
from connector.models import Step

if TYPE_CHECKING:
    from connector.config import Settings
    from connector.db import Database
    from connector.steps import FlowHandler


@dataclass(frozen=True)
class IntakeHook:
    """What runs for one kind of webhook event: ``handler(session, event, payload[, prepared])``.

    ``prepare(db, settings, event, payload)`` runs first, outside any transaction (it may call a
    vendor); its result is the handler's fourth argument.
    """

    handler: intake.Handler
    prepare: intake.Prepare | None = None


@dataclass(frozen=True)
class Flow:
    """One flow as the engine sees it."""

    handler: FlowHandler
    #: ``(source, event kind)`` -> hook, e.g. ``("zoho", "bill")``, ``("concur", "statusChanged")``.
    intake: Mapping[tuple[str, str], IntakeHook] = field(default_factory=dict)
    #: The polling back-stop (``sync.SyncPass``), or ``None`` for a flow nothing polls.
    poll: sync.SyncPass | None = None

    @property
    def name(self) -> str:
        return self.handler.name


class Registry:
    """The flows of this process, by name, and their webhook hooks by ``(source, kind)``."""

    def __init__(self, flows: Iterable[Flow] = ()) -> None:
        self._flows: dict[str, Flow] = {}
        self._intake: dict[tuple[str, str], IntakeHook] = {}
        for flow in flows:
            self.add(flow)

    # ------------------------------------------------------------------ building

    def add(self, flow: Flow) -> Flow:
        """Add (or replace) a flow; tests use it for flows of their own."""
        self._flows[flow.name] = flow
        for key, hook in flow.intake.items():
            self._intake[key] = hook
        return flow

    def add_intake(self, source: str, kind: str, hook: IntakeHook) -> None:
        self._intake[(source, kind)] = hook

    def remove_intake(self, source: str, kind: str) -> None:
        self._intake.pop((source, kind), None)

    # ------------------------------------------------------------------ lookups

    def names(self) -> list[str]:
        return sorted(self._flows)

    def handler(self, name: str) -> FlowHandler:
        flow = self._flows.get(name)
        if flow is None:
            raise KeyError(f"no flow named {name!r}")
        return flow.handler

    def intake_hook(self, source: str, kind: str) -> IntakeHook | None:
        return self._intake.get((source, kind))

    def polled(self) -> list[str]:
        """The flows that have a polling back-stop, in name order."""
        return sorted(name for name, flow in self._flows.items() if flow.poll is not None)

    def poll(self, name: str) -> sync.SyncPass:
        flow = self._flows.get(name)
        if flow is None or flow.poll is None:
            raise KeyError(f"no sync pass for flow {name!r}")
        return flow.poll

    # ------------------------------------------------------------------ the core, with us

    def run_step(self, db: Database, record_id: int, step: Step, **kw: Any) -> pipeline.StepResult:
        return pipeline.run_step(db, record_id, step, registry=self, **kw)

    def route(self, db: Database, record_id: int, step: Step) -> tuple[str, str]:
        return pipeline.route(db, record_id, step, registry=self)

    def process_event(
        self, db: Database, event_id: int, settings: Settings | None = None
    ) -> list[tuple[int, Step]]:
        return intake.process(db, event_id, settings, registry=self)

    def sync(
        self, db: Database, settings: Settings, connection_id: int, flow: str
    ) -> sync.PassResult:
        return sync.run(db, settings, connection_id, flow, registry=self)
