"""Contract tests: every matching rule, asserted on full event lists, for both engines."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from matching import (
    Accepted,
    Cancel,
    Cancelled,
    CancelReason,
    Engine,
    Event,
    NewOrder,
    Rejected,
    RejectReason,
    Replace,
    Replaced,
    RestingOrder,
    SelfTradePrevention,
    Side,
    Tick,
    TimeInForce,
    Trade,
)
from matching.reference import ReferenceEngine

INSTRUMENT = 7
OTHER_INSTRUMENT = 8

GTC = TimeInForce.GTC
GTD = TimeInForce.GTD
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
CANCEL_NEWEST = SelfTradePrevention.CANCEL_NEWEST
CANCEL_OLDEST = SelfTradePrevention.CANCEL_OLDEST
CANCEL_BOTH = SelfTradePrevention.CANCEL_BOTH
DECREMENT = SelfTradePrevention.DECREMENT

AnyEngine = Engine | ReferenceEngine


@pytest.fixture
def engine(engine_class: type[AnyEngine]) -> AnyEngine:
    return engine_class()


def buy(order_id: int, qty: int, price: int | None, account: int = 1, **options: Any) -> NewOrder:
    options.setdefault("instrument", INSTRUMENT)
    return NewOrder(
        order_id=order_id, account=account, side=Side.BUY, qty=qty, price=price, **options
    )


def sell(order_id: int, qty: int, price: int | None, account: int = 1, **options: Any) -> NewOrder:
    options.setdefault("instrument", INSTRUMENT)
    return NewOrder(
        order_id=order_id, account=account, side=Side.SELL, qty=qty, price=price, **options
    )


def accepted(seq: int, order: NewOrder) -> Accepted:
    return Accepted(
        seq, order.order_id, order.instrument, order.account, order.side, order.price, order.qty
    )


def trade(seq: int, price: int, qty: int, maker: NewOrder, taker: NewOrder) -> Trade:
    return Trade(
        seq,
        taker.instrument,
        price,
        qty,
        maker.order_id,
        taker.order_id,
        maker.account,
        taker.account,
        taker.side,
    )


def cancelled(
    seq: int, order_id: int, qty: int, reason: CancelReason, instrument: int = INSTRUMENT
) -> Cancelled:
    return Cancelled(seq, order_id, instrument, qty, reason)


def rejected(
    seq: int, order_id: int, reason: RejectReason, instrument: int = INSTRUMENT
) -> Rejected:
    return Rejected(seq, order_id, instrument, reason)


def resting(order: NewOrder, qty: int | None = None, **changes: Any) -> RestingOrder:
    """The snapshot `orders()` should show for ``order`` with ``qty`` still open."""
    assert order.price is not None
    snapshot = RestingOrder(
        order.order_id,
        order.instrument,
        order.account,
        order.side,
        order.price,
        order.qty if qty is None else qty,
        order.tif,
        order.stp,
        order.expires_at,
        order.post_only,
        order.stp_group,
    )
    return dataclasses.replace(snapshot, **changes)


def feed(engine: AnyEngine, *commands: Any) -> list[Event]:
    events: list[Event] = []
    for command in commands:
        events.extend(engine.process(command))
    return events


# ------------------------------------------------------------------------------------------
# Price-time priority.


def test_better_prices_trade_first_at_the_makers_price(engine: AnyEngine) -> None:
    # Given asks at 101 and (later) at 100
    high, low = sell(1, 5, 101, account=1), sell(2, 5, 100, account=2)
    assert feed(engine, high, low) == [accepted(1, high), accepted(2, low)]
    # When a buy for 8 limited at 105 arrives
    taker = buy(3, 8, 105, account=3)
    events = engine.process(taker)
    # Then it takes the better price first, and every trade prints at the resting price
    assert events == [
        accepted(3, taker),
        trade(4, 100, 5, low, taker),
        trade(5, 101, 3, high, taker),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(high, 2)]


def test_same_price_fills_in_arrival_order(engine: AnyEngine) -> None:
    # Given two asks at the same price
    first, second = sell(1, 3, 100, account=1), sell(2, 3, 100, account=2)
    feed(engine, first, second)
    # When a buy for 4 arrives
    taker = buy(3, 4, 100, account=3)
    events = engine.process(taker)
    # Then the older ask fills first
    assert events == [
        accepted(3, taker),
        trade(4, 100, 3, first, taker),
        trade(5, 100, 1, second, taker),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(second, 2)]


def test_sell_taker_hits_the_highest_bid_first(engine: AnyEngine) -> None:
    # Given bids at 99 and 100
    low, high = buy(1, 2, 99, account=1), buy(2, 2, 100, account=2)
    feed(engine, low, high)
    # When a sell for 3 limited at 98 arrives
    taker = sell(3, 3, 98, account=3)
    # Then it sells at 100 then 99
    assert engine.process(taker) == [
        accepted(3, taker),
        trade(4, 100, 2, high, taker),
        trade(5, 99, 1, low, taker),
    ]


def test_limit_order_does_not_trade_through_its_price_and_rests(engine: AnyEngine) -> None:
    # Given an ask at 101
    ask = sell(1, 5, 101, account=2)
    feed(engine, ask)
    # When a buy limited at 100 arrives
    bid = buy(2, 4, 100)
    # Then it does not trade and rests as the best bid
    assert engine.process(bid) == [accepted(2, bid)]
    book = engine.book(INSTRUMENT)
    assert book.best_bid() == (100, 4)
    assert book.best_ask() == (101, 5)


def test_book_queries_report_levels_and_priority(engine: AnyEngine) -> None:
    # Given several orders on both sides
    orders = [
        buy(1, 1, 98),
        buy(2, 2, 99),
        buy(3, 3, 99, account=2),
        sell(4, 4, 101),
        sell(5, 5, 103),
        sell(6, 6, 101, account=3),
    ]
    feed(engine, *orders)
    book = engine.book(INSTRUMENT)
    # Then the queries report best first, with totals and counts
    assert book.best_bid() == (99, 5)
    assert book.best_ask() == (101, 10)
    assert book.depth(10) == ([(99, 5, 2), (98, 1, 1)], [(101, 10, 2), (103, 5, 1)])
    assert book.depth(1) == ([(99, 5, 2)], [(101, 10, 2)])
    assert book.depth(0) == ([], [])
    assert [order.order_id for order in book.orders()] == [2, 3, 1, 4, 6, 5]
    assert engine.book(99).best_bid() is None
    assert engine.book(99).best_ask() is None
    assert engine.book(99).orders() == []


# ------------------------------------------------------------------------------------------
# Market orders.


def test_market_order_takes_liquidity_and_cancels_the_rest(engine: AnyEngine) -> None:
    # Given asks at 100 and 102
    near, far = sell(1, 2, 100, account=2), sell(2, 3, 102, account=2)
    feed(engine, near, far)
    # When a market buy for 10 arrives
    taker = buy(3, 10, None)
    # Then it takes every level and the remainder is cancelled
    assert engine.process(taker) == [
        accepted(3, taker),
        trade(4, 100, 2, near, taker),
        trade(5, 102, 3, far, taker),
        cancelled(6, 3, 5, CancelReason.MARKET_REMAINDER),
    ]
    assert engine.book(INSTRUMENT).orders() == []


@pytest.mark.parametrize("tif", [GTC, GTD, IOC])
def test_market_order_never_rests(engine: AnyEngine, tif: TimeInForce) -> None:
    # Given an empty book
    # When a market sell arrives, whatever its time in force
    taker = sell(1, 4, None, tif=tif, expires_at=50)
    # Then it is cancelled in full and nothing rests
    assert engine.process(taker) == [
        accepted(1, taker),
        cancelled(2, 1, 4, CancelReason.MARKET_REMAINDER),
    ]
    assert engine.book(INSTRUMENT).orders() == []


# ------------------------------------------------------------------------------------------
# IOC and FOK.


def test_ioc_fills_what_it_can_and_cancels_the_rest(engine: AnyEngine) -> None:
    # Given an ask for 3 at 100 and one at 101
    ask, beyond = sell(1, 3, 100, account=2), sell(2, 3, 101, account=2)
    feed(engine, ask, beyond)
    # When an IOC buy for 5 at 100 arrives
    taker = buy(3, 5, 100, tif=IOC)
    # Then it fills 3 and the other 2 are cancelled instead of resting
    assert engine.process(taker) == [
        accepted(3, taker),
        trade(4, 100, 3, ask, taker),
        cancelled(5, 3, 2, CancelReason.IOC_REMAINDER),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(beyond)]


def test_ioc_that_does_not_cross_is_cancelled(engine: AnyEngine) -> None:
    # Given an ask at 101
    feed(engine, sell(1, 3, 101, account=2))
    # When an IOC buy at 100 arrives
    taker = buy(2, 5, 100, tif=IOC)
    # Then it is cancelled in full
    assert engine.process(taker) == [
        accepted(2, taker),
        cancelled(3, 2, 5, CancelReason.IOC_REMAINDER),
    ]


def test_fok_that_cannot_fill_in_full_is_cancelled_without_trading(engine: AnyEngine) -> None:
    # Given 6 lots offered within 101 and more beyond it
    asks = [sell(1, 3, 100, account=2), sell(2, 3, 101, account=3), sell(3, 10, 102, account=2)]
    feed(engine, *asks)
    before = engine.book(INSTRUMENT).orders()
    # When a FOK buy for 7 at 101 arrives
    taker = buy(4, 7, 101, tif=FOK)
    # Then it is cancelled with no fills and the book is unchanged
    assert engine.process(taker) == [
        accepted(4, taker),
        cancelled(5, 4, 7, CancelReason.FOK_NOT_FILLABLE),
    ]
    assert engine.book(INSTRUMENT).orders() == before


def test_fok_fills_in_full_across_levels(engine: AnyEngine) -> None:
    # Given 6 lots offered within 101
    first, second = sell(1, 3, 100, account=2), sell(2, 3, 101, account=3)
    feed(engine, first, second)
    # When a FOK buy for 6 at 101 arrives
    taker = buy(3, 6, 101, tif=FOK)
    # Then it fills completely
    assert engine.process(taker) == [
        accepted(3, taker),
        trade(4, 100, 3, first, taker),
        trade(5, 101, 3, second, taker),
    ]


def test_fok_market_order(engine: AnyEngine) -> None:
    # Given 5 lots offered
    ask = sell(1, 5, 100, account=2)
    feed(engine, ask)
    # When a FOK market buy for 6 arrives, then one for 5
    too_big, fits = buy(2, 6, None, tif=FOK), buy(3, 5, None, tif=FOK)
    # Then the first is not fillable and the second fills
    assert feed(engine, too_big, fits) == [
        accepted(2, too_big),
        cancelled(3, 2, 6, CancelReason.FOK_NOT_FILLABLE),
        accepted(4, fits),
        trade(5, 100, 5, ask, fits),
    ]


def test_fok_on_empty_book_is_cancelled(engine: AnyEngine) -> None:
    taker = buy(1, 1, 100, tif=FOK)
    assert engine.process(taker) == [
        accepted(1, taker),
        cancelled(2, 1, 1, CancelReason.FOK_NOT_FILLABLE),
    ]


@pytest.mark.parametrize("stp", [CANCEL_NEWEST, CANCEL_BOTH, DECREMENT])
def test_fok_meeting_its_own_order_first_is_not_fillable(
    engine: AnyEngine, stp: SelfTradePrevention
) -> None:
    # Given the account's own ask ahead of enough liquidity from another account
    own, other = sell(1, 5, 100, account=1), sell(2, 5, 100, account=2)
    feed(engine, own, other)
    # When that account sends a FOK buy for 5
    taker = buy(3, 5, 100, account=1, tif=FOK, stp=stp)
    # Then it could not trade in full before meeting its own order: cancelled, no STP side effects
    assert engine.process(taker) == [
        accepted(3, taker),
        cancelled(4, 3, 5, CancelReason.FOK_NOT_FILLABLE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(own), resting(other)]


def test_fok_filled_before_reaching_its_own_order(engine: AnyEngine) -> None:
    # Given another account's ask ahead of the account's own ask
    other, own = sell(1, 5, 100, account=2), sell(2, 5, 100, account=1)
    feed(engine, other, own)
    # When the account sends a FOK buy for 5
    taker = buy(3, 5, 100, account=1, tif=FOK)
    # Then it fills against the other account only
    assert engine.process(taker) == [accepted(3, taker), trade(4, 100, 5, other, taker)]
    assert engine.book(INSTRUMENT).orders() == [resting(own)]


def test_fok_cancel_oldest_skips_own_orders_and_cancels_them_when_it_executes(
    engine: AnyEngine,
) -> None:
    # Given the account's own ask ahead of 5 lots from another account
    own, other = sell(1, 2, 100, account=1), sell(2, 5, 100, account=2)
    feed(engine, own, other)
    # When the account sends a FOK buy for 5 with CANCEL_OLDEST
    taker = buy(3, 5, 100, account=1, tif=FOK, stp=CANCEL_OLDEST)
    # Then only the other account's quantity counts; it executes and cancels the own order
    assert engine.process(taker) == [
        accepted(3, taker),
        cancelled(4, 1, 2, CancelReason.SELF_TRADE),
        trade(5, 100, 5, other, taker),
    ]


def test_fok_cancel_oldest_not_fillable_leaves_own_orders(engine: AnyEngine) -> None:
    # Given the account's own ask and only 3 lots from another account
    own, other = sell(1, 5, 100, account=1), sell(2, 3, 100, account=2)
    feed(engine, own, other)
    # When the account sends a FOK buy for 5 with CANCEL_OLDEST
    taker = buy(3, 5, 100, account=1, tif=FOK, stp=CANCEL_OLDEST)
    # Then its own ask does not count, so it is not fillable and nothing is cancelled
    assert engine.process(taker) == [
        accepted(3, taker),
        cancelled(4, 3, 5, CancelReason.FOK_NOT_FILLABLE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(own), resting(other)]


# ------------------------------------------------------------------------------------------
# Post-only.


def test_post_only_that_would_cross_is_rejected(engine: AnyEngine) -> None:
    # Given an ask at 100
    ask = sell(1, 5, 100, account=2)
    feed(engine, ask)
    # When a post-only buy at 100 arrives
    order = buy(2, 5, 100, post_only=True)
    # Then it is rejected, nothing trades and nothing rests
    assert engine.process(order) == [rejected(2, 2, RejectReason.POST_ONLY_WOULD_CROSS)]
    assert engine.book(INSTRUMENT).orders() == [resting(ask)]
    # And a rejected id is not recorded, so it may be sent again
    retry = buy(2, 5, 99, post_only=True)
    assert engine.process(retry) == [accepted(3, retry)]


def test_post_only_crossing_own_order_is_rejected_too(engine: AnyEngine) -> None:
    feed(engine, sell(1, 5, 100, account=1))
    order = buy(2, 5, 101, account=1, post_only=True)
    assert engine.process(order) == [rejected(2, 2, RejectReason.POST_ONLY_WOULD_CROSS)]


def test_post_only_that_does_not_cross_rests(engine: AnyEngine) -> None:
    # Given an ask at 100
    feed(engine, sell(1, 5, 100, account=2))
    # When a post-only buy at 99 arrives
    order = buy(2, 5, 99, post_only=True)
    # Then it rests and stays post-only
    assert engine.process(order) == [accepted(2, order)]
    assert engine.book(INSTRUMENT).orders()[0] == resting(order)
    assert engine.book(INSTRUMENT).orders()[0].post_only


def test_post_only_market_order_is_rejected(engine: AnyEngine) -> None:
    order = buy(1, 5, None, post_only=True)
    assert engine.process(order) == [rejected(1, 1, RejectReason.POST_ONLY_MARKET)]


@pytest.mark.parametrize("tif", [IOC, FOK])
def test_post_only_ioc_or_fok_order_is_rejected(engine: AnyEngine, tif: TimeInForce) -> None:
    # Given an ask it would not cross, and one it would
    feed(engine, sell(1, 5, 100, account=2))
    # When post-only orders that cannot rest arrive, crossing or not
    resting_one = buy(2, 5, 99, post_only=True, tif=tif)
    crossing_one = buy(3, 5, 100, post_only=True, tif=tif)
    # Then each is rejected for its time in force (checked before crossing) and nothing changes
    assert feed(engine, resting_one, crossing_one) == [
        rejected(2, 2, RejectReason.POST_ONLY_TIME_IN_FORCE),
        rejected(3, 3, RejectReason.POST_ONLY_TIME_IN_FORCE),
    ]
    assert [order.order_id for order in engine.book(INSTRUMENT).orders()] == [1]


# ------------------------------------------------------------------------------------------
# GTD and ticks.


def test_gtd_without_expiry_is_rejected(engine: AnyEngine) -> None:
    order = buy(1, 5, 100, tif=GTD)
    assert engine.process(order) == [rejected(1, 1, RejectReason.GTD_WITHOUT_EXPIRY)]
    assert engine.book(INSTRUMENT).orders() == []


def test_tick_cancels_gtd_orders_at_or_after_their_expiry(engine: AnyEngine) -> None:
    # Given GTD orders expiring at 10 and 20, and a GTC order
    early = buy(1, 5, 99, tif=GTD, expires_at=10)
    late = sell(2, 3, 101, tif=GTD, expires_at=20)
    forever = buy(3, 1, 98)
    feed(engine, early, late, forever)
    # When time reaches 9, nothing expires
    assert engine.process(Tick(now=9)) == []
    # When time reaches 10, the order expiring at 10 is cancelled
    assert engine.process(Tick(now=10)) == [cancelled(4, 1, 5, CancelReason.EXPIRED)]
    # When time jumps past 20, the other one is cancelled and the GTC order stays
    assert engine.process(Tick(now=25)) == [cancelled(5, 2, 3, CancelReason.EXPIRED)]
    assert engine.book(INSTRUMENT).orders() == [resting(forever)]


def test_partially_filled_gtd_order_expires_with_its_open_quantity(engine: AnyEngine) -> None:
    order = sell(1, 5, 100, tif=GTD, expires_at=10)
    taker = buy(2, 2, 100, account=2)
    feed(engine, order, taker)
    assert engine.process(Tick(10)) == [cancelled(4, 1, 3, CancelReason.EXPIRED)]


def test_tick_emits_expiries_by_instrument_then_expiry_then_order_id(engine: AnyEngine) -> None:
    # Given GTD orders in two instruments, entered out of expiry order
    feed(
        engine,
        buy(10, 1, 90, tif=GTD, expires_at=5, instrument=OTHER_INSTRUMENT),
        buy(11, 1, 90, tif=GTD, expires_at=5),
        buy(12, 1, 91, tif=GTD, expires_at=3),
        buy(9, 1, 92, tif=GTD, expires_at=5),
    )
    # When time reaches 5
    events = engine.process(Tick(5))
    # Then instrument 7's orders go first (earliest expiry, then lowest id), then instrument 8's
    assert events == [
        cancelled(5, 12, 1, CancelReason.EXPIRED),
        cancelled(6, 9, 1, CancelReason.EXPIRED),
        cancelled(7, 11, 1, CancelReason.EXPIRED),
        cancelled(8, 10, 1, CancelReason.EXPIRED, instrument=OTHER_INSTRUMENT),
    ]


def test_tick_for_one_instrument_leaves_the_others(engine: AnyEngine) -> None:
    feed(
        engine,
        buy(1, 1, 90, tif=GTD, expires_at=5),
        buy(2, 1, 90, tif=GTD, expires_at=5, instrument=OTHER_INSTRUMENT),
    )
    assert engine.process(Tick(5, instrument=OTHER_INSTRUMENT)) == [
        cancelled(3, 2, 1, CancelReason.EXPIRED, instrument=OTHER_INSTRUMENT)
    ]
    assert len(engine.book(INSTRUMENT).orders()) == 1
    # A tick for an instrument without a book does nothing and creates no book
    assert engine.process(Tick(5, instrument=123)) == []
    assert engine.instruments() == [INSTRUMENT, OTHER_INSTRUMENT]


def test_gtd_order_arriving_already_expired_is_rejected(engine: AnyEngine) -> None:
    # Given the clock is at 100
    engine.process(Tick(100))
    # When GTD orders expiring at 100 and 101 arrive
    stale, fresh = buy(1, 5, 99, tif=GTD, expires_at=100), buy(2, 5, 99, tif=GTD, expires_at=101)
    # Then the first is rejected and the second accepted
    assert feed(engine, stale, fresh) == [
        rejected(1, 1, RejectReason.ALREADY_EXPIRED),
        accepted(2, fresh),
    ]


def test_gtd_already_expired_check_uses_the_books_own_ticks(engine: AnyEngine) -> None:
    feed(engine, buy(1, 1, 90))
    engine.process(Tick(100, instrument=INSTRUMENT))
    late = buy(2, 5, 99, tif=GTD, expires_at=50)
    elsewhere = buy(3, 5, 99, tif=GTD, expires_at=50, instrument=OTHER_INSTRUMENT)
    assert feed(engine, late, elsewhere) == [
        rejected(2, 2, RejectReason.ALREADY_EXPIRED),
        accepted(3, elsewhere),
    ]


def test_expiry_of_non_gtd_orders_is_ignored(engine: AnyEngine) -> None:
    order = buy(1, 5, 99, tif=GTC, expires_at=10)
    feed(engine, order)
    assert engine.process(Tick(20)) == []
    assert engine.book(INSTRUMENT).orders() == [resting(order)]


# ------------------------------------------------------------------------------------------
# Self-trade prevention. Asks: another account's 2 lots, the taker's own 3 lots, then
# another account's 4 lots, all at 100.


def self_trade_setup(engine: AnyEngine) -> tuple[NewOrder, NewOrder, NewOrder]:
    first, own, last = (
        sell(1, 2, 100, account=2),
        sell(2, 3, 100, account=1),
        sell(3, 4, 100, account=3),
    )
    feed(engine, first, own, last)
    return first, own, last


def test_stp_cancel_newest_cancels_the_takers_remainder(engine: AnyEngine) -> None:
    first, own, last = self_trade_setup(engine)
    # When account 1 buys 10 with CANCEL_NEWEST
    taker = buy(4, 10, 100, account=1, stp=CANCEL_NEWEST)
    # Then it trades until it meets its own ask, and its remainder is cancelled
    assert engine.process(taker) == [
        accepted(4, taker),
        trade(5, 100, 2, first, taker),
        cancelled(6, 4, 8, CancelReason.SELF_TRADE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(own), resting(last)]


def test_stp_cancel_oldest_cancels_the_resting_order_and_keeps_matching(
    engine: AnyEngine,
) -> None:
    first, _own, last = self_trade_setup(engine)
    taker = buy(4, 10, 100, account=1, stp=CANCEL_OLDEST)
    assert engine.process(taker) == [
        accepted(4, taker),
        trade(5, 100, 2, first, taker),
        cancelled(6, 2, 3, CancelReason.SELF_TRADE),
        trade(7, 100, 4, last, taker),
    ]
    # The remaining 4 lots rest as a bid
    assert engine.book(INSTRUMENT).orders() == [resting(taker, 4)]


def test_stp_cancel_both_cancels_resting_then_taker(engine: AnyEngine) -> None:
    first, _own, last = self_trade_setup(engine)
    taker = buy(4, 10, 100, account=1, stp=CANCEL_BOTH)
    assert engine.process(taker) == [
        accepted(4, taker),
        trade(5, 100, 2, first, taker),
        cancelled(6, 2, 3, CancelReason.SELF_TRADE),
        cancelled(7, 4, 8, CancelReason.SELF_TRADE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(last)]


def test_stp_decrement_larger_taker_removes_resting_and_continues(engine: AnyEngine) -> None:
    first, _own, last = self_trade_setup(engine)
    taker = buy(4, 10, 100, account=1, stp=DECREMENT)
    # Then both lose 3 lots without a trade, the resting order leaves, matching continues
    assert engine.process(taker) == [
        accepted(4, taker),
        trade(5, 100, 2, first, taker),
        cancelled(6, 2, 3, CancelReason.SELF_TRADE),
        cancelled(7, 4, 3, CancelReason.SELF_TRADE),
        trade(8, 100, 4, last, taker),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(taker, 1)]


def test_stp_decrement_smaller_taker_reduces_resting_and_stops(engine: AnyEngine) -> None:
    # Given the account's own ask for 5
    own = sell(1, 5, 100, account=1)
    feed(engine, own)
    # When it buys 3 with DECREMENT
    taker = buy(2, 3, 100, account=1, stp=DECREMENT)
    # Then both lose 3 lots, the taker is used up and the ask keeps 2
    assert engine.process(taker) == [
        accepted(2, taker),
        cancelled(3, 1, 3, CancelReason.SELF_TRADE),
        cancelled(4, 2, 3, CancelReason.SELF_TRADE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(own, 2)]
    assert engine.book(INSTRUMENT).depth(1) == ([], [(100, 2, 1)])


def test_stp_decrement_equal_quantities_removes_both(engine: AnyEngine) -> None:
    own = sell(1, 4, 100, account=1)
    feed(engine, own)
    taker = buy(2, 4, 100, account=1, stp=DECREMENT)
    assert engine.process(taker) == [
        accepted(2, taker),
        cancelled(3, 1, 4, CancelReason.SELF_TRADE),
        cancelled(4, 2, 4, CancelReason.SELF_TRADE),
    ]
    assert engine.book(INSTRUMENT).orders() == []


def test_stp_mode_of_the_taker_decides(engine: AnyEngine) -> None:
    # Given an own ask that itself says CANCEL_OLDEST
    own = sell(1, 5, 100, account=1, stp=CANCEL_OLDEST)
    feed(engine, own)
    # When a CANCEL_NEWEST buy of the same account meets it
    taker = buy(2, 5, 100, account=1, stp=CANCEL_NEWEST)
    # Then the taker is the one cancelled
    assert engine.process(taker) == [
        accepted(2, taker),
        cancelled(3, 2, 5, CancelReason.SELF_TRADE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(own)]


def test_stp_applies_to_market_orders(engine: AnyEngine) -> None:
    other, own = sell(1, 1, 100, account=2), sell(2, 1, 101, account=1)
    feed(engine, other, own)
    taker = buy(3, 5, None, account=1, stp=CANCEL_OLDEST)
    assert engine.process(taker) == [
        accepted(3, taker),
        trade(4, 100, 1, other, taker),
        cancelled(5, 2, 1, CancelReason.SELF_TRADE),
        cancelled(6, 3, 4, CancelReason.MARKET_REMAINDER),
    ]


# ------------------------------------------------------------------------------------------
# Self-trade prevention by group: the exchange passes each account's organization as the
# order's ``stp_group``, so that two accounts of one firm never trade with each other. Group
# numbers here are ones no account has.

FIRM = 70
OTHER_FIRM = 71


def test_an_orders_stp_group_is_its_account_unless_given() -> None:
    assert buy(1, 5, 100, account=3).stp_group == 3
    assert buy(1, 5, 100, account=3, stp_group=FIRM).stp_group == FIRM
    assert RestingOrder(1, INSTRUMENT, 3, Side.BUY, 100, 5, GTC, CANCEL_NEWEST, None).stp_group == 3


def group_setup(engine: AnyEngine) -> tuple[NewOrder, NewOrder, NewOrder]:
    """Asks at 100: another firm's 2 lots, 3 lots of account 5 of the taker's firm, then
    another firm's 4 lots (as in ``self_trade_setup``, the middle one of another account)."""
    first, sibling, last = (
        sell(1, 2, 100, account=2),
        sell(2, 3, 100, account=5, stp_group=FIRM),
        sell(3, 4, 100, account=3),
    )
    feed(engine, first, sibling, last)
    return first, sibling, last


@pytest.mark.parametrize("stp", list(SelfTradePrevention))
def test_stp_applies_between_two_accounts_of_one_group(
    engine: AnyEngine, stp: SelfTradePrevention
) -> None:
    first, sibling, last = group_setup(engine)
    # When account 1 of the same firm buys 10
    taker = buy(4, 10, 100, account=1, stp=stp, stp_group=FIRM)
    events = engine.process(taker)
    # Then it trades with the other firms only, and its mode decides as for its own orders
    expected: dict[SelfTradePrevention, tuple[list[Event], list[RestingOrder]]] = {
        CANCEL_NEWEST: (
            [cancelled(6, 4, 8, CancelReason.SELF_TRADE)],
            [resting(sibling), resting(last)],
        ),
        CANCEL_OLDEST: (
            [cancelled(6, 2, 3, CancelReason.SELF_TRADE), trade(7, 100, 4, last, taker)],
            [resting(taker, 4)],
        ),
        CANCEL_BOTH: (
            [
                cancelled(6, 2, 3, CancelReason.SELF_TRADE),
                cancelled(7, 4, 8, CancelReason.SELF_TRADE),
            ],
            [resting(last)],
        ),
        DECREMENT: (
            [
                cancelled(6, 2, 3, CancelReason.SELF_TRADE),
                cancelled(7, 4, 3, CancelReason.SELF_TRADE),
                trade(8, 100, 4, last, taker),
            ],
            [resting(taker, 1)],
        ),
    }
    after_first, book = expected[stp]
    assert events == [accepted(4, taker), trade(5, 100, 2, first, taker), *after_first]
    assert engine.book(INSTRUMENT).orders() == book
    assert all(
        event.maker_order_id != sibling.order_id for event in events if isinstance(event, Trade)
    )


def test_accounts_of_different_groups_trade_and_the_trade_names_the_accounts(
    engine: AnyEngine,
) -> None:
    # Given an ask of account 5 of one firm
    ask = sell(1, 3, 100, account=5, stp_group=FIRM)
    feed(engine, ask)
    # When account 6 of another firm buys it
    taker = buy(2, 3, 100, account=6, stp_group=OTHER_FIRM)
    # Then they trade
    assert engine.process(taker) == [accepted(2, taker), trade(3, 100, 3, ask, taker)]


def test_one_account_in_two_groups_trades_with_itself(engine: AnyEngine) -> None:
    # The group alone decides: the engine never looks at the accounts for self-trades.
    ask = sell(1, 3, 100, account=1, stp_group=FIRM)
    feed(engine, ask)
    taker = buy(2, 3, 100, account=1, stp_group=OTHER_FIRM)
    assert engine.process(taker) == [accepted(2, taker), trade(3, 100, 3, ask, taker)]


def test_fok_counts_no_quantity_of_its_own_group(engine: AnyEngine) -> None:
    # Given a sibling account's ask ahead of enough liquidity from another firm
    sibling, other = sell(1, 5, 100, account=5, stp_group=FIRM), sell(2, 5, 100, account=2)
    feed(engine, sibling, other)
    # When the firm's account 1 sends a FOK buy for 10
    taker = buy(3, 10, 100, account=1, tif=FOK, stp=CANCEL_NEWEST, stp_group=FIRM)
    # Then the sibling's 5 lots do not count: it is not fillable and nothing changes
    assert engine.process(taker) == [
        accepted(3, taker),
        cancelled(4, 3, 10, CancelReason.FOK_NOT_FILLABLE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(sibling), resting(other)]


def test_replace_keeps_the_orders_stp_group(engine: AnyEngine) -> None:
    # Given a bid of account 1 and an ask of account 5, both of one firm
    bid = buy(1, 5, 99, account=1, stp=CANCEL_NEWEST, stp_group=FIRM)
    sibling_ask = sell(2, 2, 101, account=5, stp_group=FIRM)
    feed(engine, bid, sibling_ask)
    # When the bid is replaced through the ask
    # Then it meets its own firm: prevented, not traded
    assert engine.process(Replace(1, INSTRUMENT, 101, 5)) == [
        Replaced(3, 1, INSTRUMENT, 101, 5, False),
        cancelled(4, 1, 5, CancelReason.SELF_TRADE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(sibling_ask)]


def test_restore_keeps_the_stp_group(engine_class: type[AnyEngine]) -> None:
    # Given a restored ask of account 5 of a firm
    engine = engine_class()
    ask = sell(1, 3, 100, account=5, stp_group=FIRM)
    engine.restore([resting(ask)])
    assert engine.book(INSTRUMENT).orders()[0].stp_group == FIRM
    # When the firm's account 1 buys
    taker = buy(2, 3, 100, account=1, stp=CANCEL_OLDEST, stp_group=FIRM)
    # Then self-trade prevention applies
    assert engine.process(taker) == [
        accepted(1, taker),
        cancelled(2, 1, 3, CancelReason.SELF_TRADE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(taker)]


# ------------------------------------------------------------------------------------------
# Replace.


def two_bids(engine: AnyEngine) -> tuple[NewOrder, NewOrder]:
    first, second = buy(1, 5, 100, account=1), buy(2, 5, 100, account=2)
    feed(engine, first, second)
    return first, second


def test_replace_smaller_quantity_same_price_keeps_priority(engine: AnyEngine) -> None:
    first, second = two_bids(engine)
    # When the first bid is reduced to 3 at the same price
    assert engine.process(Replace(1, INSTRUMENT, 100, 3)) == [
        Replaced(3, 1, INSTRUMENT, 100, 3, True)
    ]
    # Then it is still first in line
    taker = sell(3, 4, 100, account=3)
    assert engine.process(taker) == [
        accepted(4, taker),
        trade(5, 100, 3, first, taker),
        trade(6, 100, 1, second, taker),
    ]
    assert engine.book(INSTRUMENT).depth(1) == ([(100, 4, 1)], [])


def test_replace_unchanged_keeps_priority(engine: AnyEngine) -> None:
    two_bids(engine)
    assert engine.process(Replace(1, INSTRUMENT, 100, 5)) == [
        Replaced(3, 1, INSTRUMENT, 100, 5, True)
    ]
    assert [order.order_id for order in engine.book(INSTRUMENT).orders()] == [1, 2]


def test_replace_larger_quantity_loses_priority(engine: AnyEngine) -> None:
    first, second = two_bids(engine)
    assert engine.process(Replace(1, INSTRUMENT, 100, 8)) == [
        Replaced(3, 1, INSTRUMENT, 100, 8, False)
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(second), resting(first, 8)]
    assert engine.book(INSTRUMENT).depth(1) == ([(100, 13, 2)], [])


def test_replace_new_price_loses_priority(engine: AnyEngine) -> None:
    first, second = two_bids(engine)
    # When the first bid moves away and back
    assert feed(engine, Replace(1, INSTRUMENT, 99, 5), Replace(1, INSTRUMENT, 100, 5)) == [
        Replaced(3, 1, INSTRUMENT, 99, 5, False),
        Replaced(4, 1, INSTRUMENT, 100, 5, False),
    ]
    # Then it is behind the second bid
    assert engine.book(INSTRUMENT).orders() == [resting(second), resting(first)]


def test_replace_that_crosses_matches_like_a_new_arrival(engine: AnyEngine) -> None:
    # Given a bid at 100 and an ask for 2 at 101
    bid, ask = buy(1, 5, 100, account=1), sell(2, 2, 101, account=2)
    feed(engine, bid, ask)
    # When the bid is replaced to 5 at 102
    events = engine.process(Replace(1, INSTRUMENT, 102, 5))
    # Then it trades at the ask's price and its remainder rests at 102
    assert events == [
        Replaced(3, 1, INSTRUMENT, 102, 5, False),
        Trade(4, INSTRUMENT, 101, 2, 2, 1, 2, 1, Side.BUY),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(bid, 3, price=102)]


def test_replace_to_zero_cancels(engine: AnyEngine) -> None:
    two_bids(engine)
    assert engine.process(Replace(1, INSTRUMENT, 100, 0)) == [
        cancelled(3, 1, 5, CancelReason.REPLACED_TO_ZERO)
    ]
    assert [order.order_id for order in engine.book(INSTRUMENT).orders()] == [2]


def test_replace_rejections_leave_the_order_untouched(engine: AnyEngine) -> None:
    _first, second = two_bids(engine)
    taker = sell(3, 5, 100, account=3)
    feed(engine, taker)  # fills the first bid: seq 3, 4
    assert feed(
        engine,
        Replace(2, INSTRUMENT, None, 5),
        Replace(2, INSTRUMENT, 0, 5),
        Replace(2, INSTRUMENT, 100, -1),
        Replace(1, INSTRUMENT, 100, 3),
        Replace(99, INSTRUMENT, 100, 3),
        Replace(2, OTHER_INSTRUMENT, 100, 3),
    ) == [
        rejected(5, 2, RejectReason.INVALID_PRICE),
        rejected(6, 2, RejectReason.INVALID_PRICE),
        rejected(7, 2, RejectReason.INVALID_QUANTITY),
        rejected(8, 1, RejectReason.UNKNOWN_ORDER),
        rejected(9, 99, RejectReason.UNKNOWN_ORDER),
        rejected(10, 2, RejectReason.UNKNOWN_ORDER, instrument=OTHER_INSTRUMENT),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(second)]
    assert engine.instruments() == [INSTRUMENT]


def test_post_only_replace_that_would_cross_is_rejected(engine: AnyEngine) -> None:
    # Given a post-only bid at 99 and an ask at 101
    bid, ask = buy(1, 5, 99, post_only=True), sell(2, 5, 101, account=2)
    feed(engine, bid, ask)
    # When the bid is replaced to 101
    # Then the replace is rejected and the original order is untouched
    assert engine.process(Replace(1, INSTRUMENT, 101, 5)) == [
        rejected(3, 1, RejectReason.POST_ONLY_WOULD_CROSS)
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(bid), resting(ask)]
    # And a non-crossing replace keeps it post-only
    assert engine.process(Replace(1, INSTRUMENT, 100, 5)) == [
        Replaced(4, 1, INSTRUMENT, 100, 5, False)
    ]
    assert engine.book(INSTRUMENT).orders()[0] == resting(bid, price=100)


def test_replace_keeps_account_side_stp_tif_and_expiry(engine: AnyEngine) -> None:
    # Given a GTD bid with DECREMENT
    bid = buy(1, 5, 99, account=4, tif=GTD, expires_at=50, stp=DECREMENT)
    feed(engine, bid)
    # When it is replaced to another price and quantity
    engine.process(Replace(1, INSTRUMENT, 98, 7))
    # Then everything else is kept, including its expiry
    assert engine.book(INSTRUMENT).orders() == [resting(bid, 7, price=98)]
    assert engine.process(Tick(50)) == [cancelled(3, 1, 7, CancelReason.EXPIRED)]


def test_replace_uses_the_orders_stp_mode(engine: AnyEngine) -> None:
    bid, own_ask = buy(1, 5, 99, account=1, stp=CANCEL_NEWEST), sell(2, 2, 101, account=1)
    feed(engine, bid, own_ask)
    assert engine.process(Replace(1, INSTRUMENT, 101, 5)) == [
        Replaced(3, 1, INSTRUMENT, 101, 5, False),
        cancelled(4, 1, 5, CancelReason.SELF_TRADE),
    ]
    assert engine.book(INSTRUMENT).orders() == [resting(own_ask)]


# ------------------------------------------------------------------------------------------
# Rejections and cancels.


@pytest.mark.parametrize("qty", [0, -1])
def test_non_positive_quantity_is_rejected(engine: AnyEngine, qty: int) -> None:
    assert engine.process(buy(1, qty, 100)) == [rejected(1, 1, RejectReason.INVALID_QUANTITY)]


@pytest.mark.parametrize("price", [0, -5])
def test_non_positive_price_is_rejected(engine: AnyEngine, price: int) -> None:
    assert engine.process(buy(1, 5, price)) == [rejected(1, 1, RejectReason.INVALID_PRICE)]


def test_duplicate_order_ids_are_rejected_live_or_dead(engine: AnyEngine) -> None:
    # Given a live order 1, a filled order 2 and a cancelled order 4
    feed(
        engine,
        buy(1, 5, 99),
        sell(2, 1, 101),
        buy(3, 1, 101, account=2),
        buy(4, 1, 98),
        Cancel(4, INSTRUMENT),
    )
    assert engine.seq == 6
    # When any of those ids is used again
    # Then it is rejected
    assert feed(engine, sell(1, 1, 105), sell(2, 1, 105), sell(4, 1, 105)) == [
        rejected(7, 1, RejectReason.DUPLICATE_ORDER_ID),
        rejected(8, 2, RejectReason.DUPLICATE_ORDER_ID),
        rejected(9, 4, RejectReason.DUPLICATE_ORDER_ID),
    ]


def test_order_ids_are_scoped_to_the_instrument(engine: AnyEngine) -> None:
    feed(engine, buy(1, 5, 99))
    other = buy(1, 5, 99, instrument=OTHER_INSTRUMENT)
    assert engine.process(other) == [accepted(2, other)]


def test_cancel_removes_the_open_quantity(engine: AnyEngine) -> None:
    # Given a bid for 5 partly filled by 2
    feed(engine, buy(1, 5, 100), sell(2, 2, 100, account=2))
    # When it is cancelled
    # Then the remaining 3 lots are removed
    assert engine.process(Cancel(1, INSTRUMENT)) == [cancelled(4, 1, 3, CancelReason.USER)]
    assert engine.book(INSTRUMENT).orders() == []
    assert engine.book(INSTRUMENT).depth(5) == ([], [])


def test_cancel_of_unknown_order_is_rejected(engine: AnyEngine) -> None:
    # Given a filled order 1, a cancelled order 3 and a live order 4
    feed(
        engine,
        buy(1, 1, 100),
        sell(2, 1, 100, account=2),
        buy(3, 1, 99),
        Cancel(3, INSTRUMENT),
        buy(4, 1, 98),
    )
    before = engine.seq
    # When cancels name those, a never-seen id, and the live order in the wrong instrument
    events = feed(
        engine,
        Cancel(1, INSTRUMENT),
        Cancel(3, INSTRUMENT),
        Cancel(77, INSTRUMENT),
        Cancel(4, OTHER_INSTRUMENT),
    )
    # Then all are unknown orders, the live order stays and no book is created
    assert events == [
        rejected(before + 1, 1, RejectReason.UNKNOWN_ORDER),
        rejected(before + 2, 3, RejectReason.UNKNOWN_ORDER),
        rejected(before + 3, 77, RejectReason.UNKNOWN_ORDER),
        rejected(before + 4, 4, RejectReason.UNKNOWN_ORDER, instrument=OTHER_INSTRUMENT),
    ]
    assert [order.order_id for order in engine.book(INSTRUMENT).orders()] == [4]
    assert engine.instruments() == [INSTRUMENT]


def test_validation_order_is_documented(engine: AnyEngine) -> None:
    # Quantity is checked before price, price before the duplicate check, and so on.
    feed(engine, buy(1, 5, 99))
    assert feed(
        engine,
        buy(1, 0, 0),
        buy(1, 5, 0),
        buy(1, 5, None, post_only=True),
        buy(2, 5, None, post_only=True, tif=GTD),
        buy(2, 5, 100, post_only=True, tif=IOC),
    ) == [
        rejected(2, 1, RejectReason.INVALID_QUANTITY),
        rejected(3, 1, RejectReason.INVALID_PRICE),
        rejected(4, 1, RejectReason.DUPLICATE_ORDER_ID),
        rejected(5, 2, RejectReason.POST_ONLY_MARKET),
        rejected(6, 2, RejectReason.POST_ONLY_TIME_IN_FORCE),
    ]


# ------------------------------------------------------------------------------------------
# Sequence numbers, values and engine management.


def test_sequence_numbers_start_after_start_seq(engine_class: type[AnyEngine]) -> None:
    engine = engine_class(start_seq=41)
    assert engine.seq == 41
    order = buy(1, 5, 100)
    assert engine.process(order) == [accepted(42, order)]
    assert engine.process(Tick(1)) == []
    assert engine.seq == 42
    other = sell(2, 5, 100, account=2, instrument=OTHER_INSTRUMENT)
    assert engine.process(other) == [accepted(43, other)]
    assert engine.seq == 43


def test_events_are_frozen_values(engine: AnyEngine) -> None:
    (event,) = engine.process(buy(1, 5, 100))
    assert event == accepted(1, buy(1, 5, 100))
    assert hash(event) == hash(accepted(1, buy(1, 5, 100)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.qty = 3  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


def test_enumerations_are_lowercase_strings(engine: AnyEngine) -> None:
    assert Side.BUY == "buy" and TimeInForce.FOK == "fok"
    assert SelfTradePrevention.CANCEL_NEWEST == "cancel_newest"
    assert RejectReason.POST_ONLY_WOULD_CROSS == "MATCHING_POST_ONLY_WOULD_CROSS"
    assert all(reason.startswith("MATCHING_") for reason in RejectReason)
    # Plain strings (as stored by the database) are accepted and turned into members
    order = NewOrder(1, INSTRUMENT, 1, "sell", 5, 100, "gtc", False, "decrement", None)  # type: ignore[arg-type]
    assert order.side is Side.SELL and order.stp is DECREMENT
    engine.process(order)
    assert engine.book(INSTRUMENT).orders()[0].side is Side.SELL


def test_instruments_and_drop(engine: AnyEngine) -> None:
    feed(engine, buy(1, 5, 100, instrument=3), buy(1, 5, 100, instrument=1))
    assert engine.instruments() == [1, 3]
    engine.drop(3)
    assert engine.instruments() == [1]
    # A dropped book forgets its orders and its order ids
    assert engine.book(3).orders() == []
    again = buy(1, 5, 100, instrument=3)
    assert engine.process(again) == [accepted(3, again)]
    engine.drop(42)


def test_restore_loads_orders_without_events(engine_class: type[AnyEngine]) -> None:
    # Given a book with orders at two prices on both sides
    original = engine_class()
    feed(
        original,
        buy(1, 5, 99),
        buy(2, 3, 99, account=2),
        buy(3, 1, 98),
        sell(4, 2, 101, tif=GTD, expires_at=30),
        sell(5, 2, 101, account=3, post_only=True),
        buy(6, 1, 99, instrument=OTHER_INSTRUMENT),
    )
    snapshot = original.book(INSTRUMENT).orders() + original.book(OTHER_INSTRUMENT).orders()
    # When they are restored into a new engine continuing the numbering
    restored = engine_class(start_seq=original.seq)
    restored.restore(snapshot)
    # Then the books are identical and no events were issued
    assert restored.seq == original.seq
    assert restored.instruments() == [INSTRUMENT, OTHER_INSTRUMENT]
    for instrument in (INSTRUMENT, OTHER_INSTRUMENT):
        assert restored.book(instrument).orders() == original.book(instrument).orders()
        assert restored.book(instrument).depth(5) == original.book(instrument).depth(5)
    # And both react identically: priority, ids, expiry
    commands = [sell(7, 6, 99, account=4), buy(4, 1, 90), Tick(30), Cancel(3, INSTRUMENT)]
    assert feed(restored, *commands) == feed(original, *commands)


def test_restore_rejects_duplicates_and_crossed_books(engine_class: type[AnyEngine]) -> None:
    bid = RestingOrder(1, INSTRUMENT, 1, Side.BUY, 100, 5, GTC, CANCEL_NEWEST, None)
    ask = RestingOrder(2, INSTRUMENT, 2, Side.SELL, 100, 5, GTC, CANCEL_NEWEST, None)
    with pytest.raises(AssertionError):
        engine_class().restore([bid, bid])
    with pytest.raises(AssertionError):
        engine_class().restore([bid, ask])
