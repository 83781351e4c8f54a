"""Template filters that write amounts of money, prices and strikes without rounding them."""

from decimal import Decimal

from django import template

from exchange.symbols import strike_text
from exchange.web.portfolio import quantity_text

register = template.Library()


@register.filter
def usd_exact(value: Decimal | int | None) -> str:
    """USD with thousands separators: whole cents when exact, else every micro-dollar, so a
    figure reads as the ledger holds it (``floatformat:2`` rounded margin, holds and cash to
    cents, and held + available no longer added up to the cash balance). Empty for None, so
    that ``|default`` still applies."""
    if value is None:
        return ""
    return quantity_text(Decimal(value))


@register.filter
def strike(value: Decimal | None) -> str:
    """A strike in $/GPU-hr as its option's symbol writes it: at least two decimals and every
    one it has (``floatformat:2`` wrote a strike of 1.104, which a roll lists on a cheap
    future, as 1.10: a price the option is not struck at). Empty for None."""
    if value is None:
        return ""
    return strike_text(value)


@register.filter
def price_exact(value: Decimal | str | None) -> str:
    """A price in $/GPU-hr with at least three decimals (the futures and options ticks) and
    every further one it has: an option settled at its model value (0.042476) is marked there,
    and ``floatformat:3`` wrote 0.042, a mark the position's value and P&L were not computed
    at; a book on a finer tick than 0.001 has levels ``floatformat:3`` wrote alike. Empty for
    None, or the empty string of a variable the template could not find (a quote with no
    trade yet), so that ``|default`` still applies."""
    if value is None or value == "":
        return ""
    assert isinstance(value, Decimal)
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return f"{value:.{max(3, -exponent)}f}"
