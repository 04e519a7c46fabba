"""Which remit-to address (Concur ``AddressCode``) a payment request names for its vendor.

One Concur vendor (``VendorCode``) can have several remit-to addresses, each its own record with
its own ``AddressCode``. A payment request whose ``VendorRemitToIdentifier`` names only the code
then matches several vendors, and Concur refuses it ("more than one vendor matches", Invoice v3
reference page). So the address is settled before the POST, in this order:

1. the rules: ``payables.remit_to: {VENDORCODE: ADDRESSCODE}`` (the operator's explicit choice);
2. the address code of the vendor link (the address the vendors flow linked the contact to);
3. the vendor's only address, when Concur has exactly one for the code.

When none of these settles it, the record waits (ledger ``waiting``, code ``remit_to``) naming
the vendor code and the candidate address codes, instead of failing at Concur: one line in the
rules file fixes it, and a replay posts it. The map step and the backfill dry run both call
:func:`resolve`, so a dry run reports the same wait the real run would hit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.errors import ParkError

__all__ = [
    "WAIT_CODE",
    "RemitTo",
    "RemitToUnresolved",
    "chosen_address",
    "resolve",
]

#: The ledger's ``last_error_code`` of a record that waits for a remit-to choice.
WAIT_CODE = "remit_to"

#: ``search(vendor_code)`` -> Concur vendor records (Vendor v3.1 search items) for that code.
VendorSearch = Callable[[str], Iterable[Mapping[str, Any]]]


class RemitToUnresolved(ParkError):
    """Raised when a vendor has several remit-to addresses and neither the rules nor the link
    picks one; ``candidates`` lists the address codes."""

    def __init__(self, vendor_code: str, candidates: list[str], who: str) -> None:
        listed = ", ".join(candidates)
        super().__init__(
            f"Concur vendor {vendor_code} (for {who}) has {len(candidates)} remit-to addresses "
            f"({listed}) and none is chosen: add `payables.remit_to: {{{vendor_code}: "
            f"<one of {listed}>}}` to the rules file, or link the contact to one address; "
            "Concur refuses a payment request whose vendor matches several addresses",
            dependency=WAIT_CODE,
            key=vendor_code,
        )
        self.vendor_code = vendor_code
        self.candidates = candidates


@dataclass(frozen=True)
class RemitTo:
    """The settled address; ``vendor`` is the Concur record when a lookup already read it."""

    address_code: str
    source: str  # rule | link | only
    vendor: Mapping[str, Any] | None = None


def chosen_address(rules: Mapping[str, str], vendor_code: str, link_address: str) -> RemitTo | None:
    """The address the rules or the link choose, without asking Concur; ``None`` if neither.

    Rule keys are compared upper-cased (``parse_payables_rules`` stores them so), as Concur
    matches vendor codes without regard to case.
    """
    ruled = (rules.get(vendor_code.strip().upper()) or "").strip()
    if ruled:
        return RemitTo(ruled, "rule")
    linked = (link_address or "").strip()
    if linked:
        return RemitTo(linked, "link")
    return None


def resolve(
    rules: Mapping[str, str],
    vendor_code: str,
    link_address: str,
    search: VendorSearch,
    *,
    who: str,
    contact_id: str,
) -> RemitTo:
    """Settle the remit-to address: rule, then link, then the vendor's only address.

    ``search`` is called only when the rules and the link leave it open. Raises
    :class:`RemitToUnresolved` (the record waits) for several addresses, and a ``vendor``
    ``ParkError`` when Concur has no vendor with that code at all (keyed by ``contact_id``,
    like every wait for a vendor). ``who`` names the Zoho party in messages.
    """
    chosen = chosen_address(rules, vendor_code, link_address)
    if chosen is not None:
        return chosen
    code = vendor_code.strip().upper()
    records = [v for v in search(vendor_code) if str(v.get("VendorCode", "")).upper() == code]
    addresses = {str(v.get("AddressCode") or "").strip(): v for v in records}
    addresses.pop("", None)
    if not addresses:
        raise ParkError(
            f"{who} is linked to Concur vendor {vendor_code}, which is not in Concur",
            dependency="vendor",
            key=contact_id,
        )
    if len(addresses) > 1:
        raise RemitToUnresolved(vendor_code, sorted(addresses, key=str.upper), who)
    [(only, record)] = addresses.items()
    return RemitTo(only, "only", record)
