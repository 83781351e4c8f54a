"""Template filters that write amounts of money without rounding them."""

from decimal import Decimal

from django import template

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
