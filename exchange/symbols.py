"""Instrument symbols: one human-readable scheme for futures, options and resale listings.

``<SKU>-<REGION>-<TERM>[-<C|P><STRIKE>]``

- ``SKU`` and ``REGION`` are the catalog codes (upper-case letters and digits);
- ``TERM`` is ``YYYYMM`` for a monthly delivery strip, ``R<n>`` for reserved block ``n`` listed
  before its term (the whole term), or for the block listed during its term ``R<n>-YYYYMM``
  from a month's start, ``R<n>-YYYYMMDD`` from another day (00:00 UTC), to the end of the term;
- options append ``C`` (call) or ``P`` (put) and the strike in $/GPU-hr, with at least two
  decimals: ``H100SXM-USEAST-202701-C2.50``.

Symbols contain only ``A-Z 0-9 - .`` so they go into URLs unescaped.
"""

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from exchange.errors import CatalogError, CatalogErrorCode

CODE_PATTERN = re.compile(r"^[A-Z0-9]{2,16}$")
SYMBOL_PATTERN = re.compile(
    r"^(?P<sku>[A-Z0-9]{2,16})-(?P<region>[A-Z0-9]{2,16})-"
    r"(?:(?P<month>\d{4}(?:0[1-9]|1[0-2]))"
    r"|R(?P<reservation>[1-9]\d*)"
    r"(?:-(?P<resale_month>\d{4}(?:0[1-9]|1[0-2]))(?P<resale_day>0[2-9]|[12]\d|3[01])?)?)"
    r"(?:-(?P<option_type>[CP])(?P<strike>\d+\.\d{2,6}))?$"
)


@dataclass(frozen=True)
class ParsedSymbol:
    sku: str
    region: str
    delivery_month: date | None
    reservation: int | None
    option_type: str | None
    strike: Decimal | None
    # A running block's listing from a day other than a month's first: that day (its month is
    # ``delivery_month``).
    resale_day: date | None = None


def _check_code(code: str) -> str:
    if not CODE_PATTERN.match(code):
        raise CatalogError(
            CatalogErrorCode.INVALID_SYMBOL,
            f"Code {code!r} must be 2-16 upper-case letters or digits.",
        )
    return code


def future_symbol(sku_code: str, region_code: str, delivery_month: date) -> str:
    return f"{_check_code(sku_code)}-{_check_code(region_code)}-{delivery_month:%Y%m}"


def strike_text(strike: Decimal) -> str:
    """The strike with at least two decimals and no trailing zeros beyond them."""
    normalized = strike.normalize()
    exponent = normalized.as_tuple().exponent
    assert isinstance(exponent, int)
    return f"{normalized:.{max(2, -exponent)}f}"


def option_symbol(future: str, option_type: str, strike: Decimal) -> str:
    letter = {"call": "C", "put": "P"}[option_type]
    return f"{future}-{letter}{strike_text(strike)}"


def resale_symbol(
    sku_code: str, region_code: str, reservation_id: int, from_day: date | None = None
) -> str:
    """Block ``reservation_id``'s listing: for its whole term, or from ``from_day`` on. A
    listing from a month's first day is named by its month alone, as before listings could
    start on other days; one from another day by the day."""
    term = f"R{reservation_id}"
    if from_day is not None:
        term += f"-{from_day:%Y%m}" if from_day.day == 1 else f"-{from_day:%Y%m%d}"
    return f"{_check_code(sku_code)}-{_check_code(region_code)}-{term}"


def parse_symbol(symbol: str) -> ParsedSymbol:
    match = SYMBOL_PATTERN.match(symbol)
    if not match:
        raise CatalogError(
            CatalogErrorCode.INVALID_SYMBOL,
            f"{symbol!r} is not an instrument symbol.",
            field="symbol",
        )
    month = match["month"] or match["resale_month"]
    option_type = match["option_type"]
    if option_type and not match["month"]:
        raise CatalogError(
            CatalogErrorCode.INVALID_SYMBOL,
            "Options exist only on monthly futures.",
            field="symbol",
        )
    # The pattern lets through year 0000, which no date has, and days a month lacks (31 April).
    try:
        delivery_month = date(int(month[:4]), int(month[4:]), 1) if month else None
        resale_day = None
        if match["resale_day"]:
            assert delivery_month is not None  # The pattern puts a day only after a month.
            resale_day = delivery_month.replace(day=int(match["resale_day"]))
    except ValueError:
        raise CatalogError(
            CatalogErrorCode.INVALID_SYMBOL,
            f"{symbol!r} names a month or a day the calendar does not have.",
            field="symbol",
        ) from None
    return ParsedSymbol(
        sku=match["sku"],
        region=match["region"],
        delivery_month=delivery_month,
        reservation=int(match["reservation"]) if match["reservation"] else None,
        option_type={"C": "call", "P": "put"}.get(option_type) if option_type else None,
        strike=Decimal(match["strike"]) if match["strike"] else None,
        resale_day=resale_day,
    )
