"""The vendors backfill source: Zoho vendor contacts become ``contact`` sync requests; a dry
run reports the reconciliation's decision for each contact."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector import ledger
from connector.models import VendorLink
from flows.backfill_source import Page, Source, existing_record, midnight, problem_result


class VendorsSource(Source):
    """Zoho vendor contacts modified since the date, oldest created first; each becomes a
    ``contact`` sync request (the record a contact webhook makes), posted by ``sync_one``."""

    flow = "vendors"
    parts = ("contact",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plan: dict[str, Any] | None = None

    def page(self, part: int, position: int) -> Page:
        return self._zoho_page(
            "/contacts", "contacts", position,
            contact_type="vendor", sort_column="created_time", sort_order="A",
            last_modified_time=_zoho_time(midnight(self.since)),
        )  # fmt: skip

    def _version(self, item: Mapping[str, Any]) -> str:
        raw = str(item.get("last_modified_time") or "")
        return (
            raw[:64]
            or "sha256:"
            + hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()[
                :40
            ]
        )

    def ensure(self, session: Session, part: int, item: Mapping[str, Any]) -> Any:
        from flows import vendor_sync as engine

        contact_id = str(item.get("contact_id") or "")
        if not contact_id:
            return None
        version = self._version(item)
        link = session.execute(
            select(VendorLink).where(
                VendorLink.connection_id == self.connection_id,
                VendorLink.zoho_contact_id == contact_id,
            )
        ).scalar_one_or_none()
        if link is not None and (link.zoho_snapshot or {}).get("last_modified_time") == version:
            return None  # already synced at this version (as the contact webhook intake says)
        return ledger.get_or_create(
            session,
            connection_id=self.connection_id,
            flow=self.flow,
            source_system="zoho",
            source_type=engine.SYNC_REQUEST,
            source_id=contact_id,
            source_version=version,
            target_system="concur",
            source_ref=str(item.get("contact_name") or "")[:255] or None,
            trigger="backfill",
        )

    def dry_run(self, part: int, item: Mapping[str, Any]) -> dict[str, Any]:
        contact_id = str(item.get("contact_id") or "")
        version = self._version(item)
        out: dict[str, Any] = {
            "flow": self.flow,
            "source_id": contact_id,
            "source_ref": item.get("contact_name"),
            "source_version": version,
            "ledger": existing_record(self.db, self.connection_id, self.flow, contact_id, version),
        }
        try:
            plan = self.plan()
        except Exception as exc:
            out["result"], out["problems"] = problem_result(exc)
            return out
        out.update(_vendor_decision(plan, contact_id))
        return out

    def plan(self) -> dict[str, Any]:
        """The reconciliation's decisions (``vendors diff --full``), computed once."""
        if self._plan is None:
            from flows import vendor_sync as engine

            report = engine.reconcile(
                self.db, self.settings, self.connection_id, dry_run=True, full=True
            )
            assert report.plan is not None
            self._plan = report.plan.as_dict()
        return self._plan


def _zoho_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _vendor_decision(plan: Mapping[str, Any], contact_id: str) -> dict[str, Any]:
    for x in plan.get("would_create_in_concur") or []:
        if x.get("zoho_contact_id") == contact_id:
            if x.get("problem"):
                return {"result": "invalid", "problems": [x["problem"]], "target": x.get("vendor")}
            return {"result": "would_post", "problems": [], "action": "create in Concur",
                    "target": x.get("vendor")}  # fmt: skip
    for x in plan.get("would_update") or []:
        if x.get("zoho_contact_id") == contact_id:
            return {"result": "would_post", "problems": [], "action": "update",
                    "target": x.get("concur_vendor"), "changes": x.get("changes")}  # fmt: skip
    for x in plan.get("linked") or []:
        if x.get("zoho_contact_id") == contact_id:
            action = f"link (matched by {x.get('matched_by')})" if x.get("new") else "linked"
            return {"result": "would_post" if x.get("new") else "unchanged", "problems": [],
                    "action": action, "target": x.get("concur_vendor")}  # fmt: skip
    for x in plan.get("ambiguous") or []:
        if contact_id in (x.get("zoho_contact_ids") or []):
            return {"result": "would_wait", "problems": [f"{x.get('reason')}: {x.get('detail')}"]}
    return {"result": "skip", "problems": ["not part of the reconciliation (rules or directions)"]}
