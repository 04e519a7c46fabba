"""The payables backfill source: Zoho bills and invoices, through the payables flow's own
intake and map logic, so a backfilled document is recorded and dry-run as the poll would."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.errors import ConfigurationError, ParkError
from connector.models import VendorLink
from flows import payables_documents, payables_intake, payables_vendors
from flows.backfill_source import Page, Source, existing_record, midnight, problem_result


class PayablesSource(Source):
    """Zoho bills and invoices modified since the date, oldest created first (the payables
    poll's list, ``last_modified_time`` filter and ``ensure_record``)."""

    flow = "payables"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with self.db.session() as session:
            section = payables_documents.rules_section(session, self.connection_id)
        if not section:
            raise ConfigurationError(
                f"connection {self.connection_id} has no payables rules: import a rules file "
                "with a payables section first (`connector mappings import`)"
            )
        self.parts = payables_documents.included_kinds(section)
        self._rules: Any = None

    def page(self, part: int, position: int) -> Page:

        kind = self.parts[part]
        docs = self.zoho().documents(kind)
        return self._zoho_page(
            docs.path, docs.list_key, position,
            last_modified_time=payables_intake.zoho_time(midnight(self.since)),
            sort_column="created_time", sort_order="A",
        )  # fmt: skip

    def ensure(self, session: Session, part: int, item: Mapping[str, Any]) -> Any:
        return payables_intake.ensure_record(
            session, self.connection_id, self.parts[part], item, trigger="backfill"
        )

    def dry_run(self, part: int, item: Mapping[str, Any]) -> dict[str, Any]:
        from mappings.payables import is_void, map_document
        from mappings.payables_validation import validate_payment_request
        from mappings.zoho_documents import load_zoho_document

        p = payables_documents
        kind = self.parts[part]
        document_id = str(item.get(f"{kind}_id") or "")
        source_id = p.source_id_of(kind, document_id)
        version = p.hint_version(kind, item)
        out: dict[str, Any] = {
            "flow": self.flow,
            "source_id": source_id,
            "source_ref": p.label(kind, item.get(f"{kind}_number"), p.contact_name(kind, item)),
            "source_version": version,
            "ledger": existing_record(self.db, self.connection_id, self.flow, source_id, version),
        }
        try:
            obj = self.zoho().documents(kind).get(document_id)  # fetch
            doc = load_zoho_document({kind: obj}, kind)  # type: ignore[arg-type]
            if self._rules is None:
                self._rules = p.load_rules(self.db, self.connection_id)
            rules_ = self._rules
            if is_void(doc):
                out.update(result="void", problems=[f"{doc.label} is void: never posted"])
                return out
            vendor = self._vendor(doc, rules_)  # map
            body = map_document(doc, vendor, rules_)
            out["target_payload"] = body
            validate_payment_request(  # validate
                body,
                currency=doc.currency_code or "",
                allow_negative_lines=rules_.allows_negative_lines,
            )
        except Exception as exc:  # reported, never raised: a dry run lists every problem
            out["result"], out["problems"] = problem_result(exc)
            if isinstance(exc, ParkError) and exc.dependency == "vendor":
                out["problems"].append(
                    "the map step first asks the vendors flow to sync this contact (it links "
                    "or creates it as the vendors rules say): see `connector vendors diff`"
                )
            return out
        out.update(result="would_post", problems=[])
        return out

    def _vendor(self, doc: Any, rules_: Any) -> Any:
        """The Concur vendor the map step would use, read-only (never asks the vendors flow to
        create one; a missing link is reported as the wait it would cause)."""
        from flows import remit_to
        from mappings.payables import VendorRef

        with self.db.session() as session:
            link = session.execute(
                select(VendorLink).where(
                    VendorLink.connection_id == self.connection_id,
                    VendorLink.zoho_contact_id == str(doc.contact_id),
                )
            ).scalar_one_or_none()
            if link is not None:
                session.expunge(link)
        if link is None:
            return None  # map_document raises the vendor ParkError, with its reason
        code = link.concur_vendor_code
        remit = remit_to.resolve(  # the map step's own resolution, so the dry run waits alike
            rules_.remit_to,
            code,
            link.concur_address_code,
            lambda c: self.concur().vendors.iter_all(vendorCode=c),
            who=payables_vendors.party(doc),
            contact_id=str(doc.contact_id),
        )
        address = remit.address_code
        if remit.vendor is not None:
            return payables_vendors.vendor_from(code, address, remit.vendor, None)
        snap = link.concur_snapshot or {}
        name = payables_vendors.pick(snap, "VendorName", "Name", "name", "vendor_name")
        country = payables_vendors.pick(snap, "CountryCode", "country_code")
        currency = payables_vendors.pick(snap, "CurrencyCode", "currency_code")
        same_address = address.upper() == link.concur_address_code.strip().upper()
        if same_address and name and (country or rules_.country_code):
            return VendorRef(code, address, country, currency, name)
        for v in self.concur().vendors.find(vendorCode=code, addressCode=address, limit=10):
            if str(v.get("VendorCode", "")).upper() == code.upper() and (
                str(v.get("AddressCode", "")).upper() == address.upper()
            ):
                return payables_vendors.vendor_from(code, address, v, name)
        raise ParkError(
            f"Zoho contact {doc.contact_id} is linked to Concur vendor {code}/{address}, which "
            "is not in Concur",
            dependency="vendor",
            key=str(doc.contact_id),
        )
