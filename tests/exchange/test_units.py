from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.units import (
    engine_time,
    lots_to_quantity,
    price_to_ticks,
    quantity_to_lots,
    ticks_to_price,
    usd_figure,
)

TICK = Decimal("0.005")


@pytest.mark.parametrize(
    ("price", "ticks"),
    [
        (Decimal("2.45"), 490),
        (Decimal("2.450000"), 490),
        (Decimal("0.005"), 1),
        (Decimal("1000"), 200_000),
        (Decimal("0"), 0),
    ],
)
def test_price_to_ticks_is_exact_on_the_tick(price, ticks):
    assert price_to_ticks(price, TICK) == ticks
    assert ticks_to_price(ticks, TICK) == price


@pytest.mark.parametrize("price", [Decimal("2.451"), Decimal("2.4525"), Decimal("0.001")])
def test_price_off_the_tick_is_refused_not_rounded(price):
    with pytest.raises(OrderRejected) as raised:
        price_to_ticks(price, TICK, field="limit")

    assert raised.value.code == OrderRejectCode.PRICE_OFF_TICK
    assert raised.value.field == "limit"


@pytest.mark.parametrize("price", [Decimal("NaN"), Decimal("Infinity"), 2.45, "2.45"])
def test_price_that_is_not_a_finite_decimal_is_invalid(price):
    with pytest.raises(OrderRejected) as raised:
        price_to_ticks(price, TICK)

    assert raised.value.code == OrderRejectCode.INVALID_PRICE


def test_price_to_ticks_keeps_precision_far_beyond_the_default_context():
    # 28 significant digits is Decimal's default: this price/tick needs more.
    tick = Decimal("0.000001")
    price = Decimal("999.999999")

    assert price_to_ticks(price, tick) == 999_999_999
    with pytest.raises(OrderRejected):
        price_to_ticks(Decimal("999.999999" + "0" * 23 + "1"), tick)


def test_quantity_to_lots_refuses_partial_lots():
    assert quantity_to_lots(128, 64) == 2
    assert lots_to_quantity(2, 64) == 128

    with pytest.raises(OrderRejected) as raised:
        quantity_to_lots(100, 64)

    assert raised.value.code == OrderRejectCode.QUANTITY_OFF_LOT
    assert raised.value.field == "quantity"


def test_engine_time_is_microseconds_since_the_epoch():
    assert engine_time(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert engine_time(datetime(1970, 1, 2, 0, 0, 1, 5, tzinfo=UTC)) == 86_401_000_005
    moment = datetime(2027, 3, 4, 5, 6, 7, 891_011, tzinfo=UTC)
    assert engine_time(moment) == int(moment.timestamp()) * 1_000_000 + 891_011


def test_engine_time_does_not_depend_on_the_time_zone():
    moment = datetime(2027, 3, 4, 5, 6, 7, tzinfo=UTC)
    elsewhere = moment.astimezone(timezone(timedelta(hours=-5)))

    assert engine_time(elsewhere) == engine_time(moment)
    assert engine_time(moment + timedelta(microseconds=1)) == engine_time(moment) + 1


@pytest.mark.parametrize(
    ("amount", "written"),
    [
        (Decimal("2790.5"), "2,790.50"),
        (Decimal("2790.500000"), "2,790.50"),
        (Decimal("0"), "0.00"),
        (Decimal("0.000000"), "0.00"),
        (Decimal("637.563456"), "637.563456"),
        (Decimal("1234567.000001"), "1,234,567.000001"),
        (Decimal("-12.3"), "-12.30"),
        (Decimal("1E+400"), "1E+400"),  # Too many digits to quantize: as given, not a crash.
    ],
)
def test_usd_figure_writes_cents_when_exact_else_every_micro_dollar(amount, written):
    assert usd_figure(amount) == written
