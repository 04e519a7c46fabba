"""Concur Vendor v3.1 writes: batch create (``POST``) and update (``PUT``) with per-record status.

The body is ``{"Vendor": [...]}`` (the reference page's batch shape) and each returned vendor
carries a ``StatusList`` whose ``RecordNumber`` (1-based) points back at the input record, so a
batch can partly succeed: :func:`write_batch` returns one :class:`VendorStatus` per input record,
in input order. Searches live on ``client.vendors`` (``connector/concur/resources.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.concur.resources import VENDORS_PATH

if TYPE_CHECKING:
    from connector.concur.client import ConcurClient

#: Vendors per POST/PUT. The documentation gives no maximum (UNCONFIRMED); 1000 is what the
#: other v3 batch APIs and the sandbox allow.
BATCH_MAX = 1000


@dataclass(frozen=True)
class VendorStatus:
    """The outcome of one input record of a batch."""

    index: int  # 0-based position in the input
    ok: bool
    code: int | None
    message: str
    vendor: dict[str, Any]  # the vendor as Concur echoed it (may be partial on errors)


def batches(items: Sequence[Any], size: int = BATCH_MAX) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def write_batch(
    client: ConcurClient, method: str, records: Sequence[dict[str, Any]]
) -> list[VendorStatus]:
    """``POST`` (create) or ``PUT`` (update) up to ``BATCH_MAX`` vendors in one call.

    Raises whatever the client raises for the call as a whole (transport errors, 5xx: the batch
    may or may not have landed; the caller searches before writing again).
    """
    if method not in ("POST", "PUT"):
        raise ValueError(method)
    if not records:
        return []
    if len(records) > BATCH_MAX:
        raise ValueError(f"at most {BATCH_MAX} vendors per call")
    body = client.request(method, VENDORS_PATH, json={"Vendor": list(records)}) or {}
    returned = body.get("Vendor") or body.get("Items") or []
    if isinstance(returned, dict):
        returned = [returned]
    out: list[VendorStatus | None] = [None] * len(records)
    for position, item in enumerate(returned):
        statuses = item.get("StatusList") or []
        if isinstance(statuses, dict):
            statuses = [statuses]
        status = statuses[0] if statuses else {}
        number = status.get("RecordNumber")
        index = (
            int(number) - 1 if isinstance(number, int | str) and str(number).isdigit() else position
        )
        if not 0 <= index < len(records) or out[index] is not None:
            index = position
        if not 0 <= index < len(records):
            continue
        kind = str(status.get("Type") or "").upper()
        code = status.get("Code")
        out[index] = VendorStatus(
            index,
            kind == "SUCCESS",
            int(code) if str(code or "").isdigit() else None,
            str(status.get("Message") or ""),
            {k: v for k, v in item.items() if k != "StatusList"},
        )
    return [
        s
        if s is not None
        else VendorStatus(i, False, None, "no status returned for this record", {})
        for i, s in enumerate(out)
    ]


def find(
    client: ConcurClient, vendor_code: str, address_code: str | None = None
) -> list[dict[str, Any]]:
    """Vendors with this exact code (and address code): the search-before-create lookup."""
    filters: dict[str, Any] = {"vendorCode": vendor_code, "searchType": "exact"}
    if address_code:
        filters["addressCode"] = address_code
    return client.vendors.find(limit=100, **filters)
