"""The flows: each one's intake, steps, polling back-stop and backfill source (issue #16).

Layers point one way: ``webhooks``, ``cli`` -> ``tasks`` -> ``flows`` -> ``mappings`` ->
``connector``. A flow module imports ``mappings`` (documents in, payloads out) and the core
(``connector``: ledger, clients, pipeline engine); the core never imports a flow. The engine
reaches the flows through ``FLOWS`` below, which the task layer, the CLI and the receivers pass
down: the whole list is here, in one place, and nothing registers itself by being imported.

Adding a flow: write ``flows/<name>.py`` with a handler (``connector.steps.FlowHandler``), its
webhook hooks and its polling pass, end it with ``DEFINITION = Flow(...)`` and add that line to
``FLOWS``; docs/architecture.md walks one record through the files.
"""

from __future__ import annotations

from connector.registry import Flow, IntakeHook, Registry
from connector.steps import FlowHandler, PostResult, StepContext
from flows import expenses, payables, selftest, vendors

FLOWS = Registry(
    [
        Flow(selftest.handler),
        payables.DEFINITION,
        expenses.DEFINITION,
        vendors.DEFINITION,
    ]
)

__all__ = ["FLOWS", "Flow", "FlowHandler", "IntakeHook", "PostResult", "Registry", "StepContext"]
