from datetime import date, timedelta
from decimal import Decimal

import pytest

from exchange.models import SettlementPrice
from exchange.selectors.volatility import historical_volatility
from exchange.services.margin import (
    OptionVolatility,
    VolatilitySource,
    option_volatility,
    volatility_of,
)
from pricing import volatility

pytestmark = pytest.mark.django_db

Source = SettlementPrice.Source
PRICES = ["2.40", "2.46", "2.41", "2.50", "2.44", "2.52", "2.47", "2.55", "2.49", "2.58", "2.51"]


def settle(future, prices, *, start=date(2026, 11, 2), step=1, source=Source.VWAP):
    for index, price in enumerate(prices):
        SettlementPrice.objects.create(
            instrument=future,
            trading_date=start + timedelta(days=index * step),
            price=Decimal(price),
            source=source,
        )


def test_it_is_the_close_to_close_volatility_annualized_by_the_days_the_prices_span(future):
    # given eleven settlements two days apart: ten returns over twenty days
    settle(future, PRICES, step=2)

    sigma = historical_volatility(future.pk)

    expected = volatility.historical([float(p) for p in PRICES], 365.25 * 10 / 20)
    assert sigma == pytest.approx(expected)


def test_it_reads_the_latest_prices_up_to_a_day(future, settings):
    settings.EXCHANGE_HISTORICAL_VOLATILITY_PRICES = 10
    settle(future, [*PRICES, "9.99"])  # The last, on 13 November, is after the day asked.

    sigma = historical_volatility(future.pk, until=date(2026, 11, 12))

    assert sigma == pytest.approx(volatility.historical([float(p) for p in PRICES[1:]], 365.25))


def test_too_few_prices_give_none_and_carried_ones_do_not_count(futures):
    first, second = futures[:2]
    settle(first, PRICES[:9])
    settle(second, PRICES[:9])
    settle(second, ["2.51", "2.51"], start=date(2026, 11, 20), source=Source.PREVIOUS)

    assert historical_volatility(first.pk) is None
    assert historical_volatility(second.pk) is None


def test_a_future_that_barely_moved_is_at_the_floor(future, settings):
    settle(future, ["2.50"] * 10 + ["2.501"])

    assert historical_volatility(future.pk) == float(settings.EXCHANGE_VOLATILITY_FLOOR)


def test_an_option_not_yet_settled_takes_its_futures_historical_volatility(call, future, settings):
    assert volatility_of(call) == float(settings.EXCHANGE_DEFAULT_VOLATILITY)

    settle(future, PRICES)

    assert volatility_of(call) == pytest.approx(historical_volatility(future.pk))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (Source.VWAP, VolatilitySource.IMPLIED),
        (Source.MID, VolatilitySource.IMPLIED),
        (Source.OVERRIDE, VolatilitySource.IMPLIED),
        (Source.MODEL, VolatilitySource.CHAIN),
    ],
)
def test_an_options_volatility_says_where_it_comes_from(call, future, source, expected):
    # given the future's history, and the call's latest settlement with a volatility
    settle(future, PRICES)
    SettlementPrice.objects.create(
        instrument=call,
        trading_date=date(2026, 11, 20),
        price=Decimal("0.12"),
        source=source,
        implied_volatility=Decimal("0.455"),
    )

    # then the call is valued at that volatility: implied from a market price (or an override),
    # the chain's when the settlement modelled it
    assert option_volatility(call) == OptionVolatility(0.455, expected)
    assert volatility_of(call) == 0.455


def test_an_option_without_a_settled_volatility_is_historical_else_default(call, future, settings):
    assert option_volatility(call) == OptionVolatility(
        float(settings.EXCHANGE_DEFAULT_VOLATILITY), VolatilitySource.DEFAULT
    )

    settle(future, PRICES)

    assert option_volatility(call) == OptionVolatility(
        historical_volatility(future.pk), VolatilitySource.HISTORICAL
    )
