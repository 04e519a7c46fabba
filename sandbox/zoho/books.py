"""Zoho Books API v3 under ``{base}/zoho/<dc>/api/books/v3``.

Every request goes through ``_guard``: token (``Authorization: Zoho-oauthtoken``) valid in this
data centre, required scope, ``organization_id`` visible to the token's user, the per-minute
window and the daily quota, in that order. Errors use Zoho's ``{code, message}`` envelope.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, g, request
from werkzeug.wrappers import Response

from sandbox.zoho import errors as E
from sandbox.zoho.dc import DATA_CENTRES
from sandbox.zoho.errors import ZohoError, zoho_json
from sandbox.zoho.journals import _check_tags, build_journal
from sandbox.zoho.records import (
    ACCOUNT_LIST_FIELDS,
    BILL_LIST_FIELDS,
    CONTACT_LIST_FIELDS,
    INVOICE_LIST_FIELDS,
    JOURNAL_LIST_FIELDS,
    build_contact,
    project,
)
from sandbox.zoho.webhooks import fire

if TYPE_CHECKING:
    from sandbox.state import SandboxState
    from sandbox.zoho.store import AccessToken, Org, Rec, ZohoStore

bp = Blueprint("zoho_books", __name__, url_prefix="/zoho/<dc>/api/books/v3")

MAX_PER_PAGE = 200


def _state() -> SandboxState:
    return current_app.extensions["sandbox"]  # type: ignore[no-any-return]


def _store() -> ZohoStore:
    return _state().zoho


@bp.url_value_preprocessor
def _pop_dc(endpoint: str | None, values: dict[str, Any] | None) -> None:
    g.zoho_dc = (values or {}).pop("dc", None)


@bp.url_defaults
def _add_dc(endpoint: str, values: dict[str, Any]) -> None:
    values.setdefault("dc", g.get("zoho_dc"))


@bp.errorhandler(ZohoError)
def _zoho_error(exc: ZohoError) -> Response:
    return E.error_response(exc.status, exc.code, exc.message)


@bp.after_request
def _rate_headers(response: Response) -> Response:
    quota = g.get("zoho_quota")
    if quota is not None:
        limit, remaining, reset = quota
        response.headers["X-Rate-Limit-Limit"] = str(limit)
        response.headers["X-Rate-Limit-Remaining"] = str(remaining)
        response.headers["X-Rate-Limit-Reset"] = str(reset)
    return response


@bp.after_request
def _latency(response: Response) -> Response:
    """The simulated processing time of an admitted call: after the view (views run under the
    state lock, which must not be held while waiting), before its in-flight slot is freed."""
    if g.get("zoho_in_flight") is not None:
        latency = float(_store().settings.get("latency") or 0.0)
        if latency > 0:
            time.sleep(latency)
    return response


@bp.teardown_request
def _leave(_exc: BaseException | None) -> None:
    org_id = g.pop("zoho_in_flight", None)
    if org_id is not None:
        _store().leave(org_id)


def _scope_ok(at: AccessToken, scope: str) -> bool:
    module, op = scope.lower().split(".")
    s = at.scopes
    return (
        "zohobooks.fullaccess.all" in s
        or f"zohobooks.{module}.{op}" in s
        or f"zohobooks.{module}.all" in s
    )


def _guard(scope: str, *, org_required: bool = True) -> tuple[ZohoStore, AccessToken, Org | None]:
    store = _store()
    dc = g.get("zoho_dc")
    if dc not in DATA_CENTRES:
        raise ZohoError(404, E.INVALID_URL, "Invalid URL Passed")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "zoho-oauthtoken" or not token.strip():
        raise E.not_authorized()
    with store.state.lock:
        at = store.authenticate(dc, token.strip())
        if at is None or not _scope_ok(at, scope):
            raise E.not_authorized()
        if not org_required:
            return store, at, None
        org_id = request.args.get("organization_id", "").strip()
        org = store.orgs.get(org_id)
        user = store.users.get(at.user_id)
        if org is None or org.dc != dc or user is None or org_id not in user.org_ids:
            raise E.not_authorized()
        g.sandbox_tenant = f"zoho:{org_id}"
        if not store.enter(org):
            store.state.stats.record_429(g.sandbox_tenant)
            raise ZohoError(429, E.RATE_LIMITED, E.CONCURRENCY_MESSAGE)
        g.zoho_in_flight = org_id  # released by _leave when the request ends, however it ends
        key = org_id
        if not store.minute_window.hit(key):
            g.zoho_quota = store.daily_state(org)
            store.state.stats.record_429(g.sandbox_tenant)
            raise ZohoError(429, E.RATE_LIMITED, E.RATE_LIMITED_MESSAGE)
        limit, remaining, reset = store.daily_state(org)
        if remaining <= 0:
            g.zoho_quota = (limit, 0, reset)
            store.state.stats.record_429(g.sandbox_tenant)
            raise ZohoError(429, E.RATE_LIMITED, E.DAILY_LIMIT_MESSAGE)
        org.daily_used += 1
        g.zoho_quota = (limit, remaining - 1, reset)
        return store, at, org


# --- request parsing ------------------------------------------------------------------


def parse_body() -> Any:
    """JSON body, or a form/query ``JSONString`` field (older clients); both are Zoho styles."""
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raw = request.form.get("JSONString")
        if raw is None:
            raw = request.args.get("JSONString")
        if raw is None:
            raise ZohoError(400, E.INVALID_BODY, "JSONString is required")
        what = "JSONString"
    else:
        data = request.get_data(as_text=True)
        if not data.strip() and "JSONString" in request.args:
            data, what = request.args["JSONString"], "JSONString"
        else:
            what = "the JSON request body"
        raw = data
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ZohoError(400, E.INVALID_BODY, f"Invalid value passed for {what}") from None


def _int_param(name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise E.invalid_param(name) from None
    if value < lo or (hi is not None and value > hi):
        raise E.invalid_param(name)
    return value


def parse_time(org: Org, raw: str, name: str) -> float:
    """Accept ``2013-11-18T02:17:40-0800`` and its variants (``+05:30``, ``Z``, naive, date)."""
    text = raw.strip()
    if len(text) > 19 and text[19] == " ":  # an unencoded "+" arrives as a space
        text = text[:19] + "+" + text[20:]
    tz = ZoneInfo(org.time_zone)
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            pass
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=tz).timestamp()
        except ValueError:
            pass
    try:
        d = datetime.strptime(text, "%Y-%m-%d").date()
        return datetime.combine(d, dtime(0), tz).timestamp()
    except ValueError:
        raise E.invalid_param(name) from None


# --- list machinery -------------------------------------------------------------------

Pred = Callable[["Rec"], bool]


def _field_test(field: str, op: str, value: str) -> Pred:
    """One comparison on a record field; ``op`` is eq, startswith, contains, ge, le, lt or gt."""
    if op in ("startswith", "contains"):
        low = value.lower()
        if op == "startswith":
            return lambda r: str(r.data.get(field, "")).lower().startswith(low)
        return lambda r: low in str(r.data.get(field, "")).lower()
    compare: dict[str, Callable[[str], bool]] = {
        "eq": lambda x: x == value,
        "ge": lambda x: x >= value,
        "le": lambda x: x <= value,
        "lt": lambda x: x < value,
        "gt": lambda x: x > value,
    }
    test = compare[op]
    return lambda r: test(str(r.data.get(field, "")))


def _text_filters(field: str, param: str | None = None) -> list[Pred]:
    param = param or field
    preds: list[Pred] = []
    for suffix, op in (("", "eq"), ("_startswith", "startswith"), ("_contains", "contains")):
        value = request.args.get(f"{param}{suffix}")
        if value:
            preds.append(_field_test(field, op, value))
    return preds


def _date_filters(field: str) -> list[Pred]:
    preds: list[Pred] = []
    ops = (
        ("date", "eq"),
        ("date_start", "ge"),
        ("date_end", "le"),
        ("date_before", "lt"),
        ("date_after", "gt"),
    )
    for param, op in ops:
        value = request.args.get(param)
        if value:
            preds.append(_field_test(field, op, value))
    return preds


def _modified_filter(org: Org, *, exact: bool = False) -> list[Pred]:
    raw = request.args.get("last_modified_time")
    if not raw:
        return []
    since = parse_time(org, raw, "last_modified_time")
    if exact:
        # Observed on journals (Hotglue tap): the filter matches "equal to", not "after".
        return [lambda r: int(r.mtime) == int(since)]
    return [lambda r: r.mtime >= since]


def _search(fields: tuple[str, ...]) -> list[Pred]:
    text = request.args.get("search_text")
    if not text:
        return []
    t = text.lower()
    return [lambda r: any(t in str(r.data.get(f, "")).lower() for f in fields)]


def _sort_and_page(
    org: Org,
    resource: str,
    preds: list[Pred],
    sortable: tuple[str, ...],
    fields: tuple[str, ...],
    key: str,
) -> Response:
    page = _int_param("page", 1, 1)
    per_page = _int_param("per_page", MAX_PER_PAGE, 1, MAX_PER_PAGE)
    sort_column = request.args.get("sort_column") or "created_time"
    if sort_column not in sortable:
        raise E.invalid_param("sort_column")
    order = (request.args.get("sort_order") or "D").upper()
    if order not in ("A", "D", "ASCENDING", "DESCENDING"):
        raise E.invalid_param("sort_order")
    descending = order.startswith("D")
    cache_key = (
        resource,
        tuple(
            sorted(
                (k, v)
                for k, v in request.args.items(multi=True)
                if k not in ("page", "per_page", "organization_id")
            )
        ),
    )
    version = org.versions.get(resource, 0)
    cached = org.list_cache.get(cache_key)
    if cached is not None and cached[0] == version:
        ids = cached[1]
        org.list_cache.move_to_end(cache_key)
    else:
        coll = org.collection(resource)
        recs = [(rid, r) for rid, r in coll.items() if all(p(r) for p in preds)]
        if sort_column == "created_time":
            recs.sort(key=lambda x: (x[1].ctime, x[0]), reverse=descending)
        elif sort_column == "last_modified_time":
            recs.sort(key=lambda x: (x[1].mtime, x[0]), reverse=descending)
        else:
            recs.sort(
                key=lambda x: (_sort_value(x[1].data.get(sort_column)), x[0]), reverse=descending
            )
        ids = [rid for rid, _ in recs]
        org.list_cache[cache_key] = (version, ids)
        while len(org.list_cache) > 64:
            org.list_cache.popitem(last=False)
    start = (page - 1) * per_page
    coll = org.collection(resource)
    items = [project(coll[i].data, fields) for i in ids[start : start + per_page] if i in coll]
    filters = {
        k: v for k, v in request.args.items() if k not in ("organization_id", "page", "per_page")
    }
    return zoho_json(
        {
            "code": 0,
            "message": "success",
            key: items,
            "page_context": {
                "page": page,
                "per_page": per_page,
                "has_more_page": start + per_page < len(ids),
                "report_name": key.capitalize(),
                "applied_filter": request.args.get("filter_by", "Status.All"),
                "sort_column": sort_column,
                "sort_order": "D" if descending else "A",
                "search_criteria": [
                    {"column_name": k, "search_text": v, "comparator": "equal"}
                    for k, v in filters.items()
                    if k not in ("filter_by", "sort_column", "sort_order")
                ],
            },
        }
    )


def _sort_value(v: Any) -> Any:
    if isinstance(v, (int, float)):
        return (0, v, "")
    return (1, 0, str(v or "").lower())


def _status_filter(mapping: dict[str, Callable[[str], bool]]) -> list[Pred]:
    preds: list[Pred] = []
    status = request.args.get("status")
    if status:
        if status == "unpaid":
            preds.append(
                lambda r: (
                    r.data.get("status") in ("sent", "overdue", "partially_paid", "viewed", "open")
                )
            )
        else:
            preds.append(_field_test("status", "eq", status))
    fb = request.args.get("filter_by")
    if fb and fb != "Status.All":
        test = mapping.get(fb)
        if test is None:
            raise E.invalid_param("filter_by")
        preds.append(lambda r: test(str(r.data.get("status"))))
    return preds


def _get(org: Org, resource: str, rid: str, entity: str) -> Rec:
    rec = org.collection(resource).get(rid)
    if rec is None:
        raise E.does_not_exist(entity)
    return rec


def _locked(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Run the rest of a view under the state lock so lists never see a half-written store."""

    def wrapper(*args: Any, **kwargs: Any) -> Response:
        with _state().lock:
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    return wrapper


# --- organizations --------------------------------------------------------------------


@bp.get("/organizations")
def list_organizations() -> Response:
    store, at, _ = _guard("settings.READ", org_required=False)
    with store.state.lock:
        user = store.users[at.user_id]
        orgs = [store.orgs[o].data for o in user.org_ids if o in store.orgs]
        return zoho_json({"code": 0, "message": "success", "organizations": orgs})


@bp.get("/organizations/<org_id>")
def get_organization(org_id: str) -> Response:
    store, at, _ = _guard("settings.READ", org_required=False)
    with store.state.lock:
        user = store.users[at.user_id]
        org = store.orgs.get(org_id)
        if org is None or org_id not in user.org_ids or org.dc != g.zoho_dc:
            raise E.not_authorized()
        return zoho_json({"code": 0, "message": "success", "organization": org.data})


# --- invoices and bills ---------------------------------------------------------------

BILL_STATUS = {
    "Status.Open": lambda s: s == "open",
    "Status.Paid": lambda s: s == "paid",
    "Status.Overdue": lambda s: s == "overdue",
    "Status.Void": lambda s: s == "void",
    "Status.PartiallyPaid": lambda s: s == "partially_paid",
    "Status.Draft": lambda s: s == "draft",
    "Status.Pending": lambda s: s in ("open", "overdue", "partially_paid"),
}
INVOICE_STATUS = {
    "Status.Sent": lambda s: s == "sent",
    "Status.Draft": lambda s: s == "draft",
    "Status.OverDue": lambda s: s == "overdue",
    "Status.Paid": lambda s: s == "paid",
    "Status.Void": lambda s: s == "void",
    "Status.PartiallyPaid": lambda s: s == "partially_paid",
    "Status.Viewed": lambda s: s == "viewed",
    "Status.Unpaid": lambda s: s in ("sent", "overdue", "partially_paid", "viewed"),
}


@bp.get("/bills")
@_locked
def list_bills() -> Response:
    _, _, org = _guard("bills.READ")
    assert org is not None
    preds = [
        *_text_filters("bill_number"),
        *_text_filters("reference_number"),
        *_text_filters("vendor_name"),
        *_text_filters("vendor_id"),
        *_date_filters("date"),
        *_status_filter(BILL_STATUS),
        *_modified_filter(org),
        *_search(("bill_number", "reference_number", "vendor_name")),
    ]
    sortable = (
        "created_time",
        "last_modified_time",
        "vendor_name",
        "bill_number",
        "date",
        "due_date",
        "total",
        "balance",
    )
    return _sort_and_page(org, "bills", preds, sortable, BILL_LIST_FIELDS, "bills")


@bp.get("/bills/<bill_id>")
@_locked
def get_bill(bill_id: str) -> Response:
    _, _, org = _guard("bills.READ")
    assert org is not None
    rec = _get(org, "bills", bill_id, "Bill")
    return zoho_json({"code": 0, "message": "success", "bill": rec.data})


@bp.get("/invoices")
@_locked
def list_invoices() -> Response:
    _, _, org = _guard("invoices.READ")
    assert org is not None
    preds = [
        *_text_filters("invoice_number"),
        *_text_filters("reference_number"),
        *_text_filters("customer_name"),
        *_text_filters("customer_id"),
        *_date_filters("date"),
        *_status_filter(INVOICE_STATUS),
        *_modified_filter(org),
        *_search(("invoice_number", "reference_number", "customer_name")),
    ]
    sortable = (
        "created_time",
        "last_modified_time",
        "customer_name",
        "invoice_number",
        "date",
        "due_date",
        "total",
        "balance",
    )
    return _sort_and_page(org, "invoices", preds, sortable, INVOICE_LIST_FIELDS, "invoices")


@bp.get("/invoices/<invoice_id>")
@_locked
def get_invoice(invoice_id: str) -> Response:
    _, _, org = _guard("invoices.READ")
    assert org is not None
    rec = _get(org, "invoices", invoice_id, "Invoice")
    return zoho_json({"code": 0, "message": "success", "invoice": rec.data})


# --- contacts -------------------------------------------------------------------------

CONTACT_STATUS = {
    "Status.Active": lambda s: s == "active",
    "Status.Inactive": lambda s: s == "inactive",
    "Status.Customers": lambda s: True,
    "Status.Vendors": lambda s: True,
}


def _contact_preds(org: Org) -> list[Pred]:
    preds: list[Pred] = []
    ctype = request.args.get("contact_type")
    if ctype:
        if ctype not in ("customer", "vendor"):
            raise E.invalid_param("contact_type")
        preds.append(lambda r: r.data.get("contact_type") == ctype)
    fb = request.args.get("filter_by")
    if fb == "Status.Duplicate":
        counts: dict[str, int] = {}
        for r in org.contacts.values():
            k = " ".join(str(r.data["contact_name"]).lower().split())
            counts[k] = counts.get(k, 0) + 1
        preds.append(lambda r: counts[" ".join(str(r.data["contact_name"]).lower().split())] > 1)
    elif fb and fb != "Status.All":
        test = CONTACT_STATUS.get(fb)
        if test is None:
            raise E.invalid_param("filter_by")
        preds.append(lambda r: test(str(r.data.get("status"))))
        if fb in ("Status.Customers", "Status.Vendors"):
            want = "customer" if fb == "Status.Customers" else "vendor"
            preds.append(lambda r: r.data.get("contact_type") == want)
    for f in ("contact_name", "company_name", "email", "phone", "first_name", "last_name"):
        preds += _text_filters(f)
    preds += _modified_filter(org)
    preds += _search(("contact_name", "company_name", "notes"))
    return preds


@bp.get("/contacts")
@_locked
def list_contacts() -> Response:
    _, _, org = _guard("contacts.READ")
    assert org is not None
    sortable = (
        "created_time",
        "last_modified_time",
        "contact_name",
        "company_name",
        "email",
        "outstanding_receivable_amount",
        "first_name",
        "last_name",
    )
    return _sort_and_page(
        org, "contacts", _contact_preds(org), sortable, CONTACT_LIST_FIELDS, "contacts"
    )


@bp.get("/contacts/<contact_id>")
@_locked
def get_contact(contact_id: str) -> Response:
    _, _, org = _guard("contacts.READ")
    assert org is not None
    rec = _get(org, "contacts", contact_id, "Contact")
    return zoho_json({"code": 0, "message": "success", "contact": rec.data})


CONTACT_EDITABLE = (
    "contact_name",
    "company_name",
    "contact_type",
    "customer_sub_type",
    "currency_id",
    "payment_terms",
    "payment_terms_label",
    "contact_number",
    "website",
    "notes",
    "billing_address",
    "shipping_address",
    "contact_persons",
    "custom_fields",
    "tags",
    "vat_reg_no",
    "tax_reg_no",
    "gst_no",
    "gst_treatment",
    "tax_id",
    "track_1099",
)


def validate_contact(org: Org, body: Any, *, partial: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ZohoError(400, E.INVALID_BODY, "The request body must be a JSON object.")
    if not partial or "contact_name" in body:
        name = body.get("contact_name")
        if name is None or (isinstance(name, str) and not name.strip()):
            raise E.missing("contact_name")
        if not isinstance(name, str):
            raise E.invalid_value("contact_name")
        if len(name) > 200:
            raise E.invalid_value("contact_name", "at most 200 characters")
    if body.get("contact_type") not in (None, "", "customer", "vendor"):
        raise E.invalid_value("contact_type", "allowed values are customer and vendor")
    if body.get("currency_id") not in (None, "") and str(body["currency_id"]) not in org.currencies:
        raise ZohoError(400, E.CURRENCY_NOT_FOUND, "The currency does not exist.")
    if "payment_terms" in body and body["payment_terms"] not in (None, ""):
        try:
            if int(body["payment_terms"]) < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise E.invalid_value("payment_terms", "a whole number of days") from None
    for key in ("contact_persons", "custom_fields"):
        if key in body and not isinstance(body[key], list):
            raise E.invalid_value(key, "a list is required")
    for key in ("billing_address", "shipping_address"):
        if key in body and not isinstance(body[key], dict):
            raise E.invalid_value(key, "an object is required")
    _check_tags(org, body.get("tags"), "contact")
    return {k: body[k] for k in CONTACT_EDITABLE if k in body}


def create_contact_record(
    store: ZohoStore, org: Org, body: dict[str, Any], *, via: str
) -> dict[str, Any]:
    clean = validate_contact(org, body, partial=False)
    ts = store.now()
    data = build_contact(org, org.next_id(), clean, org.time(ts))
    store.put_record(org, "contacts", data, ts=ts)
    store.record_created(org, "contacts", data["contact_id"], via)
    if via != "api" or store.settings["webhooks_on_api_writes"]:
        fire(store, org, "contact", data, "created")
    return data


def update_contact_record(
    store: ZohoStore, org: Org, rec: Rec, body: dict[str, Any], *, via: str
) -> dict[str, Any]:
    clean = validate_contact(org, body, partial=True)
    old = rec.data
    merged = {k: old[k] for k in CONTACT_EDITABLE if k in old and k != "tags"}
    merged["tags"] = [
        {"tag_id": t["tag_id"], "tag_option_id": t["tag_option_id"]} for t in old.get("tags", [])
    ]
    if "payment_terms" in clean and "payment_terms_label" not in clean:
        merged.pop("payment_terms_label", None)
    merged.update(clean)
    data = build_contact(org, old["contact_id"], merged, old["created_time"])
    data["status"] = old.get("status", "active")
    data["has_transaction"] = old.get("has_transaction", False)
    rec.data = data
    store.modify_record(org, "contacts", rec)
    store.updated.append(
        {
            "organization_id": org.organization_id,
            "kind": "contacts",
            "id": data["contact_id"],
            "via": via,
        }
    )
    if via != "api" or store.settings["webhooks_on_api_writes"]:
        fire(store, org, "contact", data, "updated")
    return data


@bp.post("/contacts")
@_locked
def create_contact() -> Response:
    store, _, org = _guard("contacts.CREATE")
    assert org is not None
    data = create_contact_record(store, org, parse_body(), via="api")
    return zoho_json({"code": 0, "message": "The contact has been created", "contact": data}, 201)


@bp.put("/contacts/<contact_id>")
@_locked
def update_contact(contact_id: str) -> Response:
    store, _, org = _guard("contacts.UPDATE")
    assert org is not None
    rec = _get(org, "contacts", contact_id, "Contact")
    data = update_contact_record(store, org, rec, parse_body(), via="api")
    return zoho_json(
        {"code": 0, "message": "Contact has been updated successfully", "contact": data}
    )


# --- chart of accounts, currencies, reporting tags ------------------------------------

ACCOUNT_GROUPS = {
    "AccountType.Asset": {
        "other_asset",
        "other_current_asset",
        "cash",
        "bank",
        "fixed_asset",
        "accounts_receivable",
        "stock",
        "payment_clearing_account",
        "input_tax",
        "intangible_asset",
        "right_to_use_asset",
        "financial_asset",
        "contingent_asset",
        "contract_asset",
    },
    "AccountType.Liability": {
        "other_current_liability",
        "credit_card",
        "long_term_liability",
        "other_liability",
        "accounts_payable",
        "output_tax",
        "contract_liability",
        "refund_liability",
        "loans_and_borrowing",
        "lease_liability",
        "employee_benefit_liability",
        "contingent_liability",
        "financial_liability",
    },
    "AccountType.Equity": {"equity"},
    "AccountType.Income": {
        "income",
        "other_income",
        "finance_income",
        "other_comprehensive_income",
    },
    "AccountType.Expense": {
        "expense",
        "cost_of_goods_sold",
        "other_expense",
        "manufacturing_expense",
        "impairment_expense",
        "depreciation_expense",
        "employee_benefit_expense",
        "lease_expense",
        "finance_expense",
        "tax_expense",
    },
}


def _plain_page(items: list[dict[str, Any]], key: str) -> Response:
    page = _int_param("page", 1, 1)
    per_page = _int_param("per_page", MAX_PER_PAGE, 1, MAX_PER_PAGE)
    start = (page - 1) * per_page
    return zoho_json(
        {
            "code": 0,
            "message": "success",
            key: items[start : start + per_page],
            "page_context": {
                "page": page,
                "per_page": per_page,
                "has_more_page": start + per_page < len(items),
                "report_name": key,
                "applied_filter": request.args.get("filter_by", ""),
                "sort_column": request.args.get("sort_column", ""),
                "sort_order": request.args.get("sort_order", "A"),
            },
        }
    )


@bp.get("/chartofaccounts")
@_locked
def list_accounts() -> Response:
    _, _, org = _guard("accountants.READ")
    assert org is not None
    items = list(org.accounts.values())
    fb = request.args.get("filter_by")
    if fb == "AccountType.Active":
        items = [a for a in items if a["is_active"]]
    elif fb == "AccountType.Inactive":
        items = [a for a in items if not a["is_active"]]
    elif fb in ACCOUNT_GROUPS:
        items = [a for a in items if a["account_type"] in ACCOUNT_GROUPS[fb]]
    elif fb not in (None, "", "AccountType.All"):
        raise E.invalid_param("filter_by")
    if request.args.get("last_modified_time"):
        # Seeded accounts never change, so the filter is applied to their created time.
        since = parse_time(org, request.args["last_modified_time"], "last_modified_time")
        items = [a for a in items if parse_time(org, a["last_modified_time"], "x") >= since]
    col = request.args.get("sort_column", "account_name")
    if col not in ("account_name", "account_type"):
        raise E.invalid_param("sort_column")
    items.sort(
        key=lambda a: str(a[col]).lower(),
        reverse=request.args.get("sort_order", "A").upper().startswith("D"),
    )
    fields = (
        ACCOUNT_LIST_FIELDS
        if request.args.get("showbalance") == "true"
        else tuple(f for f in ACCOUNT_LIST_FIELDS if f != "current_balance")
    )
    return _plain_page([project(a, fields) for a in items], "chartofaccounts")


@bp.get("/chartofaccounts/<account_id>")
@_locked
def get_account(account_id: str) -> Response:
    _, _, org = _guard("accountants.READ")
    assert org is not None
    account = org.accounts.get(account_id)
    if account is None:
        raise E.does_not_exist("Account")
    # Zoho's chart-of-accounts.yml shows the account's fields at the top level of the envelope.
    return zoho_json(
        {
            "code": 0,
            "message": "success",
            **account,
            "custom_fields": [],
            "closing_balance": account["current_balance"],
        }
    )


@bp.get("/settings/currencies")
@_locked
def list_currencies() -> Response:
    _, _, org = _guard("settings.READ")
    assert org is not None
    items = list(org.currencies.values())
    fb = request.args.get("filter_by")
    if fb == "Currencies.ExcludeBaseCurrency":
        items = [c for c in items if not c["is_base_currency"]]
    elif fb not in (None, "", "Currencies.All"):
        raise E.invalid_param("filter_by")
    return _plain_page(items, "currencies")


@bp.get("/settings/currencies/<currency_id>")
@_locked
def get_currency(currency_id: str) -> Response:
    _, _, org = _guard("settings.READ")
    assert org is not None
    currency = org.currencies.get(currency_id)
    if currency is None:
        raise E.does_not_exist("Currency")
    return zoho_json({"code": 0, "message": "success", "currency": currency})


def _tag_summary(tag: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tag.items() if k != "options"}


@bp.get("/reportingtags")
@_locked
def list_tags() -> Response:
    _, _, org = _guard("settings.READ")
    assert org is not None
    return _plain_page([_tag_summary(t) for t in org.tags.values()], "tags")


@bp.get("/reportingtags/<tag_id>")
@_locked
def get_tag(tag_id: str) -> Response:
    _, _, org = _guard("settings.READ")
    assert org is not None
    tag = org.tags.get(tag_id)
    if tag is None:
        raise E.does_not_exist("Reporting tag")
    return zoho_json(
        {
            "code": 0,
            "message": "success",
            "reporting_tag": {**_tag_summary(tag), "tag_options": tag["options"]},
        }
    )


@bp.get("/reportingtags/<tag_id>/options/all")
@_locked
def list_tag_options(tag_id: str) -> Response:
    _, _, org = _guard("settings.READ")
    assert org is not None
    tag = org.tags.get(tag_id)
    if tag is None:
        raise E.does_not_exist("Reporting tag")
    untagged = {
        "option_id": "untagged",
        "option_name": "Untagged",
        "is_active": True,
        "is_default": False,
        "tag_id": tag_id,
    }
    options = [untagged, *tag["options"]]
    key = _store().settings.get("tag_options_key", "results")
    if key == "reporting_tag.options":
        return zoho_json(
            {
                "code": 0,
                "message": "success",
                "reporting_tag": {**_tag_summary(tag), "options": options},
            }
        )
    return zoho_json({"code": 0, "message": "success", key: options})


# --- journals -------------------------------------------------------------------------


@bp.post("/journals")
@_locked
def create_journal() -> Response:
    store, _, org = _guard("accountants.CREATE")
    assert org is not None
    body = parse_body()
    ts = store.now()
    data = build_journal(store, org, body, ts)
    store.put_record(org, "journals", data, ts=ts)
    store.record_created(org, "journals", data["journal_id"], "api")
    return zoho_json(
        {"code": 0, "message": "The journal entry has been created.", "journal": data}, 201
    )


@bp.get("/journals")
@_locked
def list_journals() -> Response:
    _, _, org = _guard("accountants.READ")
    assert org is not None
    preds: list[Pred] = []
    ref = request.args.get("reference_number")
    if ref not in (None, ""):
        ids = set(org.journals_by_ref.get(ref, ()))
        preds.append(lambda r: r.data["journal_id"] in ids)
    for suffix, op in (("_startswith", "startswith"), ("_contains", "contains")):
        value = request.args.get(f"reference_number{suffix}")
        if value:
            preds.append(_field_test("reference_number", op, value))
    preds += _text_filters("entry_number")
    preds += _text_filters("notes")
    preds += _date_filters("journal_date")
    preds += _modified_filter(org, exact=True)
    for param in ("customer_id", "vendor_id"):
        if request.args.get(param):
            preds.append(_has_contact(request.args[param]))
    if request.args.get("status"):
        preds.append(_field_test("status", "eq", request.args["status"]))
    sortable = (
        "created_time",
        "last_modified_time",
        "journal_date",
        "entry_number",
        "reference_number",
        "total",
    )
    return _sort_and_page(org, "journals", preds, sortable, JOURNAL_LIST_FIELDS, "journals")


def _has_contact(contact_id: str) -> Pred:
    return lambda r: any(li["customer_id"] == contact_id for li in r.data["line_items"])


@bp.get("/journals/<journal_id>")
@_locked
def get_journal(journal_id: str) -> Response:
    _, _, org = _guard("accountants.READ")
    assert org is not None
    rec = _get(org, "journals", journal_id, "Journal")
    return zoho_json({"code": 0, "message": "success", "journal": rec.data})


@bp.delete("/journals/<journal_id>")
@_locked
def delete_journal(journal_id: str) -> Response:
    _, _, org = _guard("accountants.DELETE")
    assert org is not None
    rec = _get(org, "journals", journal_id, "Journal")
    del org.journals[journal_id]
    ids = org.journals_by_ref.get(rec.data.get("reference_number") or "", [])
    if journal_id in ids:
        ids.remove(journal_id)
    org.touch("journals")
    return zoho_json({"code": 0, "message": "The selected journal entry has been deleted."})


# --- chart of accounts (create) and exchange rates ---------------------------------------
# Added for the expenses flow: an accountant adds a missing account (chart-of-accounts.yml
# ``create_account``) and the connector reads Zoho's rate for a journal date (currency.yml
# ``list_exchange_rates``).

_ACCOUNT_TYPES = frozenset(t for group in ACCOUNT_GROUPS.values() for t in group) | {
    "other_asset",
    "other_current_asset",
    "cash",
    "bank",
    "fixed_asset",
    "accounts_receivable",
}


@bp.post("/chartofaccounts")
@_locked
def create_account() -> Response:
    store, _, org = _guard("accountants.CREATE")
    assert org is not None
    body = parse_body()
    if not isinstance(body, dict):
        raise ZohoError(400, 4012, "Invalid JSON body")
    name = str(body.get("account_name") or "").strip()
    if not name:
        raise E.missing("account_name")
    acc_type = str(body.get("account_type") or "")
    if acc_type not in _ACCOUNT_TYPES:
        raise E.invalid_value("account_type")
    if any(a["account_name"].lower() == name.lower() for a in org.accounts.values()):
        raise ZohoError(400, 11002, f'The account name "{name}" already exists.')
    base = org.base_currency()
    ts = store.now()
    aid = org.next_id()
    account = {
        "account_id": aid,
        "account_name": name,
        "account_code": str(body.get("account_code") or ""),
        "account_type": acc_type,
        "description": str(body.get("description") or ""),
        "is_user_created": True,
        "is_system_account": False,
        "is_standalone_account": False,
        "is_active": True,
        "can_show_in_ze": False,
        "is_involved_in_transaction": False,
        "current_balance": 0.0,
        "currency_id": str(body.get("currency_id") or base["currency_id"]),
        "currency_code": base["currency_code"],
        "parent_account_id": "",
        "parent_account_name": "",
        "depth": 0,
        "has_attachment": False,
        "is_child_present": False,
        "child_count": "",
        "documents": [],
        "created_time": org.time(ts),
        "last_modified_time": org.time(ts),
    }
    org.accounts[aid] = account
    store.record_created(org, "accounts", aid, "api")
    return zoho_json(
        {"code": 0, "message": "The account has been created.", "chart_of_account": account}, 201
    )


def _rates(org: Org, currency: dict[str, Any]) -> list[dict[str, Any]]:
    implicit = {
        "exchange_rate_id": f"{currency['currency_id']}-0",
        "currency_id": currency["currency_id"],
        "currency_code": currency["currency_code"],
        "effective_date": str(currency.get("effective_date") or "")[:10],
        "rate": currency["exchange_rate"],
    }
    return [implicit, *org.exchange_rates.get(currency["currency_id"], [])]


@bp.get("/settings/currencies/<currency_id>/exchangerates")
@_locked
def list_exchange_rates(currency_id: str) -> Response:
    """Every rate, newest first; ``from_date`` keeps the one effective on that date (or the
    closest before it), as currency.yml describes."""
    _, _, org = _guard("settings.READ")
    assert org is not None
    currency = org.currencies.get(currency_id)
    if currency is None:
        raise E.does_not_exist("Currency")
    rates = [] if currency["is_base_currency"] else _rates(org, currency)
    rates.sort(key=lambda r: r["effective_date"], reverse=True)
    day = request.args.get("from_date")
    if day:
        _check_date_param(day, "from_date")
        rates = [r for r in rates if r["effective_date"] <= day][:1]
    return zoho_json({"code": 0, "message": "success", "exchange_rates": rates})


@bp.post("/settings/currencies/<currency_id>/exchangerates")
@_locked
def create_exchange_rate(currency_id: str) -> Response:
    store, _, org = _guard("settings.CREATE")
    assert org is not None
    currency = org.currencies.get(currency_id)
    if currency is None:
        raise E.does_not_exist("Currency")
    body = parse_body()
    if not isinstance(body, dict):
        raise ZohoError(400, 4012, "Invalid JSON body")
    day = str(body.get("effective_date") or "")
    _check_date_param(day, "effective_date")
    try:
        rate = float(body.get("rate"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise E.invalid_value("rate") from None
    if rate <= 0:
        raise E.invalid_value("rate", "must be greater than zero")
    entry = {
        "exchange_rate_id": org.next_id(),
        "currency_id": currency_id,
        "currency_code": currency["currency_code"],
        "effective_date": day,
        "rate": rate,
    }
    org.exchange_rates.setdefault(currency_id, []).append(entry)
    store.record_created(org, "exchange_rates", entry["exchange_rate_id"], "api")
    return zoho_json(
        {"code": 0, "message": "The exchange rate has been added.", "exchange_rate": entry}, 201
    )


def _check_date_param(value: str, name: str) -> None:
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise E.invalid_value(name, "use yyyy-mm-dd") from None


def http_error(exc: Any) -> Response:
    """Zoho-shaped 404/405 for unmatched URLs under ``/zoho/<dc>/api``."""
    if getattr(exc, "code", 404) == 405:
        return E.error_response(405, E.METHOD_NOT_ALLOWED, "The HTTP method is not allowed")
    return E.error_response(404, E.INVALID_URL, "Invalid URL Passed")
