"""Expense: v3.0 reports, entries and allocations, v4 report detail, and workflow transitions.

Reports are stored in v3 shape (``ID``, ``ApprovalStatusCode`` ...) with money as ``Decimal`` and
times as epoch floats, and rendered per API version on the way out. Workflow transitions (submit,
approve, pay, send back) are admin-only, as in reality they happen in the Concur UI; each returns
the ``statusChanged`` facts so the caller can publish the ESS event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from sandbox.concur import config
from sandbox.concur.errors import ConcurError
from sandbox.concur.store import Company, iso_z, money, money_json, random_hex, v3_date

APPROVAL_NAMES = {
    "A_AAFH": "Anomaly/Fraud Check",
    "A_ACCO": "Pending Cost Object Approval",
    "A_APPR": "Approved",
    "A_EXTV": "Pending External Validation",
    "A_FILE": "Submitted",
    "A_NOTF": "Not Submitted",
    "A_PBDG": "Pending Budget Approval",
    "A_PECO": "Pending Cost Object Approval",
    "A_PEND": "Submitted & Pending Approval",
    "A_PVAL": "Pending Prepayment Validation",
    "A_RESU": "Returned",
    "A_RHLD": "Pending Receipt Images",
    "A_TEXP": "Expired",
}
PAYMENT_NAMES = {
    "P_HOLD": "Payment on Hold",
    "P_NOTP": "Not Paid",
    "P_PAID": "Paid",
    "P_PAYC": "Payment Confirmed",
    "P_PROC": "Processing Payment",
}
PAYMENT_TYPES = {
    "CASH": "Cash",
    "CBCP": "Company Paid",  # company-billed, company-paid corporate card
    "IBIP": "Individually Billed Card",
}

_REPORT_DATE_FILTERS = {
    "modifieddate": "_modified",
    "submitdate": "_submitted",
    "processingpaymentdate": "_processing",
    "paiddate": "_paid",
    "createdate": "_created",
    "userdefineddate": "_user_defined",
}


def parse_date(value: str, name: str) -> float:
    """Accepted formats (documented): ``yyyy-MM-dd`` or ``yyyy-MM-ddTHH:mm:ss.SSS`` (UTC)."""
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(value.rstrip("Z"), fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise ConcurError(
        400, f"{name} must be formatted yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss.SSS: {value!r}"
    )


def page_args(args: dict[str, str], default: int, maximum: int, *, clamp: bool) -> tuple[int, int]:
    lowered = {k.lower(): v for k, v in args.items()}
    try:
        limit = int(lowered.get("limit") or default)
        offset = int(lowered.get("offset") or 0)
    except ValueError as exc:
        raise ConcurError(400, "limit and offset must be integers") from exc
    if limit < 1 or offset < 0:
        raise ConcurError(400, "limit must be positive and offset not negative")
    if limit > maximum:
        if not clamp:
            raise ConcurError(400, f"limit cannot exceed {maximum}")
        limit = maximum
    return limit, offset


def next_page(
    path_url: str, args: dict[str, str], offset: int, limit: int, total: int
) -> str | None:
    if offset + limit >= total:
        return None
    merged = {k: v for k, v in args.items() if k.lower() not in ("offset", "limit")}
    merged["offset"] = str(offset + limit)
    merged["limit"] = str(limit)
    return f"{path_url}?{urlencode(merged)}"


# ------------------------------------------------------------------------------------------------
# totals
# ------------------------------------------------------------------------------------------------


def recompute_totals(company: Company, report: dict[str, Any]) -> None:
    """Derive the report amounts from its entries, in the report currency."""
    ccy = report["CurrencyCode"]
    total = personal = cash_due = card = card_personal = Decimal(0)
    for entry_id in company.entries_by_report.get(report["ID"], ()):
        e = company.entries[entry_id]
        posted = e["_posted"]
        total += posted
        if e["IsPersonal"]:
            personal += posted
        if e["PaymentTypeID"] == "CASH":
            if not e["IsPersonal"]:
                cash_due += posted
        else:
            card += posted
            if e["IsPersonal"]:
                card_personal += posted
    report["_total"] = money(total, ccy)
    report["_personal"] = money(personal, ccy)
    report["_due_employee"] = money(cash_due - card_personal, ccy)
    report["_due_card"] = money(card, ccy)
    report["_approved"] = money(total - personal, ccy)


# ------------------------------------------------------------------------------------------------
# rendering v3
# ------------------------------------------------------------------------------------------------


def _custom(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value else None


def render_report(company: Company, r: dict[str, Any], base: str) -> dict[str, Any]:
    ccy = r["CurrencyCode"]
    owner = company.employees[r["_owner"].lower()]
    out: dict[str, Any] = {
        "Name": r["Name"],
        "Total": money_json(r["_total"], ccy),
        "CurrencyCode": ccy,
        "Country": r.get("Country"),
        "CountrySubdivision": r.get("CountrySubdivision"),
        "CreateDate": v3_date(r["_created"]),
        "SubmitDate": v3_date(r.get("_submitted")),
        "ProcessingPaymentDate": v3_date(r.get("_processing")),
        "PaidDate": v3_date(r.get("_paid")),
        "ReceiptsReceived": False,
        "UserDefinedDate": v3_date(r.get("_user_defined")),
        "LastComment": "",
        "OwnerLoginID": owner.login_id,
        "OwnerName": owner.name,
        "ApproverLoginID": r.get("ApproverLoginID"),
        "ApproverName": r.get("ApproverName"),
        "ApprovalStatusName": APPROVAL_NAMES.get(r["ApprovalStatusCode"], r["ApprovalStatusCode"]),
        "ApprovalStatusCode": r["ApprovalStatusCode"],
        "PaymentStatusName": PAYMENT_NAMES.get(r["PaymentStatusCode"], r["PaymentStatusCode"]),
        "PaymentStatusCode": r["PaymentStatusCode"],
        "LastModifiedDate": v3_date(r["_modified"]),
        "PersonalAmount": money_json(r["_personal"], ccy),
        "AmountDueEmployee": money_json(r["_due_employee"], ccy),
        "AmountDueCompanyCard": money_json(r["_due_card"], ccy),
        "TotalClaimedAmount": money_json(r["_total"], ccy),
        "TotalApprovedAmount": money_json(r["_approved"], ccy),
        "LedgerName": r.get("LedgerName", "DEFAULT"),
        "PolicyID": r.get("PolicyID"),
        "EverSentBack": bool(r.get("EverSentBack")),
        "HasException": False,
        "WorkflowActionUrl": f"{base}/api/v3.0/expense/reports/report/{r['ID']}/WorkFlowAction",
    }
    for i in range(1, 7):
        out[f"OrgUnit{i}"] = _custom(r.get(f"OrgUnit{i}"))
    for i in range(1, 21):
        out[f"Custom{i}"] = _custom(r.get(f"Custom{i}"))
    out["ID"] = r["ID"]
    out["URI"] = f"{base}/api/v3.0/expense/reports/{r['ID']}"
    return out


def render_entry(company: Company, e: dict[str, Any], base: str) -> dict[str, Any]:
    report = company.reports[e["ReportID"]]
    ccy = report["CurrencyCode"]
    out: dict[str, Any] = {
        "AllocationType": e["AllocationType"],
        "ApprovedAmount": money_json(e["_approved"], ccy),
        "CompanyCardTransactionID": e.get("CompanyCardTransactionID"),
        "Description": e.get("Description"),
        "ExchangeRate": float(e["_rate"]),
        "ExpenseID": e["ExpenseID"],
        "ExpenseTypeCode": e["ExpenseTypeCode"],
        "ExpenseTypeName": e["ExpenseTypeName"],
        "FormID": "SANDBOX-ENTRY-FORM",
        "HasAppliedCashAdvance": False,
        "HasAttendees": False,
        "HasComments": False,
        "HasExceptions": False,
        "HasImage": False,
        "HasItemizations": False,
        "HasVAT": False,
        "IsBillable": bool(e.get("IsBillable")),
        "IsImageRequired": False,
        "IsPaidByExpensePay": report["PaymentStatusCode"] in ("P_PROC", "P_PAID")
        and e["PaymentTypeID"] == "CASH",
        "IsPersonal": bool(e["IsPersonal"]),
        "IsPersonalCardCharge": False,
        "LastModified": v3_date(e["_modified"]),
        "LocationCountry": e.get("LocationCountry"),
        "LocationName": e.get("LocationName"),
        "LocationSubdivision": None,
        "PaymentTypeID": e["PaymentTypeID"],
        "PaymentTypeCode": e["PaymentTypeID"],
        "PaymentTypeName": PAYMENT_TYPES.get(e["PaymentTypeID"], e["PaymentTypeID"]),
        "PostedAmount": money_json(e["_posted"], ccy),
        "ReceiptReceived": False,
        "ReportID": e["ReportID"],
        "ReportOwnerID": report["_owner"],
        "SpendCategoryCode": e.get("SpendCategoryCode"),
        "SpendCategoryName": e.get("SpendCategoryName"),
        "TaxReceiptType": "R",
        "TransactionAmount": money_json(e["_amount"], e["TransactionCurrencyCode"]),
        "TransactionCurrencyCode": e["TransactionCurrencyCode"],
        "TransactionDate": (v3_date(e.get("_date")) or "")[:10] + "T00:00:00"
        if e.get("_date")
        else None,
        "TripID": None,
        "VendorDescription": e.get("VendorDescription"),
        "VendorListItemID": None,
        "VendorListItemName": None,
    }
    for i in range(1, 7):
        out[f"OrgUnit{i}"] = _custom(e.get(f"OrgUnit{i}"))
    for i in range(1, 41):
        out[f"Custom{i}"] = _custom(e.get(f"Custom{i}"))
    out["ID"] = e["ID"]
    out["URI"] = f"{base}/api/v3.0/expense/entries/{e['ID']}"
    return out


def render_allocation(a: dict[str, Any], base: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "EntryID": a["EntryID"],
        "Percentage": f"{a['_percentage']:.8f}",
        "IsPercentEdited": bool(a.get("IsPercentEdited")),
        "IsHidden": bool(a.get("IsHidden")),
        "AccountNumber": a.get("AccountNumber"),
        "AccountCode1": a.get("AccountNumber"),  # the doc's example spells it this way
        "AccountCode2": None,
    }
    for i in range(1, 21):
        out[f"Custom{i}"] = _custom(a.get(f"Custom{i}"))
    out["ID"] = a["ID"]
    out["URI"] = f"{base}/api/v3.0/expense/allocations/{a['ID']}"
    return out


# ------------------------------------------------------------------------------------------------
# v3 listing
# ------------------------------------------------------------------------------------------------


def _owner_filter(company: Company, args: dict[str, str]) -> str | None:
    """``user=ALL`` -> everyone; a login id -> that owner; absent -> the token's own user.

    A company token acts as the company's web-services administrator, so leaving ``user`` out
    returns only that administrator's reports (a trap the docs describe).
    """
    lowered = {k.lower(): v for k, v in args.items()}
    user = lowered.get("user")
    if user is None or user == "":
        return company.admin_login.lower()
    if user.upper() == "ALL":
        return None
    return user.lower()


def list_reports(
    company: Company, args: dict[str, str], base: str, path_url: str
) -> dict[str, Any]:
    limit, offset = page_args(args, 25, config.REPORTS_LIMIT_MAX, clamp=True)
    lowered = {k.lower(): v for k, v in args.items()}
    owner = _owner_filter(company, args)
    approval = {c.strip() for c in lowered.get("approvalstatuscode", "").split(",") if c.strip()}
    payment = {c.strip() for c in lowered.get("paymentstatuscode", "").split(",") if c.strip()}
    windows: list[tuple[str, float, bool]] = []
    for param, attr in _REPORT_DATE_FILTERS.items():
        for suffix, is_after in (("after", True), ("before", False)):
            raw = lowered.get(param + suffix)
            if raw:
                windows.append((attr, parse_date(raw, param + suffix), is_after))
    currency = lowered.get("currencycode")
    country = lowered.get("countrycode")
    expense_type = lowered.get("expensetypecode")
    vendor_name = lowered.get("vendorname")
    out = []
    for r in company.reports.values():
        if owner is not None and r["_owner"].lower() != owner:
            continue
        if approval and r["ApprovalStatusCode"] not in approval:
            continue
        if payment and r["PaymentStatusCode"] not in payment:
            continue
        if currency and r["CurrencyCode"] != currency.upper():
            continue
        if country and r.get("Country") != country.upper():
            continue
        skip = False
        for attr, when, is_after in windows:
            value = r.get(attr)
            if value is None:
                skip = True
                break
            # Compare at the millisecond precision the API prints, so a printed value works
            # as the next watermark.
            ms, when_ms = int(value * 1000), round(when * 1000)
            if ms <= when_ms if is_after else ms >= when_ms:
                skip = True
                break
        if skip:
            continue
        if expense_type or vendor_name:
            entries = [company.entries[i] for i in company.entries_by_report.get(r["ID"], ())]
            if expense_type and not any(e["ExpenseTypeCode"] == expense_type for e in entries):
                continue
            if vendor_name and not any(
                (e.get("VendorDescription") or "").lower() == vendor_name.lower() for e in entries
            ):
                continue
        out.append(r)
    total = len(out)
    items = [render_report(company, r, base) for r in out[offset : offset + limit]]
    return {"Items": items, "NextPage": next_page(path_url, args, offset, limit, total)}


def list_entries(
    company: Company, args: dict[str, str], base: str, path_url: str
) -> dict[str, Any]:
    limit, offset = page_args(args, 25, config.REPORTS_LIMIT_MAX, clamp=True)
    lowered = {k.lower(): v for k, v in args.items()}
    report_id = lowered.get("reportid")
    if report_id is not None:
        ids = company.entries_by_report.get(report_id, [])
        entries = [company.entries[i] for i in ids]
    else:
        owner = _owner_filter(company, args)
        entries = [
            e
            for e in company.entries.values()
            if owner is None or company.reports[e["ReportID"]]["_owner"].lower() == owner
        ]
    if lowered.get("expensetypecode"):
        entries = [e for e in entries if e["ExpenseTypeCode"] == lowered["expensetypecode"]]
    if lowered.get("paymenttypeid"):
        entries = [e for e in entries if e["PaymentTypeID"] == lowered["paymenttypeid"]]
    total = len(entries)
    items = [render_entry(company, e, base) for e in entries[offset : offset + limit]]
    return {"Items": items, "NextPage": next_page(path_url, args, offset, limit, total)}


def list_allocations(
    company: Company, args: dict[str, str], base: str, path_url: str
) -> dict[str, Any]:
    limit, offset = page_args(args, 25, config.ALLOCATIONS_LIMIT_MAX, clamp=False)
    lowered = {k.lower(): v for k, v in args.items()}
    if "userid" in lowered:
        raise ConcurError(400, "userId is not a supported query string parameter for this API")
    if lowered.get("entryid"):
        ids = company.allocs_by_entry.get(lowered["entryid"], [])
    elif lowered.get("reportid"):
        ids = company.allocs_by_report.get(lowered["reportid"], [])
    elif lowered.get("itemizationid"):
        ids = []
    else:
        ids = list(company.allocations)
    total = len(ids)
    items = [render_allocation(company.allocations[i], base) for i in ids[offset : offset + limit]]
    return {"Items": items, "NextPage": next_page(path_url, args, offset, limit, total)}


# ------------------------------------------------------------------------------------------------
# v4
# ------------------------------------------------------------------------------------------------


def _amount(value: Decimal, ccy: str) -> dict[str, Any]:
    return {"value": money_json(value, ccy), "currencyCode": ccy}


def _custom_data(obj: dict[str, Any], count: int) -> list[dict[str, Any]]:
    data = []
    for i in range(1, 7):
        field = obj.get(f"OrgUnit{i}")
        if field:
            data.append(
                {
                    "id": f"orgUnit{i}",
                    "value": field.get("ListItemID") or field.get("Value"),
                    "isValid": True,
                }
            )
    for i in range(1, count + 1):
        field = obj.get(f"Custom{i}")
        if field:
            data.append(
                {
                    "id": f"custom{i}",
                    "value": field.get("ListItemID") or field.get("Value"),
                    "isValid": True,
                }
            )
    return data


def v4_report(company: Company, r: dict[str, Any], geo_url: str, context: str) -> dict[str, Any]:
    ccy = r["CurrencyCode"]
    owner = company.employees[r["_owner"].lower()]
    zero = Decimal(0)
    approved = r["ApprovalStatusCode"]
    self_url = f"{geo_url}/expensereports/v4/users/{owner.uuid}/context/{context}/reports/{r['ID']}"
    return {
        "reportId": r["ID"],
        "reportNumber": r["_number"],
        "name": r["Name"],
        "userId": owner.uuid,
        "employee": {"employeeId": owner.employee_id, "employeeUuid": owner.uuid},
        "policyId": r.get("PolicyID"),
        "policy": "Sandbox Expense Policy",
        "ledgerId": "DEFAULT",
        "ledger": r.get("LedgerName", "DEFAULT"),
        "reportType": "Regular",
        "reportFormId": "SANDBOX-REPORT-FORM",
        "reportVersion": r.get("_version", 1),
        "approvalStatusId": approved,
        "approvalStatus": APPROVAL_NAMES.get(approved, approved),
        "paymentStatusId": r["PaymentStatusCode"],
        "paymentStatus": PAYMENT_NAMES.get(r["PaymentStatusCode"], r["PaymentStatusCode"]),
        "isSubmitted": approved not in ("A_NOTF", "A_RESU"),
        "isSentBack": approved == "A_RESU",
        "isReportEverSentBack": bool(r.get("EverSentBack")),
        "currencyCode": ccy,
        "currency": ccy,
        "countryCode": r.get("Country"),
        "approvedAmount": _amount(r["_approved"], ccy),
        "claimedAmount": _amount(r["_total"], ccy),
        "reportTotal": _amount(r["_total"], ccy),
        "amountDueEmployee": _amount(r["_due_employee"], ccy),
        "amountDueCompanyCard": _amount(r["_due_card"], ccy),
        "amountDueCompany": _amount(zero, ccy),
        "amountCompanyPaid": _amount(r["_due_card"], ccy),
        "personalAmount": _amount(r["_personal"], ccy),
        "amountNotApproved": _amount(zero, ccy),
        "paymentConfirmedAmount": _amount(
            r["_due_employee"] if r["PaymentStatusCode"] == "P_PAID" else zero, ccy
        ),
        "totalAmountPaidEmployee": _amount(
            r["_due_employee"] if r["PaymentStatusCode"] == "P_PAID" else zero, ccy
        ),
        "submitDate": iso_z(r.get("_submitted")),
        "creationDate": iso_z(r["_created"]),
        "reportDate": (iso_z(r.get("_user_defined")) or "")[:10] or None,
        "customData": _custom_data(r, 20),
        "analyticsGroupId": "SANDBOX",
        "hierarchyNodeId": "SANDBOX",
        "canAddExpense": approved in ("A_NOTF", "A_RESU"),
        "canRecall": approved == "A_PEND",
        "concurAuditStatus": "NOT_REQUIRED",
        "defaultFieldAccess": "RO" if context != "TRAVELER" else "RW",
        "imageStatus": "NO_IMAGES",
        "receiptStatus": "NOT_REQUIRED",
        "isFinancialIntegrationEnabled": False,
        "isPaperReceiptRequired": False,
        "isPaperReceiptsReceived": False,
        "isPendingDelegatorReview": False,
        "isReceiptImageAvailable": False,
        "isReceiptImageRequired": False,
        "links": [
            {"rel": "self", "href": self_url, "method": "GET", "isTemplated": False},
            {
                "rel": "expenses",
                "href": f"{self_url}/expenses",
                "method": "GET",
                "isTemplated": False,
            },
        ],
    }


def v4_expense(company: Company, e: dict[str, Any], geo_url: str, self_base: str) -> dict[str, Any]:
    report = company.reports[e["ReportID"]]
    ccy = report["CurrencyCode"]
    allocs = company.allocs_by_entry.get(e["ID"], [])
    state = {"F": "FULLY_ALLOCATED", "P": "PARTIALLY_ALLOCATED"}.get(
        e["AllocationType"], "NOT_ALLOCATED"
    )
    return {
        "expenseId": e["ExpenseID"],
        "transactionDate": (v3_date(e.get("_date")) or "")[:10] or None,
        "transactionAmount": _amount(e["_amount"], e["TransactionCurrencyCode"]),
        "postedAmount": _amount(e["_posted"], ccy),
        "approvedAmount": _amount(e["_approved"], ccy),
        "claimedAmount": _amount(e["_posted"], ccy),
        "exchangeRate": {"value": float(e["_rate"]), "operation": "MULTIPLY"},
        "expenseType": {
            "id": e["ExpenseTypeCode"],
            "name": e["ExpenseTypeName"],
            "code": e["ExpenseTypeCode"],
            "isDeleted": False,
        },
        "paymentType": {
            "id": e["PaymentTypeID"],
            "name": PAYMENT_TYPES.get(e["PaymentTypeID"], e["PaymentTypeID"]),
            "code": e["PaymentTypeID"],
        },
        "isPersonalExpense": bool(e["IsPersonal"]),
        "allocationState": state,
        "allocationSetId": e.get("_allocation_set") if allocs else None,
        "vendor": {"name": e.get("VendorDescription"), "id": None},
        "location": {"countryCode": e.get("LocationCountry"), "name": e.get("LocationName")},
        "businessPurpose": e.get("Description"),
        "canDelete": report["ApprovalStatusCode"] in ("A_NOTF", "A_RESU"),
        "hasBlockingExceptions": False,
        "hasExceptions": False,
        "hasMissingReceiptDeclaration": False,
        "isAutoCreated": False,
        "isImageRequired": False,
        "isPaperReceiptRequired": False,
        "links": [
            {
                "rel": "self",
                "href": f"{self_base}/expenses/{e['ExpenseID']}",
                "method": "GET",
                "isTemplated": False,
            },
            {
                "rel": "allocations",
                "href": f"{self_base}/expenses/{e['ExpenseID']}/allocations",
                "method": "GET",
                "isTemplated": False,
            },
        ],
    }


def v4_allocation(company: Company, a: dict[str, Any]) -> dict[str, Any]:
    e = company.entries[a["EntryID"]]
    ccy = company.reports[e["ReportID"]]["CurrencyCode"]
    share = money(e["_posted"] * a["_percentage"] / 100, ccy)
    return {
        "allocationId": a["AllocationID"],
        "expenseId": e["ExpenseID"],
        "percentage": float(a["_percentage"]),
        "allocationAmount": _amount(share, ccy),
        "approvedAmount": _amount(share, ccy),
        "claimedAmount": _amount(share, ccy),
        "accountCode": a.get("AccountNumber"),
        "overLimitAccountCode": None,
        "isSystemAllocation": bool(a.get("IsHidden")),
        "isPercentEdited": bool(a.get("IsPercentEdited")),
        "customData": _custom_data(a, 20),
    }


# ------------------------------------------------------------------------------------------------
# workflow (admin)
# ------------------------------------------------------------------------------------------------

TRANSITIONS: dict[str, dict[str, Any]] = {
    # action: allowed-from approval statuses, new approval, new payment (None = unchanged), step
    "submit": {"from": {"A_NOTF", "A_RESU"}, "approval": "A_PEND", "payment": None, "step": None},
    "approve": {
        "from": {"A_NOTF", "A_RESU", "A_PEND", "A_FILE", "A_ACCO", "A_PECO", "A_PBDG", "A_EXTV"},
        "approval": "A_APPR",
        "payment": "P_PROC",
        "step": "PROCESSOR",
    },
    "pay": {"from": {"A_APPR"}, "approval": "A_APPR", "payment": "P_PAID", "step": "PAIDREPORT"},
    "sendback": {
        "from": {"A_PEND", "A_FILE", "A_ACCO", "A_PECO", "A_PBDG", "A_EXTV"},
        "approval": "A_RESU",
        "payment": None,
        "step": "SENDBACK",
    },
}


def transition(
    company: Company, report_id: str, action: str, now: float, geo_url: str
) -> dict[str, Any]:
    """Move a report through workflow; returns the ``statusChanged`` facts."""
    spec = TRANSITIONS.get(action)
    if spec is None:
        raise ConcurError(400, f"unknown action {action!r}; expected one of {sorted(TRANSITIONS)}")
    r = company.reports.get(report_id)
    if r is None:
        raise ConcurError(404, f"report {report_id} not found")
    prev_approval = r["ApprovalStatusCode"]
    prev_payment = r["PaymentStatusCode"]
    if prev_approval not in spec["from"] or (action == "pay" and prev_payment == "P_PAID"):
        raise ConcurError(409, f"cannot {action} a report in status {prev_approval}/{prev_payment}")
    r["ApprovalStatusCode"] = spec["approval"]
    if spec["payment"]:
        r["PaymentStatusCode"] = spec["payment"]
    if action == "submit":
        r["_submitted"] = now
    elif action == "approve":
        r["_processing"] = now
        r.setdefault("_submitted", now)
        if r.get("_submitted") is None:
            r["_submitted"] = now
    elif action == "pay":
        r["_paid"] = now
    elif action == "sendback":
        r["EverSentBack"] = True
    r["_modified"] = now
    r["_version"] = r.get("_version", 1) + 1
    owner = company.employees[r["_owner"].lower()]
    return {
        "currentApprovalStatus": r["ApprovalStatusCode"],
        "reportId": r["ID"],
        "stepCode": spec["step"],
        "lastModifiedDate": iso_z(now),
        "userId": owner.uuid,
        "reportType": "Regular",
        "previousPaymentStatus": prev_payment,
        "companyId": company.id,
        "processId": r["_process"],
        "currentPaymentStatus": r["PaymentStatusCode"],
        "startingStep": {
            "roleCode": spec["step"] or "MANAGER",
            "stepInstances": [{"id": random_hex(length=32), "assignedUserId": None}],
        },
        "previousApprovalStatus": prev_approval,
        "actingUserId": None,
        "href": f"{geo_url}/expensereports/v4/users/{owner.uuid}/context/TRAVELER/reports/{r['ID']}",
    }
