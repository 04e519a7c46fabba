"""A flow that touches no vendor: proves worker, broker, ledger and audit work end to end.

``connector selftest`` pushes one record through it on the real queues. Its source payload may
ask for trouble (``park_times``, ``transient_times``, ``fatal``, ``reauth``), which is how the
test-suite drives every branch of the generic pipeline through a real worker without touching
Zoho or Concur.
"""

from __future__ import annotations

from typing import Any

from connector.errors import (
    InvalidRequestError,
    ParkError,
    ReauthRequired,
    RetryableError,
    ValidationFailed,
)
from connector.models import SyncRecord
from connector.steps import StepContext


class SelfTestFlow:
    name = "selftest"

    def queue_for(self, step: str) -> str:
        return "default"

    def fetch(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        return dict(record.source_payload or {}, fetched=True)

    def map(self, ctx: StepContext, record: SyncRecord) -> dict[str, Any]:
        payload = record.source_payload or {}
        return {"reference": record.stable_ref or record.source_id, "echo": payload.get("echo")}

    def validate(self, ctx: StepContext, record: SyncRecord) -> None:
        payload = record.source_payload or {}
        if record.attempts <= int(payload.get("park_times", 0)):
            raise ParkError(
                f"selftest dependency {payload.get('needs', 'X')!r} is not there yet",
                dependency="selftest",
                key=str(payload.get("needs", "X")),
            )
        if payload.get("invalid"):
            raise ValidationFailed("selftest payload is invalid", {"echo": ["must be set"]})

    def find_existing(self, ctx: StepContext, record: SyncRecord) -> str | None:
        # The "target" is deterministic: a post that may have landed is found by its reference.
        return f"selftest-{record.id}" if (record.source_payload or {}).get("landed") else None

    def post(self, ctx: StepContext, record: SyncRecord) -> str:
        payload = record.source_payload or {}
        if record.attempts <= int(payload.get("transient_times", 0)):
            raise RetryableError(
                "selftest transient failure", system="selftest", status=503, ambiguous=True
            )
        if payload.get("fatal"):
            raise InvalidRequestError(
                "selftest target rejected the payload",
                system="selftest",
                status=400,
                code="SELFTEST",
            )
        if payload.get("reauth"):
            raise ReauthRequired("selftest credential revoked", system="selftest", status=401)
        return f"selftest-{record.id}"


handler = SelfTestFlow()
