"""Money as ``Decimal`` with each currency's precision, and splitting that never loses a cent.

Floats never touch an amount: vendor JSON numbers are parsed with ``Decimal(str(value))`` (or
``parse_float=Decimal``) and every total is computed in minor units of the currency.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

#: ISO 4217 minor units for currencies that are not 2-decimal. Zoho reports
#: ``price_precision`` per currency too; pass it explicitly when known.
_MINOR_UNITS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}


def precision(currency: str, override: int | None = None) -> int:
    """Decimal places of ``currency`` (ISO code); 2 unless ISO 4217 says otherwise."""
    if override is not None:
        return override
    return _MINOR_UNITS.get(currency.upper(), 2)


#: No vendor amount, rate or quantity reaches a quadrillion; a value that does is malformed
#: input (and would overflow the 28-digit decimal context once quantized).
MAX_MAGNITUDE = Decimal("1e15")

#: Room for products of in-range values (rate x quantity) when they are rounded.
_WIDE = Context(prec=60)


def to_decimal(value: object) -> Decimal:
    """Parse a vendor amount exactly; ``1.1`` the float becomes ``Decimal('1.1')``, not 1.1000000000000000888.

    Raises ``ValueError`` for anything that is not a number, and for a finite number of a
    quadrillion or more (``MAX_MAGNITUDE``).
    """
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, bool) or value is None:
        raise ValueError(f"not an amount: {value!r}")
    else:
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValueError(f"not an amount: {value!r}") from exc
    if amount.is_finite() and abs(amount) >= MAX_MAGNITUDE:
        raise ValueError(f"amount out of range: {value!r}")
    return amount


def quantize(amount: Decimal, currency: str, places: int | None = None) -> Decimal:
    """Round half-up to the currency's precision (the rounding accountants expect)."""
    exp = Decimal(1).scaleb(-precision(currency, places))
    return amount.quantize(exp, rounding=ROUND_HALF_UP, context=_WIDE)


def format_amount(amount: Decimal, currency: str, places: int | None = None) -> str:
    """A decimal string with exactly the currency's places (``"12.30"``, ``"1200"`` for JPY)."""
    return f"{quantize(amount, currency, places):f}"


def split(
    total: Decimal, weights: Sequence[Decimal], currency: str, places: int | None = None
) -> list[Decimal]:
    """Split ``total`` by ``weights`` into rounded parts that add up to ``total`` exactly.

    Largest-remainder method: every part is rounded down to the currency's unit, then the units
    left over go one each to the parts with the largest remainders (ties: earliest first). So
    100.00 split three ways by 33.33/33.33/33.34 % is 33.33 + 33.33 + 33.34, and 0.01 split three
    ways is 0.01 + 0 + 0: deterministic, never off by a cent.
    """
    if not weights:
        raise ValueError("nothing to split into")
    weight_sum = sum(weights, Decimal(0))
    if weight_sum <= 0:
        raise ValueError("weights must add up to more than zero")
    unit = Decimal(1).scaleb(-precision(currency, places))
    total = quantize(total, currency, places)
    total_units = int((total / unit).to_integral_value())
    sign = -1 if total_units < 0 else 1
    remaining = abs(total_units)
    exact = [abs(total_units) * w / weight_sum for w in weights]
    floors = [int(e) for e in exact]
    leftover = remaining - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:leftover]:
        floors[i] += 1
    return [sign * units * unit for units in floors]
