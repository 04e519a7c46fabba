"""What the expenses mapping needs to know about the Zoho organization: accounts, reporting
tags, currencies (docs/expenses-mapping.md).

The flow reads these once per run and hands them over as plain values, so the mapping stays
pure and a test builds them from literals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mappings import money


@dataclass(frozen=True)
class ZohoAccount:
    """One row of ``GET /chartofaccounts``."""

    account_id: str
    account_name: str
    account_type: str
    is_active: bool = True
    account_code: str | None = None


@dataclass(frozen=True)
class ZohoTagOption:
    """One option of a reporting tag."""

    option_id: str
    option_name: str
    is_active: bool = True


@dataclass(frozen=True)
class ZohoTag:
    """A reporting tag with its options by exact name."""

    tag_id: str
    tag_name: str
    options: Mapping[str, ZohoTagOption] = field(default_factory=dict)
    is_active: bool = True
    is_mandatory: bool = False


@dataclass(frozen=True)
class ZohoCurrency:
    """An enabled currency of the organization (``GET /settings/currencies``)."""

    currency_id: str
    currency_code: str
    precision: int = 2


@dataclass(frozen=True)
class ZohoLookups:
    """What the mapping needs to know about the live organization; the flow fills it.

    Pure data so tests build it directly. ``accounts`` is keyed by ``account_id``; rules name
    accounts by exact ``account_name`` (an ``account_id`` also works).
    """

    accounts: Mapping[str, ZohoAccount]
    tags: Mapping[str, ZohoTag]
    currencies: Mapping[str, ZohoCurrency]
    base_currency: str

    @cached_property
    def accounts_by_name(self) -> Mapping[str, tuple[ZohoAccount, ...]]:
        """Accounts by exact name (a tuple, so a duplicated name is reported, not guessed)."""
        out: dict[str, tuple[ZohoAccount, ...]] = {}
        for acc in self.accounts.values():
            out[acc.account_name] = (*out.get(acc.account_name, ()), acc)
        return out

    @classmethod
    def from_api(
        cls,
        *,
        accounts: Iterable[Mapping[str, Any]],
        tags: Iterable[Mapping[str, Any]],
        currencies: Iterable[Mapping[str, Any]],
        base_currency: str | None = None,
    ) -> ZohoLookups:
        """Build from Zoho's list responses (``chartofaccounts``, reporting tags with their
        ``options``, ``currencies``); the base currency is the one with ``is_base_currency``.

        Tag options are read as ``option_id``/``option_name`` (the ``/reportingtags`` shape,
        UNCONFIRMED for Books) or ``tag_option_id``/``tag_option_name`` (the transaction shape).

        Raises:
            ValueError: no base currency given or marked.
        """
        accs = {
            str(a["account_id"]): ZohoAccount(
                account_id=str(a["account_id"]),
                account_name=str(a["account_name"]),
                account_type=str(a.get("account_type") or ""),
                is_active=bool(a.get("is_active", True)),
                account_code=str(a["account_code"]) if a.get("account_code") else None,
            )
            for a in accounts
        }
        tag_map: dict[str, ZohoTag] = {}
        for t in tags:
            options = {}
            for o in t.get("options") or ():
                oid = str(o.get("option_id") or o.get("tag_option_id") or "")
                oname = str(o.get("option_name") or o.get("tag_option_name") or "")
                options[oname] = ZohoTagOption(oid, oname, bool(o.get("is_active", True)))
            tag_map[str(t["tag_name"])] = ZohoTag(
                tag_id=str(t["tag_id"]),
                tag_name=str(t["tag_name"]),
                options=options,
                is_active=bool(t.get("is_active", True)),
                is_mandatory=bool(t.get("is_mandatory", False)),
            )
        ccys: dict[str, ZohoCurrency] = {}
        for c in currencies:
            code = str(c["currency_code"]).upper()
            ccys[code] = ZohoCurrency(
                currency_id=str(c["currency_id"]),
                currency_code=code,
                precision=int(c.get("price_precision", money.precision(code))),
            )
            if base_currency is None and c.get("is_base_currency"):
                base_currency = code
        if not base_currency:
            raise ValueError("the organization's base currency is unknown")
        return cls(
            accounts=accs, tags=tag_map, currencies=ccys, base_currency=base_currency.upper()
        )
