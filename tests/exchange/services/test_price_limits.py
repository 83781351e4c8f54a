"""Price limits: a future's limit buy above its mark, or sell below it, by more than
EXCHANGE_PRICE_LIMIT is refused at acceptance and on a replace, so a price keyed a digit off
cannot sweep the book; the limits follow the mark (the newer of the latest settlement price and
the last trade)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import Order, OrderRejection, SettlementPrice
from exchange.services.orders import order_dry_run, order_replace, price_limits
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


@pytest.fixture
def settled(future):
    """The future settled yesterday at 2.40: limits 1.80 to 3.00 at 25%."""
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=timezone.now().date() - timedelta(days=1),
        price=Decimal("2.40"),
        source="vwap",
    )
    return future


def refused(account, instrument, side, price) -> OrderRejected:
    with pytest.raises(OrderRejected) as raised:
        place(account, instrument, side, 1, price)
    return raised.value


def test_a_buy_above_or_a_sell_below_the_limits_is_refused(settled, buyer, seller):
    assert price_limits(settled) == (Decimal("1.80"), Decimal("3.00"))
    before = Order.objects.count()

    too_high = refused(buyer, settled, "buy", "3.005")
    too_low = refused(seller, settled, "sell", "1.795")

    assert (too_high.code, too_high.field) == (OrderRejectCode.PRICE_OUTSIDE_LIMIT, "price")
    assert too_high.code == "ORDER_PRICE_OUTSIDE_LIMIT"
    assert "above the price limit of 3 $/GPU-hr (25% from the mark)" in too_high.message
    assert (too_low.code, too_low.field) == (OrderRejectCode.PRICE_OUTSIDE_LIMIT, "price")
    assert "below the price limit of 1.8 $/GPU-hr" in too_low.message
    # and nothing but the rejections is written
    assert Order.objects.count() == before
    assert OrderRejection.objects.filter(code="ORDER_PRICE_OUTSIDE_LIMIT").count() == 2


def test_prices_at_the_limits_and_passive_prices_beyond_them_are_accepted(settled, buyer, seller):
    # at the limits
    assert place(buyer, settled, "buy", 1, "3.00").status == Order.Status.OPEN
    assert place(seller, settled, "sell", 1, "1.80").status == Order.Status.FILLED
    # a buy far below and a sell far above trade with nobody who did not ask for it: they rest
    assert place(buyer, settled, "buy", 1, "0.50").status == Order.Status.OPEN
    assert place(seller, settled, "sell", 1, "9.00").status == Order.Status.OPEN


def test_the_limits_follow_the_last_trade_after_the_settlement(settled, buyer, seller, settings):
    place(seller, settled, "sell", 1, "2.90")
    place(buyer, settled, "buy", 1, "2.90")
    settings.EXCHANGE_REFERENCE_CACHE_SECONDS = 0  # Read the mark afresh.

    assert price_limits(settled) == (Decimal("2.175"), Decimal("3.625"))
    assert place(buyer, settled, "buy", 1, "3.50").status == Order.Status.OPEN


def test_a_future_with_no_mark_has_no_limits(future, buyer):
    assert price_limits(future) is None
    assert place(buyer, future, "buy", 1, "50.00").status == Order.Status.OPEN


def test_limits_turned_off(settled, buyer, settings):
    settings.EXCHANGE_PRICE_LIMIT = Decimal("0")

    assert price_limits(settled) is None
    assert place(buyer, settled, "buy", 1, "9.00").status == Order.Status.OPEN


def test_options_have_no_limits(call, settled):
    assert price_limits(call) is None


def test_a_replace_beyond_the_limits_is_refused_and_the_order_left_as_it_was(settled, buyer):
    order = place(buyer, settled, "buy", 1, "2.40")

    with pytest.raises(OrderRejected) as raised:
        order_replace(order=order, price=Decimal("3.10"), quantity=1)

    assert raised.value.code == OrderRejectCode.PRICE_OUTSIDE_LIMIT
    order.refresh_from_db()
    assert (order.price, order.status) == (Decimal("2.40"), Order.Status.OPEN)
    # a replace to 0 cancels whatever price it names
    assert order_replace(order=order, price=Decimal("30"), quantity=0).status == (
        Order.Status.CANCELLED
    )


def test_a_dry_run_answers_the_same(settled, buyer):
    with pytest.raises(OrderRejected) as raised:
        order_dry_run(
            account=buyer, instrument=settled.symbol, side="sell", quantity=1, price=Decimal("1")
        )

    assert raised.value.code == OrderRejectCode.PRICE_OUTSIDE_LIMIT


def test_the_api_instrument_and_its_page_show_the_limits(settled, client):
    from rest_framework.test import APIClient

    detail = APIClient().get(f"/api/v1/instruments/{settled.symbol}/").json()
    listed = APIClient().get("/api/v1/instruments/", {"kind": "future"}).json()
    page = client.get(f"/instruments/{settled.symbol}/").content.decode()

    assert (detail["price_limit_low"], detail["price_limit_high"]) == ("1.800000", "3.000000")
    assert "price_limit_low" not in listed[0]
    assert "buys up to 3.000, sells down to 1.800 $/GPU-hr (25% from the mark)" in page


def test_an_instrument_without_limits_says_none(future, call, client):
    from rest_framework.test import APIClient

    for instrument in (future, call):
        detail = APIClient().get(f"/api/v1/instruments/{instrument.symbol}/").json()
        assert (detail["price_limit_low"], detail["price_limit_high"]) == (None, None)
    assert "Price limits" not in client.get(f"/instruments/{future.symbol}/").content.decode()
