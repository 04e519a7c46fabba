"""Invoice v3: Vendor v3.1 batch create/update/search/delete and Payment Requests v3.0.

Validation follows the v3.1 Vendor and v3 Payment Request reference pages. Where the docs leave
the JSON shape open the sandbox accepts every documented reading: ``LineItems`` as a plain array,
as ``{"LineItem": [...]}`` or ``{"LineItem": {...}}``, or as one line-item object (the Swagger's
literal shape); the same for ``Allocations``; and custom fields spelled ``Custom1`` or
``Custom01`` (``OrgUnit1`` or ``OrgUnit01``), unless the ``custom_field_spelling`` setting
narrows that to one spelling (then the other is refused with a 400). Stored records use the GET
spelling (``Custom1``).
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.concur import config
from sandbox.concur.errors import ConcurError
from sandbox.concur.store import Company, ConcurStore, random_v3_id, v3_date

VENDOR_FIELDS: tuple[str, ...] = (
    "AccountNumber",
    "Address1",
    "Address2",
    "Address3",
    "AddressCode",
    "AddressImportSyncID",
    "Approved",
    "City",
    "ContactEmail",
    "ContactFirstName",
    "ContactLastName",
    "ContactPhoneNumber",
    "Country",
    "CountryCode",
    "CurrencyCode",
    *(f"Custom{i}" for i in range(1, 21)),
    "DefaultEmployeeID",
    "DefaultExpenseTypeName",
    "DiscountPercentage",
    "DiscountTermsDays",
    "ID",
    "IsLineItemVatIncld",
    "IsVisibleForContentExtraction",
    "PaymentMethodType",
    "PaymentTerms",
    "PostalCode",
    "ProvincialTaxID",
    "PurchaseOrderContactEmail",
    "PurchaseOrderContactFirstName",
    "PurchaseOrderContactLastName",
    "PurchaseOrderContactPhoneNumber",
    "ShippingMethod",
    "ShippingTerms",
    "State",
    "TaxID",
    "TaxType",
    "URI",
    "VendorCode",
    "VendorFormName",
    "VendorName",
    "VoucherNotes",
)
_VENDOR_WRITABLE = frozenset(VENDOR_FIELDS) - {"ID", "URI"}
PAYMENT_METHODS = frozenset({"ACH", "CARD", "CHECK", "CLIENT", "PAYPVD", "VCHER", "WIRE"})

# Vendor search query parameter -> Vendor field.
VENDOR_SEARCH_PARAMS: dict[str, str] = {
    "vendorcode": "VendorCode",
    "vendorname": "VendorName",
    "taxid": "TaxID",
    "buyeraccountnumber": "AccountNumber",
    "paymentmethodtype": "PaymentMethodType",
    "addresscode": "AddressCode",
    "address1": "Address1",
    "address2": "Address2",
    "address3": "Address3",
    "city": "City",
    "state": "State",
    "postalcode": "PostalCode",
    "approved": "Approved",
    "country": "Country",
    **{f"custom{i}": f"Custom{i}" for i in range(1, 21)},
}

# Status codes inside StatusList (UNCONFIRMED: the docs give the shape, not the values).
STATUS_OK = (200, "SUCCESS")
STATUS_INVALID = (400, "ERROR")
STATUS_NOT_FOUND = (404, "ERROR")
STATUS_DUPLICATE = (409, "ERROR")

_CUSTOM_RE = re.compile(r"^(Custom|OrgUnit)0*([1-9][0-9]?)$")

PR_OWNER_FIELDS = (
    "LedgerCode",
    "EmployeeLoginId",
    "EmployeeId",
    "EmployeeEmailAddress",
    "PurchaseOrderNumber",
    "PurchaseOrderId",
    "ExternalPolicyId",
)
EDITABLE_APPROVAL_STATUSES = frozenset({"A_NOTF", "A_RESU"})
APPROVAL_NAMES = {
    "A_NOTF": "Not Submitted",
    "A_PEND": "Pending Approval",
    "A_RESU": "Sent Back",
    "A_APPR": "Approved",
    "A_EXTV": "Pending External Validation",
}
PAYMENT_NAMES = {"P_NOTP": "Not Paid", "P_PROC": "Processing Payment", "P_PAID": "Paid"}


def canonical_field(name: str) -> str:
    """``Custom01`` -> ``Custom1``, ``OrgUnit03`` -> ``OrgUnit3``; other names unchanged."""
    m = _CUSTOM_RE.match(name)
    if m:
        return f"{m.group(1)}{int(m.group(2))}"
    return name


def _check_spelling(name: str, spelling: str) -> None:
    """Refuse a custom/org-unit field name the ``custom_field_spelling`` setting rules out."""
    m = _CUSTOM_RE.match(name)
    if m is None or spelling == "both":
        return
    padded = f"{m.group(1)}{int(m.group(2)):02d}"
    plain = f"{m.group(1)}{int(m.group(2))}"
    wanted = plain if spelling == "plain" else padded
    if name != wanted:
        raise ConcurError(400, f"Invalid field name {name}; expected {wanted}.")


def _canonical_keys(obj: dict[str, Any], spelling: str = "both") -> dict[str, Any]:
    for key in obj:
        _check_spelling(key, spelling)
    return {canonical_field(k): v for k, v in obj.items()}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ------------------------------------------------------------------------------------------------
# Vendors
# ------------------------------------------------------------------------------------------------


def vendor_records_from_body(body: Any) -> list[Any]:
    """The batch body is ``{"Vendor": [...]}``; also take ``{"Vendor": {...}}`` and ``Items``."""
    if not isinstance(body, dict):
        raise ConcurError(400, "The request body must be a Vendors object.")
    records = body.get("Vendor")
    if records is None:
        records = body.get("Items")
    if records is None:
        raise ConcurError(400, "The request must contain at least one Vendor.")
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not records:
        raise ConcurError(400, "The request must contain at least one Vendor.")
    if len(records) > config.VENDOR_BATCH_MAX:
        raise ConcurError(
            400, f"The request exceeds the maximum of {config.VENDOR_BATCH_MAX} vendors."
        )
    return records


def _status(code: tuple[int, str], message: str, record_number: int) -> dict[str, Any]:
    return {"Code": code[0], "Message": message, "RecordNumber": record_number, "Type": code[1]}


def _validate_vendor(rec: dict[str, Any]) -> str | None:
    """First validation failure of one vendor record, or None."""
    missing = [
        f for f in ("VendorCode", "AddressCode", "CountryCode", "CurrencyCode") if not rec.get(f)
    ]
    if missing:
        return f"Required field(s) missing: {', '.join(missing)}"
    if len(rec["VendorCode"]) > 32:
        return "VendorCode exceeds 32 characters"
    if len(rec["AddressCode"]) > 32:
        return "AddressCode exceeds 32 characters"
    country = rec["CountryCode"]
    if len(country) != 2 or not country.isalpha() or country != country.upper():
        return "CountryCode must be an upper-case ISO 3166-1 alpha-2 code"
    currency = rec["CurrencyCode"]
    if len(currency) != 3 or not currency.isalpha():
        return "CurrencyCode must be a 3-letter ISO 4217 code"
    if country in config.STATE_REQUIRED_COUNTRIES and not rec.get("State"):
        return f"State is required for vendors in {country}"
    method = rec.get("PaymentMethodType")
    if method and method.upper() not in PAYMENT_METHODS:
        return f"Invalid PaymentMethodType {method}"
    terms = rec.get("PaymentTerms")
    if terms:
        try:
            days = int(terms)
        except ValueError:
            return "PaymentTerms must be an integer between 1 and 999"
        if not 1 <= days <= 999:
            return "PaymentTerms must be an integer between 1 and 999"
    if rec.get("VendorName") and len(rec["VendorName"]) > 255:
        return "VendorName exceeds 255 characters"
    return None


def _clean_vendor_input(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _VENDOR_WRITABLE and value is not None:
            out[key] = (
                str(_text(value)).strip() if isinstance(value, (str, int, float, bool)) else value
            )
    return out


def vendor_uri(base: str, vendor: dict[str, Any]) -> str:
    return f"{base}/api/v3.1/invoice/vendors?vendorCode={vendor['VendorCode']}&addressCode={vendor['AddressCode']}"


def render_vendor(vendor: dict[str, Any], base: str) -> dict[str, Any]:
    out: dict[str, Any] = {f: vendor.get(f) for f in VENDOR_FIELDS}
    out["URI"] = vendor_uri(base, vendor)
    out["VendorBankList"] = []
    out["VendorGroupList"] = list(vendor.get("VendorGroupList") or [])
    return out


def new_vendor(company: Company, fields: dict[str, Any], now: float, source: str) -> dict[str, Any]:
    vendor = dict(fields)
    vendor["ID"] = uuid.uuid4().hex.upper()
    vendor.setdefault("PaymentMethodType", "CLIENT")  # documented default
    vendor.setdefault("Approved", "Y")
    vendor["_created"] = now
    vendor["_modified"] = now
    vendor["_source"] = source
    company.put_vendor(vendor)
    return vendor


def vendors_batch(
    store: ConcurStore,
    company: Company,
    body: Any,
    *,
    create: bool,
    now: float,
    base: str,
    source: str = "api",
) -> dict[str, Any]:
    """POST (create) or PUT (update) a batch; each record gets its own ``StatusList``."""
    results: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for number, raw in enumerate(vendor_records_from_body(body), start=1):
        rec = _clean_vendor_input(raw)
        if rec is None:
            results.append({"StatusList": [_status(STATUS_INVALID, "Invalid vendor", number)]})
            continue
        problem = _validate_vendor(rec)
        if problem:
            echo = {f: rec.get(f) for f in ("VendorCode", "AddressCode", "VendorName")}
            results.append({**echo, "StatusList": [_status(STATUS_INVALID, problem, number)]})
            continue
        key = company.vendor_key(rec["VendorCode"], rec["AddressCode"])
        existing = company.vendors.get(key)
        if key in seen:
            results.append(
                {
                    "VendorCode": rec["VendorCode"],
                    "AddressCode": rec["AddressCode"],
                    "StatusList": [
                        _status(STATUS_DUPLICATE, "Duplicate vendor in the request", number)
                    ],
                }
            )
            continue
        seen.add(key)
        if create:
            if existing is not None:
                results.append(
                    {
                        "VendorCode": rec["VendorCode"],
                        "AddressCode": rec["AddressCode"],
                        "StatusList": [
                            _status(
                                STATUS_DUPLICATE,
                                "A vendor with this VendorCode and AddressCode already exists",
                                number,
                            )
                        ],
                    }
                )
                continue
            vendor = new_vendor(company, rec, now, source)
            store.record_created(
                "vendor",
                company.id,
                vendor["ID"],
                VendorCode=vendor["VendorCode"],
                AddressCode=vendor["AddressCode"],
                VendorName=vendor.get("VendorName"),
            )
            message = "Vendor created successfully"
        else:
            if existing is None:
                results.append(
                    {
                        "VendorCode": rec["VendorCode"],
                        "AddressCode": rec["AddressCode"],
                        "StatusList": [_status(STATUS_NOT_FOUND, "Vendor not found", number)],
                    }
                )
                continue
            vendor = {**existing, **rec, "_modified": now}
            company.put_vendor(vendor)
            message = "Vendor updated successfully"
        results.append(
            {**render_vendor(vendor, base), "StatusList": [_status(STATUS_OK, message, number)]}
        )
    return {"Vendor": results, "Items": results, "TotalCount": len(results)}


def _match(value: Any, wanted: str, search_type: str) -> bool:
    if value is None:
        return False
    v = str(value).lower()
    w = wanted.lower()
    if search_type == "begins":
        return v.startswith(w)
    if search_type == "contains":
        return w in v
    if search_type == "ends":
        return v.endswith(w)
    return v == w


def shape_vendor_search(page: list[dict[str, Any]], shape: str) -> dict[str, Any]:
    """Wrap a page of vendors in one of ``config.VENDOR_SEARCH_SHAPES``.

    The reference documents ``{"Items": [...]}``; which one the real server sends is
    UNCONFIRMED, so tests switch the sandbox between the three and the connector must read each.
    """
    if shape == "vendor":
        return {"Vendor": page}
    if shape == "items_vendor":
        return {"Items": {"Vendor": page}}
    return {"Items": page}


def search_vendors(
    company: Company,
    args: dict[str, str],
    base_url: str,
    path_url: str,
    *,
    shape: str = "items",
) -> dict[str, Any]:
    """GET /api/v3.1/invoice/vendors with the documented filters, sorting and paging."""
    lowered = {k.lower(): v for k, v in args.items()}
    try:
        limit = int(lowered.get("limit", 25))
        offset = int(lowered.get("offset", 0) or 0)
    except ValueError as exc:
        raise ConcurError(400, "limit and offset must be integers") from exc
    if limit < 1 or limit > config.VENDOR_LIMIT_MAX:
        raise ConcurError(400, f"limit must be between 1 and {config.VENDOR_LIMIT_MAX}")
    if offset < 0:
        raise ConcurError(400, "offset must not be negative")
    search_type = lowered.get("searchtype", "exact").lower()
    if search_type not in ("exact", "begins", "contains", "ends"):
        raise ConcurError(400, f"Invalid searchType {search_type}")
    filters = [
        (VENDOR_SEARCH_PARAMS[k], v) for k, v in lowered.items() if k in VENDOR_SEARCH_PARAMS and v
    ]

    # Narrow with an index when an exact code or name is given, then filter the rest.
    keys: list[tuple[str, str]] | None = None
    if search_type == "exact":
        for field_name, value in filters:
            if field_name == "VendorCode":
                keys = sorted(company.vendors_by_code.get(value.strip().upper(), ()))
                break
            if field_name == "VendorName":
                keys = sorted(company.vendors_by_name.get(value.strip().lower(), ()))
                break
    if keys is None:
        keys = company.vendor_order()
    matched = [
        company.vendors[k]
        for k in keys
        if k in company.vendors
        and all(_match(company.vendors[k].get(f), v, search_type) for f, v in filters)
    ]
    sort_by = lowered.get("sortby")
    descending = lowered.get("sortdirection", "ascending").lower().startswith("desc")
    if sort_by:
        field_name = VENDOR_SEARCH_PARAMS.get(sort_by.lower(), sort_by)
        matched.sort(key=lambda v: str(v.get(field_name) or "").lower(), reverse=descending)
    elif descending or keys is not company.vendor_order():
        matched.sort(key=lambda v: (v.get("VendorName") or "").lower(), reverse=descending)
    total = len(matched)
    page = [render_vendor(v, base_url) for v in matched[offset : offset + limit]]
    next_page = None
    if offset + limit < total:
        next_page = _with_params(path_url, args, offset=str(offset + limit), limit=str(limit))
    return {**shape_vendor_search(page, shape), "NextPage": next_page, "TotalCount": total}


def delete_vendor(company: Company, args: dict[str, str], base: str) -> dict[str, Any]:
    lowered = {k.lower(): v for k, v in args.items()}
    code = lowered.get("vendorcode")
    addr = lowered.get("addresscode")
    if not code or not addr:
        raise ConcurError(400, "vendorCode and addressCode are required")
    vendor = company.delete_vendor(company.vendor_key(code, addr))
    if vendor is None:
        raise ConcurError(404, "Vendor not found")
    out = {
        **render_vendor(vendor, base),
        "StatusList": [_status(STATUS_OK, "Vendor deleted successfully", 1)],
    }
    return {"Vendor": [out], "Items": [out], "TotalCount": 1}


def _with_params(url: str, args: dict[str, str], **override: str) -> str:
    from urllib.parse import urlencode

    merged = {k: v for k, v in args.items() if k.lower() not in {o.lower() for o in override}}
    merged.update(override)
    return f"{url}?{urlencode(merged)}"


# ------------------------------------------------------------------------------------------------
# Payment requests
# ------------------------------------------------------------------------------------------------


def _as_list(value: Any, inner: str) -> list[Any]:
    """Every documented shape of ``LineItems``/``Allocations`` -> a plain list of objects."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if inner in value:
            got = value[inner]
            if isinstance(got, dict):
                return [got]
            if isinstance(got, list):
                return got
            raise ConcurError(400, f"{inner} must be an object or an array")
        return [value]  # the Swagger's literal reading: one item object
    raise ConcurError(400, f"Invalid {inner}s value")


def _decimal(value: Any, name: str) -> Decimal:
    try:
        d = Decimal(str(value).strip().replace(",", ""))
    except (InvalidOperation, AttributeError) as exc:
        raise ConcurError(400, f"{name} is not a valid amount: {value!r}") from exc
    if not d.is_finite():
        raise ConcurError(400, f"{name} is not a valid amount: {value!r}")
    return d


def resolve_vendor(company: Company, ident: Any) -> dict[str, Any]:
    """``VendorRemitToIdentifier`` must identify exactly one vendor (documented)."""
    if not isinstance(ident, dict):
        raise ConcurError(400, "VendorRemitToIdentifier is required.")
    code = (ident.get("VendorCode") or "").strip()
    addr = (ident.get("AddressCode") or "").strip()
    name = (ident.get("Name") or ident.get("VendorName") or "").strip()
    address1 = (ident.get("Address1") or "").strip()
    postal = (ident.get("PostalCode") or "").strip()
    if code:
        keys = set(company.vendors_by_code.get(code.upper(), ()))
    elif name and address1 and postal:
        keys = set(company.vendors_by_name.get(name.lower(), ()))
    else:
        raise ConcurError(
            400,
            "VendorRemitToIdentifier must contain VendorCode or the combination of Name, "
            "Address1 and PostalCode.",
        )
    wanted = {
        "AddressCode": addr,
        "VendorName": name,
        "Address1": address1,
        "PostalCode": postal,
    }
    candidates = [
        company.vendors[k]
        for k in keys
        if all(
            not want or str(company.vendors[k].get(f) or "").strip().lower() == want.lower()
            for f, want in wanted.items()
        )
    ]
    if not candidates:
        raise ConcurError(400, "No vendor matches the VendorRemitToIdentifier provided.")
    if len(candidates) > 1:
        raise ConcurError(
            400,
            "More than one vendor matches the VendorRemitToIdentifier provided; "
            "add AddressCode or more address fields.",
        )
    return candidates[0]


def _resolve_owner(company: Company, body: dict[str, Any]) -> dict[str, Any]:
    """Owner/policy: one of the documented fields, employee ids by documented precedence."""
    if not any(body.get(f) for f in PR_OWNER_FIELDS):
        raise ConcurError(
            400,
            "One of LedgerCode, EmployeeLoginId, EmployeeId, EmployeeEmailAddress, "
            "PurchaseOrderNumber or ExternalPolicyId is required.",
        )
    emp = None
    if body.get("EmployeeLoginId"):
        emp = company.employees.get(str(body["EmployeeLoginId"]).lower())
    if emp is None and body.get("EmployeeId"):
        emp = company.employees_by_empid.get(str(body["EmployeeId"]).lower())
    if emp is None and body.get("EmployeeEmailAddress"):
        emp = company.employees_by_email.get(str(body["EmployeeEmailAddress"]).lower())
    ledger = body.get("LedgerCode")
    if ledger and str(ledger) not in company.ledgers:
        raise ConcurError(400, f"Invalid LedgerCode {ledger}.")
    employee_given = any(
        body.get(f) for f in ("EmployeeLoginId", "EmployeeId", "EmployeeEmailAddress")
    )
    if employee_given and emp is None and not ledger and not body.get("ExternalPolicyId"):
        raise ConcurError(400, "The employee provided could not be found.")
    po = body.get("PurchaseOrderNumber") or body.get("PurchaseOrderId")
    if po and not (emp or ledger or body.get("ExternalPolicyId")):
        raise ConcurError(400, f"Purchase order {po} was not found.")
    return {
        "employee": emp,
        "LedgerCode": ledger or "DEFAULT",
        "ExternalPolicyId": body.get("ExternalPolicyId"),
    }


def _line_items(raw: Any, currency: str, put: bool, spelling: str = "both") -> list[dict[str, Any]]:
    items = []
    for index, item in enumerate(_as_list(raw, "LineItem"), start=1):
        if not isinstance(item, dict):
            raise ConcurError(400, f"Line item {index} must be an object")
        line = _canonical_keys(item, spelling)
        allocations = []
        total_pct = Decimal(0)
        for alloc in _as_list(line.pop("Allocations", None), "Allocation"):
            if not isinstance(alloc, dict):
                raise ConcurError(400, f"Allocation on line {index} must be an object")
            a = _canonical_keys(alloc, spelling)
            if a.get("Percentage") in (None, ""):
                raise ConcurError(400, f"Allocation Percentage is required (line {index}).")
            pct = _decimal(a["Percentage"], "Percentage")
            total_pct += pct
            a["Percentage"] = _text(a["Percentage"])
            allocations.append(a)
        if allocations and abs(total_pct - 100) > Decimal("0.01"):
            raise ConcurError(
                400, f"Allocations on line {index} must add up to 100 (got {total_pct})."
            )
        for amount_field in ("TotalPrice", "UnitPrice", "Quantity", "Tax"):
            if line.get(amount_field) not in (None, ""):
                _decimal(line[amount_field], amount_field)
                line[amount_field] = _text(line[amount_field])
        if put and line.get("Action"):
            line["Action"] = str(line["Action"]).upper()
            if line["Action"] not in ("INSERT", "UPDATE", "DELETE"):
                raise ConcurError(400, f"Invalid line item Action {line['Action']}.")
        line["_allocations"] = allocations
        items.append(line)
    return items


def _line_total(line: dict[str, Any]) -> Decimal:
    if line.get("TotalPrice") not in (None, ""):
        return Decimal(str(line["TotalPrice"]))
    if line.get("UnitPrice") not in (None, ""):
        qty = Decimal(str(line.get("Quantity") or 1))
        return Decimal(str(line["UnitPrice"])) * qty
    return Decimal(0)


def _apply_header(
    company: Company, pr: dict[str, Any], body: dict[str, Any], *, creating: bool
) -> None:
    header = {
        k: v
        for k, v in body.items()
        if k not in ("LineItems", "VendorRemitToIdentifier", "RequestID", "ID", "URI")
    }
    for key, value in header.items():
        pr[key] = value if isinstance(value, (dict, list)) else _text(value)
    if "VendorRemitToIdentifier" in body or creating:
        vendor = resolve_vendor(company, body.get("VendorRemitToIdentifier"))
        pr["_vendor_key"] = company.vendor_key(vendor["VendorCode"], vendor["AddressCode"])
        ident = body.get("VendorRemitToIdentifier") or {}
        pr["VendorRemitToIdentifier"] = {
            "VendorCode": vendor["VendorCode"],
            "AddressCode": vendor["AddressCode"],
            "Name": vendor.get("VendorName"),
            "Address1": vendor.get("Address1") or ident.get("Address1"),
            "PostalCode": vendor.get("PostalCode") or ident.get("PostalCode"),
        }
        if not pr.get("CurrencyCode"):
            pr["CurrencyCode"] = vendor.get("CurrencyCode")
    if any(body.get(f) for f in PR_OWNER_FIELDS) or creating:
        owner = _resolve_owner(company, {**pr, **body} if not creating else body)
        emp = owner["employee"]
        pr["LedgerCode"] = owner["LedgerCode"]
        pr["_owner_login"] = emp.login_id if emp else None
        pr["EmployeeName"] = emp.name if emp else None


def _validate_required(body: dict[str, Any]) -> None:
    missing = [
        f
        for f in ("Name", "CountryCode", "InvoiceAmount", "VendorRemitToIdentifier")
        if body.get(f) in (None, "")
    ]
    if missing:
        raise ConcurError(400, f"Required field(s) missing: {', '.join(missing)}.")


def _check_amount_fields(body: dict[str, Any]) -> None:
    for f in ("InvoiceAmount", "TaxAmount", "ShippingAmount", "AmountWithoutVat"):
        if body.get(f) not in (None, ""):
            _decimal(body[f], f)
    cur = body.get("CurrencyCode")
    if cur and (len(str(cur)) != 3 or not str(cur).isalpha()):
        raise ConcurError(400, f"Invalid CurrencyCode {cur}.")
    country = body.get("CountryCode")
    if country and (len(str(country)) != 2 or not str(country).isalpha()):
        raise ConcurError(400, f"Invalid CountryCode {country}.")


def create_payment_request(
    store: ConcurStore, company: Company, body: Any, now: float, source: str = "api"
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ConcurError(400, "The request body must be a payment request object.")
    spelling = store.settings.custom_field_spelling
    body = _canonical_keys(body, spelling)
    _validate_required(body)
    _check_amount_fields(body)
    pr: dict[str, Any] = {
        "ID": random_v3_id(),
        "ApprovalStatus": "A_NOTF",
        "PaymentStatus": "P_NOTP",
        "IsPaymentRequestDeleted": "false",
        "_created": now,
        "_modified": now,
        "_source": source,
    }
    _apply_header(company, pr, body, creating=True)
    lines = _line_items(
        body.get("LineItems"), pr.get("CurrencyCode") or "USD", put=False, spelling=spelling
    )
    for n, line in enumerate(lines, start=1):
        line.pop("Action", None)
        line["LineItemId"] = random_v3_id(length=20)
        line["RequestLineItemNumber"] = str(n)
    pr["_lines"] = lines
    company.payment_requests[pr["ID"]] = pr
    company.index_payment_request(pr)
    store.record_created(
        "payment_request",
        company.id,
        pr["ID"],
        InvoiceNumber=pr.get("InvoiceNumber"),
        VendorCode=pr["VendorRemitToIdentifier"]["VendorCode"],
        InvoiceAmount=pr.get("InvoiceAmount"),
    )
    return pr


def update_payment_request(
    company: Company, body: Any, now: float, spelling: str = "both"
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ConcurError(400, "The request body must be a payment request object.")
    body = _canonical_keys(body, spelling)
    request_id = body.get("RequestID") or body.get("ID")
    if not request_id:
        raise ConcurError(400, "RequestID is required.")
    pr = company.payment_requests.get(str(request_id))
    if pr is None or pr.get("IsPaymentRequestDeleted") == "true":
        raise ConcurError(404, f"Payment request {request_id} was not found.")
    if pr["ApprovalStatus"] not in EDITABLE_APPROVAL_STATUSES:
        raise ConcurError(
            400,
            "The payment request cannot be updated because it is no longer editable "
            f"(approval status {pr['ApprovalStatus']}).",
        )
    _check_amount_fields(body)
    for f in ("Name", "CountryCode", "InvoiceAmount"):
        if f in body and body[f] in (None, ""):
            raise ConcurError(400, f"{f} cannot be empty.")
    # Validate everything before touching the stored record, so a failed PUT changes nothing.
    draft = {**pr, "_lines": [dict(line) for line in pr["_lines"]]}
    old_invoice = pr.get("InvoiceNumber")
    _apply_header(company, draft, body, creating=False)
    if "LineItems" in body:
        lines_by_id = {line["LineItemId"]: line for line in draft["_lines"]}
        currency = draft.get("CurrencyCode") or "USD"
        for line in _line_items(body["LineItems"], currency, put=True, spelling=spelling):
            action = line.pop("Action", None)
            line_id = line.pop("LineItemID", None) or line.pop("LineItemId", None)
            if action is None:
                action = "UPDATE" if line_id else "INSERT"
            if action == "INSERT":
                line["LineItemId"] = random_v3_id(length=20)
                lines_by_id[line["LineItemId"]] = line
                continue
            if not line_id or line_id not in lines_by_id:
                raise ConcurError(400, f"Line item {line_id} was not found on this request.")
            if action == "DELETE":
                del lines_by_id[line_id]
            else:
                merged = {**lines_by_id[line_id], **{k: v for k, v in line.items() if v}}
                if not line["_allocations"]:
                    merged["_allocations"] = lines_by_id[line_id]["_allocations"]
                lines_by_id[line_id] = merged
        draft["_lines"] = list(lines_by_id.values())
        for n, line in enumerate(draft["_lines"], start=1):
            line["RequestLineItemNumber"] = str(n)
    draft["_modified"] = now
    pr.clear()
    pr.update(draft)
    company.index_payment_request(pr, old_invoice=old_invoice)
    return pr


def is_duplicate(company: Company, pr: dict[str, Any]) -> bool:
    """Another live request with the same vendor invoice number and vendor."""
    inv = (pr.get("InvoiceNumber") or "").strip().upper()
    if not inv:
        return False
    for other_id in company.pr_by_invoice.get(inv, ()):
        other = company.payment_requests[other_id]
        if (
            other_id != pr["ID"]
            and other.get("_vendor_key") == pr.get("_vendor_key")
            and other.get("IsPaymentRequestDeleted") != "true"
        ):
            return True
    return False


def _allocation_out(a: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in a.items() if not k.startswith("_")}


def render_payment_request(company: Company, pr: dict[str, Any], base: str) -> dict[str, Any]:
    """GET shape: the Swagger ``PaymentRequest`` (collections nested as ``{LineItem: [...]}``)."""
    vendor = company.vendors.get(pr["_vendor_key"]) or {}
    lines = []
    total = Decimal(0)
    for line in pr["_lines"]:
        out = {k: v for k, v in line.items() if not k.startswith("_")}
        amount = _line_total(line)
        total += amount
        out["RequestedLineItemAmount"] = _text(amount)
        out["ApprovedLineItemAmount"] = _text(amount)
        allocs = [_allocation_out(a) for a in line["_allocations"]]
        out["AllocationStatus"] = "Full" if allocs else "None"
        out["Allocations"] = {"Allocation": allocs}
        lines.append(out)
    header = {k: v for k, v in pr.items() if not k.startswith("_") and k != "ID"}
    remit = {
        "Name": vendor.get("VendorName"),
        "Address1": vendor.get("Address1"),
        "Address2": vendor.get("Address2"),
        "Address3": vendor.get("Address3"),
        "City": vendor.get("City"),
        "State": vendor.get("State"),
        "PostalCode": vendor.get("PostalCode"),
        "CountryCode": vendor.get("CountryCode"),
    }
    out = {
        "ID": pr["ID"],
        "URI": f"{base}/api/v3.0/invoice/paymentrequest/{pr['ID']}",
        **header,
        "ApprovalStatus": pr["ApprovalStatus"],
        "PaymentStatus": pr["PaymentStatus"],
        "IsPaymentRequestDuplicate": "true" if is_duplicate(company, pr) else "false",
        "IsPaymentRequestDeleted": pr.get("IsPaymentRequestDeleted", "false"),
        "LineItemTotalAmount": _text(total),
        "UserCreationDate": v3_date(pr["_created"]),
        "VendorRemitAddress": {k: v for k, v in remit.items() if v is not None},
        "LineItems": {"LineItem": lines},
    }
    # The Swagger types every field as a string; absent values are left out rather than null.
    return {k: v for k, v in out.items() if v is not None}


def render_digest(company: Company, pr: dict[str, Any], base: str) -> dict[str, Any]:
    vendor = company.vendors.get(pr["_vendor_key"]) or {}
    emp = company.employees.get((pr.get("_owner_login") or "").lower())
    return {
        "ID": pr["ID"],
        "URI": f"{base}/api/v3.0/invoice/paymentrequestdigests/{pr['ID']}",
        "PaymentRequestId": pr["ID"],
        "PaymentRequestUri": f"{base}/api/v3.0/invoice/paymentrequest/{pr['ID']}",
        "InvoiceNumber": pr.get("InvoiceNumber"),
        "VendorName": vendor.get("VendorName") or pr["VendorRemitToIdentifier"].get("Name"),
        "Total": pr.get("InvoiceAmount"),
        "CurrencyCode": pr.get("CurrencyCode"),
        "ApprovalStatusCode": pr["ApprovalStatus"],
        "PaymentStatusCode": pr["PaymentStatus"],
        "CreateDate": v3_date(pr["_created"]),
        "LastModifiedDate": v3_date(pr["_modified"]),
        "PaidDate": pr.get("PaidDate"),
        "ExtractedDate": None,
        "UserDefinedDate": pr.get("InvoiceDate"),
        "IsDeleted": pr.get("IsPaymentRequestDeleted") == "true",
        "OwnerLoginID": emp.login_id if emp else None,
        "OwnerName": emp.name if emp else None,
        "PaymentMethod": vendor.get("PaymentMethodType"),
    }


def _date_param(value: str, name: str) -> float:
    from datetime import UTC, datetime

    try:
        return datetime.strptime(value[:10], "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise ConcurError(400, f"{name} must be formatted YYYY-MM-DD") from exc


def search_digests(
    company: Company, args: dict[str, str], base: str, path_url: str
) -> dict[str, Any]:
    lowered = {k.lower(): v for k, v in args.items()}
    try:
        limit = int(lowered.get("limit", config.DIGEST_LIMIT_DEFAULT))
        offset = int(lowered.get("offset", 0) or 0)
    except ValueError as exc:
        raise ConcurError(400, "limit and offset must be integers") from exc
    if limit < 1 or offset < 0:
        raise ConcurError(400, "limit must be positive and offset not negative")
    inv = lowered.get("vendorinvoicenumber")
    if inv is not None:
        ids = company.pr_by_invoice.get(inv.strip().upper(), [])
        candidates = [company.payment_requests[i] for i in ids]
    else:
        candidates = list(company.payment_requests.values())
    approval = lowered.get("approvalstatus")
    payment = lowered.get("paymentstatus")
    after = lowered.get("lastmodifieddateafter")
    before = lowered.get("lastmodifieddatebefore")
    c_after = lowered.get("createdateafter")
    c_before = lowered.get("createdatebefore")
    out = []
    for pr in candidates:
        if approval and pr["ApprovalStatus"] != approval:
            continue
        if payment and pr["PaymentStatus"] != payment:
            continue
        if after and pr["_modified"] < _date_param(after, "lastModifiedDateAfter"):
            continue
        if before and pr["_modified"] >= _date_param(before, "lastModifiedDateBefore"):
            continue
        if c_after and pr["_created"] < _date_param(c_after, "createDateAfter"):
            continue
        if c_before and pr["_created"] >= _date_param(c_before, "createDateBefore"):
            continue
        out.append(pr)
    total = len(out)
    page = [render_digest(company, pr, base) for pr in out[offset : offset + limit]]
    next_page = None
    if offset + limit < total:
        next_page = _with_params(path_url, args, offset=str(offset + limit), limit=str(limit))
    return {
        "Items": page,
        "PaymentRequestDigest": page,
        "NextPage": next_page,
        "TotalCount": total,
    }


def advance_payment_request(
    company: Company, request_id: str, approval: str, payment: str | None, now: float
) -> dict[str, Any]:
    """Admin: move a request through workflow (the public API cannot; documented)."""
    pr = company.payment_requests.get(request_id)
    if pr is None:
        raise ConcurError(404, f"Payment request {request_id} was not found.")
    pr["ApprovalStatus"] = approval
    if payment:
        pr["PaymentStatus"] = payment
        if payment == "P_PAID":
            pr["PaidDate"] = v3_date(now)
    pr["_modified"] = now
    return pr
