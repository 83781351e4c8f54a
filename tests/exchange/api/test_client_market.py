"""The typed client's market data against the API (through the Django test transport of
``test_client_pools``): each answer read whole into its typed object."""

from datetime import timedelta
from decimal import Decimal

import pytest

from exchange_client import ApiError, Candle
from tests.exchange.api.test_client_pools import client_of
from tests.exchange.api.test_market import hourly_trades  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db


def test_candles_are_the_apis_ohlcv_oldest_first(future, buyer, hourly_trades):  # noqa: F811
    this_hour = hourly_trades
    client = client_of(buyer.organization)

    hourly = client.candles(future.symbol)
    last = client.candles(future.symbol, interval="1h", limit=1)

    assert hourly == [
        Candle(
            this_hour - timedelta(hours=2),
            Decimal("2.40"),
            Decimal("2.50"),
            Decimal("2.40"),
            Decimal("2.45"),
            6,
            3,
        ),
        Candle(
            this_hour - timedelta(hours=1),
            Decimal("2.35"),
            Decimal("2.35"),
            Decimal("2.35"),
            Decimal("2.35"),
            4,
            1,
        ),
        Candle(this_hour, Decimal("2.55"), Decimal("2.60"), Decimal("2.55"), Decimal("2.60"), 3, 2),
    ]
    assert [candle.start for candle in last] == [this_hour]
    assert hourly[0].start.utcoffset() == timedelta(0)


def test_a_candle_interval_the_api_does_not_have_is_its_refusal(future, buyer):
    with pytest.raises(ApiError) as refused:
        client_of(buyer.organization).candles(future.symbol, interval="2h")

    assert (refused.value.status, refused.value.code, refused.value.field) == (
        400,
        "INVALID_INPUT",
        "interval",
    )
