"""The Zoho organization's lists and exchange rates as the expenses flow reads them, cached.

Every report of a month's run needs the same chart of accounts, tags and currencies, and most
need the same day's rate; reading them per report would spend the Zoho daily quota on repeats.
The caches are per process and short-lived, and a miss reloads once so an account the
accountant just added is seen.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from connector.zoho.catalog import ZohoCatalog
from connector.zoho.client import ZohoBooksClient
from mappings.expenses_lookups import ZohoLookups

#: Zoho lists (chart of accounts, tags, currencies) are re-read after this long at the latest.
LOOKUPS_MAX_AGE = 900.0
#: A day's exchange rate is re-read after this long (the accountant may correct it).
RATE_MAX_AGE = 3600.0


_lock = threading.Lock()
_currencies: dict[str, tuple[float, list[dict[str, Any]]]] = {}
_rates: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}


def _org_key(client: ZohoBooksClient) -> str:
    return f"{client.base_url}|{client.organization_id}"


def clear_caches() -> None:
    """Forget cached currencies and exchange rates (tests)."""
    with _lock:
        _currencies.clear()
        _rates.clear()


def lookups(client: ZohoBooksClient, *, reload: bool = False) -> ZohoLookups:
    """The organization's accounts, tags (with options) and currencies, cached per process."""
    lists = ZohoCatalog(client).lists(reload=reload)
    key = _org_key(client)
    with _lock:
        cached = _currencies.get(key)
    if cached is None or reload or time.monotonic() - cached[0] > LOOKUPS_MAX_AGE:
        currencies = list(client.currencies.iter_all())
        with _lock:
            _currencies[key] = (time.monotonic(), currencies)
    else:
        currencies = cached[1]
    return ZohoLookups.from_api(
        accounts=lists["accounts"], tags=lists["tags"], currencies=currencies
    )


def exchange_rate(
    client: ZohoBooksClient, lookups_: ZohoLookups, code: str, day: dt.date
) -> dict[str, Any] | None:
    """Zoho's rate for ``code`` on ``day``: base-currency units per unit of ``code``.

    Source: ``GET /settings/currencies/{id}/exchangerates?from_date=`` (the rate effective on
    the journal date or the closest before it); when Zoho has none, the currency's current
    ``exchange_rate`` from ``GET /settings/currencies``. Cached per currency and day.
    """
    currency = lookups_.currencies.get(code)
    if currency is None:
        return None
    key = (_org_key(client), currency.currency_id, day.isoformat())
    with _lock:
        cached = _rates.get(key)
    if cached is not None and time.monotonic() - cached[0] < RATE_MAX_AGE:
        return cached[1]
    found = client.exchange_rates.on_or_before(currency.currency_id, day.isoformat())
    info: dict[str, Any] | None
    if found is not None:
        info = {
            "rate": str(found["rate"]),
            "source": "zoho:exchangerates",
            "effective_date": str(found.get("effective_date") or "")[:10],
            "exchange_rate_id": str(found.get("exchange_rate_id") or ""),
        }
    else:
        with _lock:
            listed = _currencies.get(_org_key(client), (0.0, []))[1]
        row = next((c for c in listed if str(c.get("currency_code")).upper() == code), None)
        info = None
        if row is not None and row.get("exchange_rate") not in (None, "", 0):
            info = {
                "rate": str(row["exchange_rate"]),
                "source": "zoho:currency",
                "effective_date": str(row.get("effective_date") or "")[:10],
            }
    if info is not None:
        with _lock:
            _rates[key] = (time.monotonic(), info)
    return info
