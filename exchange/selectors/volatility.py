"""Historical volatility of a future, from its daily settlement prices (``pricing.volatility``).

An option's volatility is its latest implied volatility (from its settlement: the market's, or
its siblings'); an option with none, a chain nobody has traded, falls back on its future's own
price history before the flat ``EXCHANGE_DEFAULT_VOLATILITY``: how much that future has moved
is a better guess at how much it will than one number for every SKU and month.
"""

from datetime import date

from django.conf import settings

from exchange.models import SettlementPrice
from pricing import volatility

DAYS_PER_YEAR = 365.25


def historical_volatility(future_id: int, *, until: date | None = None) -> float | None:
    """The annualized close-to-close volatility of future ``future_id``'s latest
    ``EXCHANGE_HISTORICAL_VOLATILITY_PRICES`` settlement prices (to ``until``, inclusive),
    at least ``EXCHANGE_VOLATILITY_FLOOR``; None with fewer than
    ``EXCHANGE_HISTORICAL_VOLATILITY_PRICES_MIN`` of them.

    A price carried from the day before (source ``previous``: nothing traded or quoted) is no
    observation and is left out. Settlements fall on business days, with gaps where one was
    carried, so the returns are annualized by the days they actually span: ``periods per year =
    365.25 x returns / days from the first price to the last``. The floor keeps a future whose
    prices barely moved from valuing its options at their intrinsic value alone."""
    rows = SettlementPrice.objects.filter(instrument_id=future_id).exclude(
        source=SettlementPrice.Source.PREVIOUS
    )
    if until is not None:
        rows = rows.filter(trading_date__lte=until)
    latest = list(
        rows.order_by("-trading_date").values_list("trading_date", "price")[
            : int(settings.EXCHANGE_HISTORICAL_VOLATILITY_PRICES)
        ]
    )
    if len(latest) < max(int(settings.EXCHANGE_HISTORICAL_VOLATILITY_PRICES_MIN), 3):
        return None
    latest.reverse()
    days = (latest[-1][0] - latest[0][0]).days
    periods_per_year = DAYS_PER_YEAR * (len(latest) - 1) / days
    sigma = volatility.historical([float(price) for _, price in latest], periods_per_year)
    return max(sigma, float(settings.EXCHANGE_VOLATILITY_FLOOR))
