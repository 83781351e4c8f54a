from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.models import Instrument, Order, Trade
from exchange.selectors.market import (
    Level,
    book_depth,
    instrument_by_symbol,
    instruments_listed,
    quotes_for,
    trades_recent,
)
from exchange.services.instruments import instrument_set_status
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(futures, buyer, seller, maker, fourth):
    """Front month: bids 2.45 x (5 + 3), 2.40 x 2; asks 2.50 x 4, 2.55 x 6; one trade of 1."""
    front = futures[0]
    place(buyer, front, "buy", 5, "2.45")
    place(maker, front, "buy", 3, "2.45")
    place(buyer, front, "buy", 2, "2.40")
    place(seller, front, "sell", 5, "2.50")
    place(seller, front, "sell", 6, "2.55")
    place(fourth, front, "buy", 1, "2.50")  # Trades 1 at 2.50.
    return front


def test_quote_has_best_bid_and_ask_with_size_and_order_count(market, futures):
    quotes = quotes_for(futures)

    quote = quotes[market.pk]
    assert quote.best_bid == Level(Decimal("2.45"), 8, 2)
    assert quote.best_ask == Level(Decimal("2.50"), 4, 1)
    assert quote.last_price == Decimal("2.50")
    assert quote.volume_24h == 1
    empty = quotes[futures[1].pk]
    assert (empty.best_bid, empty.best_ask, empty.last_price, empty.volume_24h) == (
        None,
        None,
        None,
        0,
    )


def test_last_price_is_the_latest_trade_and_volume_counts_a_day(market, buyer, seller):
    place(buyer, market, "buy", 5, "2.55")  # 4 at 2.50 (rest of the level) then 1 at 2.55.

    quote = quotes_for([market])[market.pk]

    assert quote.last_price == Decimal("2.55")
    assert quote.volume_24h == 1 + 5
    assert quote.best_ask == Level(Decimal("2.55"), 5, 1)

    # Trades older than a day leave the volume, not the last price.
    Trade.objects.update(executed_at=timezone.now() - timedelta(hours=25))
    quote = quotes_for([market])[market.pk]
    assert quote.volume_24h == 0
    assert quote.last_price == Decimal("2.55")


def test_book_depth_is_best_first_on_both_sides(market, fourth):
    place(fourth, market, "sell", 2, "2.60")
    place(fourth, market, "buy", 7, "2.30")

    bids, asks = book_depth(market)

    assert bids == [
        Level(Decimal("2.45"), 8, 2),
        Level(Decimal("2.40"), 2, 1),
        Level(Decimal("2.30"), 7, 1),
    ]
    assert asks == [
        Level(Decimal("2.50"), 4, 1),
        Level(Decimal("2.55"), 6, 1),
        Level(Decimal("2.60"), 2, 1),
    ]
    assert book_depth(market, levels=1) == ([bids[0]], [asks[0]])


def test_depth_counts_open_quantity_of_partially_filled_orders(future, buyer, seller):
    place(buyer, future, "buy", 10, "2.45")
    place(seller, future, "sell", 4, "2.45")

    bids, asks = book_depth(future)

    assert bids == [Level(Decimal("2.45"), 6, 1)]
    assert asks == []


def test_expired_gtd_orders_leave_the_market_before_the_sweep(future, buyer, seller):
    # given a GTD bid above a GTC bid, still resting in the database
    now = timezone.now()
    gtd = place(
        buyer, future, "buy", 5, "2.45", time_in_force="gtd", expires_at=now + timedelta(minutes=5)
    )
    place(seller, future, "buy", 2, "2.40")
    assert quotes_for([future], now=now)[future.pk].best_bid.price == Decimal("2.45")

    # when its expiry passes, before any matcher sweeps it
    later = now + timedelta(minutes=6)

    # then
    assert Order.objects.get(pk=gtd.pk).status == Order.Status.OPEN
    assert quotes_for([future], now=later)[future.pk].best_bid == Level(Decimal("2.40"), 2, 1)
    bids, _asks = book_depth(future, now=later)
    assert bids == [Level(Decimal("2.40"), 2, 1)]

    # and with the current time
    Order.objects.filter(pk=gtd.pk).update(expires_at=now - timedelta(seconds=1))
    assert book_depth(future)[0] == [Level(Decimal("2.40"), 2, 1)]


def test_trades_recent_are_newest_first(market, buyer):
    place(buyer, market, "buy", 2, "2.50")

    recent = list(trades_recent(market))

    assert [trade.sequence for trade in recent] == sorted(
        (trade.sequence for trade in recent), reverse=True
    )
    assert len(recent) == 2
    assert len(list(trades_recent(market, limit=1))) == 1


def test_instruments_listed_filters_and_hides_expired(futures, sku, region):
    instrument_set_status(instrument=futures[1], status=Instrument.Status.EXPIRED, actor=None)

    assert list(instruments_listed()) == [futures[0]]
    assert list(instruments_listed(kind="future", sku=sku.code, region=region.code)) == [futures[0]]
    assert list(instruments_listed(kind="option")) == []
    assert list(instruments_listed(sku="B200")) == []
    assert list(instruments_listed(region="EUWEST")) == []


def test_instrument_by_symbol(future):
    assert instrument_by_symbol(future.symbol) == future
    assert instrument_by_symbol("NOPE-NOPE-209901") is None
