"""Cancelling and replacing orders, and orders the matcher refuses after acceptance."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

import matching
from exchange import calendar
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.matcher.runtime import Matcher
from exchange.models import (
    CancelReason,
    Instrument,
    Order,
    OrderCommand,
    OrderTransition,
    Trade,
)
from exchange.services import orders as orders_service
from exchange.services.instruments import instrument_halt, instrument_set_status
from exchange.services.orders import (
    order_cancel,
    order_place,
    order_replace,
    orders_cancel,
    orders_cancel_each,
)
from ledger.models import Hold
from tests.exchange.support import assert_as_stored, assert_consistent, place, status_path

pytestmark = pytest.mark.django_db

NEW, OPEN, PARTIAL, FILLED = "new", "open", "partially_filled", "filled"
CANCELLED, REJECTED = "cancelled", "rejected"


def reload(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def assert_refused(row_counts, code, call, **arguments):
    """The call is refused with ``code`` and writes nothing at all."""
    before = row_counts()
    with pytest.raises(OrderRejected) as raised:
        call(**arguments)
    assert raised.value.code == code
    assert row_counts() == before


# Cancel ---------------------------------------------------------------------------------


def test_cancel_removes_a_resting_order(future, buyer):
    order = place(buyer, future, "buy", 5, "2.45")

    cancelled = order_cancel(order=order)

    assert (cancelled.status, cancelled.cancelled_quantity, cancelled.open_quantity) == (
        CANCELLED,
        5,
        0,
    )
    assert_as_stored(cancelled)
    assert status_path(order) == [NEW, OPEN, CANCELLED]
    assert OrderTransition.objects.filter(order=order).last().reason == "user"
    command = OrderCommand.objects.filter(order=order).last()
    assert (command.kind, command.status) == (OrderCommand.Kind.CANCEL, OrderCommand.Status.DONE)
    assert_consistent(future.pk)


def test_cancel_of_a_partially_filled_order_keeps_its_fills(future, buyer, seller, admin_user):
    order = place(buyer, future, "buy", 5, "2.45")
    place(seller, future, "sell", 2, "2.45")

    cancelled = order_cancel(order=reload(order), requested_by=admin_user)

    assert (cancelled.status, cancelled.filled_quantity, cancelled.cancelled_quantity) == (
        CANCELLED,
        2,
        3,
    )
    assert OrderCommand.objects.filter(order=order).last().requested_by == admin_user
    assert status_path(order) == [NEW, OPEN, PARTIAL, CANCELLED]
    assert_consistent(future.pk)


def test_cancelled_order_no_longer_trades(future, buyer, seller):
    order = place(buyer, future, "buy", 5, "2.45")
    order_cancel(order=order)

    sell = place(seller, future, "sell", 5, "2.45")

    assert sell.status == OPEN
    assert not Trade.objects.exists()


def test_cancel_of_a_filled_order_is_refused(future, buyer, seller, row_counts):
    order = place(buyer, future, "buy", 5, "2.45")
    place(seller, future, "sell", 5, "2.45")

    assert_refused(row_counts, OrderRejectCode.NOT_LIVE, order_cancel, order=reload(order))


def test_cancel_of_a_cancelled_order_is_refused(future, buyer, row_counts):
    order = order_cancel(order=place(buyer, future, "buy", 5, "2.45"))

    assert_refused(row_counts, OrderRejectCode.NOT_LIVE, order_cancel, order=order)


def test_cancel_of_a_stale_copy_of_a_filled_order_changes_nothing(future, buyer, seller):
    # given a copy read while the order was open, filled since
    stale = place(buyer, future, "buy", 5, "2.45")
    place(seller, future, "sell", 5, "2.45")

    # when, then the matcher refuses the cancel, said as for an order seen ended
    with pytest.raises(OrderRejected) as refused:
        order_cancel(order=stale)

    assert (refused.value.code, refused.value.field) == (OrderRejectCode.NOT_LIVE, "order")
    assert refused.value.message == (
        f"Order #{stale.pk} is filled: the matcher refused the command (MATCHING_UNKNOWN_ORDER)."
    )
    assert reload(stale).status == FILLED
    command = OrderCommand.objects.filter(order=stale).last()
    assert (command.status, command.reject_code) == (
        OrderCommand.Status.REJECTED,
        matching.RejectReason.UNKNOWN_ORDER,
    )
    assert_consistent(future.pk)


# Replace --------------------------------------------------------------------------------


def test_replace_to_a_smaller_quantity_keeps_priority(future, buyer, maker, seller):
    # given two bids at one price, the buyer's first
    first = place(buyer, future, "buy", 5, "2.45")
    second = place(maker, future, "buy", 5, "2.45")
    original_priority = first.priority_sequence

    # when the first shrinks
    replaced = order_replace(order=first, price=Decimal("2.45"), quantity=3)

    # then it keeps its place
    assert (replaced.status, replaced.quantity, replaced.open_quantity) == (OPEN, 3, 3)
    assert replaced.priority_sequence == original_priority
    assert_as_stored(replaced)
    transition = OrderTransition.objects.filter(order=first).last()
    assert (transition.from_status, transition.to_status, transition.reason) == (
        OPEN,
        OPEN,
        "replaced",
    )
    place(seller, future, "sell", 3, "2.45")
    assert Trade.objects.get().maker_order == first
    assert reload(second).open_quantity == 5
    assert_consistent(future.pk)


def test_replace_to_a_larger_quantity_loses_priority(future, buyer, maker, seller):
    first = place(buyer, future, "buy", 5, "2.45")
    second = place(maker, future, "buy", 5, "2.45")

    replaced = order_replace(order=first, price=Decimal("2.45"), quantity=6)

    assert replaced.priority_sequence > second.priority_sequence
    assert OrderTransition.objects.filter(order=first).last().reason == "replaced_lost_priority"
    place(seller, future, "sell", 3, "2.45")
    assert Trade.objects.get().maker_order == second
    assert_consistent(future.pk)


def test_replace_to_another_price_and_back_loses_priority(future, buyer, maker, seller):
    first = place(buyer, future, "buy", 5, "2.45")
    second = place(maker, future, "buy", 5, "2.45")
    original_priority = first.priority_sequence

    moved = order_replace(order=first, price=Decimal("2.40"), quantity=5)
    assert (moved.price, moved.status) == (Decimal("2.40"), OPEN)
    back = order_replace(order=moved, price=Decimal("2.45"), quantity=5)

    assert back.priority_sequence > second.priority_sequence > original_priority
    place(seller, future, "sell", 7, "2.45")
    assert list(Trade.objects.order_by("sequence").values_list("maker_order", "quantity")) == [
        (second.pk, 5),
        (first.pk, 2),
    ]
    assert_consistent(future.pk)


def test_replace_that_crosses_trades(future, buyer, seller):
    ask = place(seller, future, "sell", 2, "2.50")
    bid = place(buyer, future, "buy", 5, "2.45")

    replaced = order_replace(order=bid, price=Decimal("2.55"), quantity=5)

    trade = Trade.objects.get()
    assert (trade.maker_order, trade.taker_order, trade.price, trade.quantity) == (
        ask,
        bid,
        Decimal("2.50"),
        2,
    )
    assert trade.taker_side == "buy"
    assert (replaced.status, replaced.price) == (PARTIAL, Decimal("2.55"))
    assert (replaced.quantity, replaced.filled_quantity, replaced.open_quantity) == (5, 2, 3)
    assert reload(ask).status == FILLED
    assert_consistent(future.pk)


def test_replace_quantity_is_the_new_open_quantity(future, buyer, seller):
    bid = place(buyer, future, "buy", 10, "2.45")
    place(seller, future, "sell", 4, "2.45")

    replaced = order_replace(order=reload(bid), price=Decimal("2.45"), quantity=3)

    assert (replaced.quantity, replaced.filled_quantity, replaced.open_quantity) == (7, 4, 3)
    assert replaced.status == PARTIAL
    assert replaced.priority_sequence == bid.priority_sequence
    assert_consistent(future.pk)


def test_replace_to_zero_cancels(future, buyer):
    bid = place(buyer, future, "buy", 5, "2.45")

    replaced = order_replace(order=bid, price=Decimal("2.45"), quantity=0)

    assert (replaced.status, replaced.cancelled_quantity) == (CANCELLED, 5)
    assert OrderTransition.objects.filter(order=bid).last().reason == "replaced_to_zero"
    assert_consistent(future.pk)


@pytest.mark.parametrize("price", ["2.451", "1000.5", "0"], ids=["off-tick", "off-band", "zero"])
def test_replace_to_zero_cancels_whatever_price_it_names(future, buyer, price):
    # A cancel by replace, as DELETE, is not refused for a price it does not use.
    bid = place(buyer, future, "buy", 5, "2.45")

    replaced = order_replace(order=bid, price=Decimal(price), quantity=0)

    assert (replaced.status, replaced.price, replaced.cancelled_quantity) == (
        CANCELLED,
        Decimal("2.45"),
        5,
    )
    assert OrderCommand.objects.filter(order=bid).last().price == Decimal("2.45")
    assert_consistent(future.pk)


def test_post_only_replace_that_would_cross_is_refused_by_the_matcher(future, buyer, seller):
    place(seller, future, "sell", 2, "2.50")
    bid = place(buyer, future, "buy", 5, "2.45", post_only=True)

    with pytest.raises(OrderRejected) as refused:
        order_replace(order=bid, price=Decimal("2.50"), quantity=5)

    assert (refused.value.code, refused.value.field) == ("MATCHING_POST_ONLY_WOULD_CROSS", "price")
    assert "post-only" in refused.value.message
    result = reload(bid)
    assert (result.status, result.price, result.open_quantity) == (OPEN, Decimal("2.45"), 5)
    command = OrderCommand.objects.filter(order=bid).last()
    assert (command.status, command.reject_code) == (
        OrderCommand.Status.REJECTED,
        "MATCHING_POST_ONLY_WOULD_CROSS",
    )
    assert not Trade.objects.exists()


def test_post_only_survives_a_matcher_restart(future, buyer, seller):
    # given a resting post-only bid and an ask above it
    place(seller, future, "sell", 2, "2.50")
    bid = place(buyer, future, "buy", 5, "2.45", post_only=True)

    # when the matcher restarts and the bid is replaced to cross
    from exchange.matcher import inline

    inline.reset()
    with pytest.raises(OrderRejected) as refused:
        order_replace(order=bid, price=Decimal("2.50"), quantity=5)

    # then it is refused exactly as without the restart
    assert refused.value.code == "MATCHING_POST_ONLY_WOULD_CROSS"
    assert not Trade.objects.exists()
    result = reload(bid)
    assert (result.status, result.price) == (OPEN, Decimal("2.45"))


def test_replace_of_a_gtd_order_past_its_time_is_refused_by_the_matcher(future, buyer):
    # given a GTD order whose time passes before the matcher's sweep expires it
    bid = place(
        buyer,
        future,
        "buy",
        4,
        "2.45",
        time_in_force="gtd",
        expires_at=timezone.now() + timedelta(seconds=1),
    )
    assert bid.status == OPEN
    time.sleep(1.1)

    # when it is replaced, then the matcher's refusal is raised as for an order seen ended:
    # the matcher expires the order first (releasing its collateral, so the replace itself is
    # refused as not collateralized)
    with pytest.raises(OrderRejected) as refused:
        order_replace(order=reload(bid), price=Decimal("2.40"), quantity=4)

    assert (refused.value.code, refused.value.field) == (OrderRejectCode.NOT_LIVE, "order")
    assert refused.value.message == (
        f"Order #{bid.pk} is expired: the matcher refused the command (RISK_INSUFFICIENT_FUNDS)."
    )
    assert reload(bid).status == Order.Status.EXPIRED
    assert not Trade.objects.exists()


def test_replace_not_processed_by_an_external_matcher_returns_the_order(
    future, buyer, external_matcher
):
    # given a resting post-only bid, and an external matcher that has not run yet
    bid = place(buyer, future, "buy", 5, "2.45", post_only=True)
    Matcher().process_pending()

    # when it is replaced without waiting, then it is accepted as it is
    result = order_replace(order=reload(bid), price=Decimal("2.40"), quantity=5)
    assert (result.status, result.price, result.command_pending) == (OPEN, Decimal("2.45"), True)

    # and the matcher's outcome is only known once it runs
    Matcher().process_pending()
    assert reload(bid).price == Decimal("2.40")


def test_replace_refused_by_an_external_matcher_while_waited_for_is_reported(
    future, buyer, seller, external_matcher, monkeypatch
):
    # given a resting post-only bid and an ask it would cross if repriced
    place(seller, future, "sell", 2, "2.50")
    bid = place(buyer, future, "buy", 5, "2.45", post_only=True)
    Matcher().process_pending()
    # and an external matcher that answers while the service waits for it
    waited = []

    def matcher_answers(awaited, wait_seconds):
        waited.append((awaited.kind, Matcher().process_pending()))

    monkeypatch.setattr(orders_service, "_await", matcher_answers)

    # when the bid is repriced to cross, then the matcher's refusal is raised
    with pytest.raises(OrderRejected) as refused:
        order_replace(order=reload(bid), price=Decimal("2.50"), quantity=5, wait_seconds=1)

    assert waited == [("replace", 1)]
    assert refused.value.code == "MATCHING_POST_ONLY_WOULD_CROSS"
    assert (reload(bid).status, reload(bid).price) == (OPEN, Decimal("2.45"))


def test_cancel_waits_for_an_external_matcher_and_says_when_it_did_not_answer(
    future, buyer, external_matcher, monkeypatch
):
    bid = place(buyer, future, "buy", 5, "2.45")
    Matcher().process_pending()
    monkeypatch.setattr(orders_service, "_await", lambda awaited, wait_seconds: None)

    # when the matcher has not answered within the wait, then the order comes back pending
    pending = order_cancel(order=reload(bid), wait_seconds=1)
    assert (pending.status, pending.command_pending) == (OPEN, True)

    # and once it answers, a second cancel of the now cancelled order is refused
    Matcher().process_pending()
    assert reload(bid).status == CANCELLED
    with pytest.raises(OrderRejected) as refused:
        order_cancel(order=reload(bid))
    assert refused.value.code == OrderRejectCode.NOT_LIVE


@pytest.mark.parametrize(
    ("price", "quantity", "code"),
    [
        ("2.451", 5, OrderRejectCode.PRICE_OFF_TICK),
        ("0", 5, OrderRejectCode.INVALID_PRICE),
        ("1000.5", 5, OrderRejectCode.PRICE_OUT_OF_BAND),
        ("2.45", -1, OrderRejectCode.INVALID_QUANTITY),
        ("2.45", 100_001, OrderRejectCode.QUANTITY_TOO_LARGE),
    ],
)
def test_bad_replace_is_refused_before_the_matcher(
    future, buyer, row_counts, price, quantity, code
):
    bid = place(buyer, future, "buy", 5, "2.45")

    assert_refused(
        row_counts, code, order_replace, order=bid, price=Decimal(price), quantity=quantity
    )
    assert reload(bid).status == OPEN


def test_replace_of_a_filled_order_is_refused(future, buyer, seller, row_counts):
    bid = place(buyer, future, "buy", 5, "2.45")
    place(seller, future, "sell", 5, "2.45")

    assert_refused(
        row_counts,
        OrderRejectCode.NOT_LIVE,
        order_replace,
        order=reload(bid),
        price=Decimal("2.45"),
        quantity=1,
    )


def test_replace_on_a_halted_instrument_is_refused(future, buyer, row_counts):
    bid = place(buyer, future, "buy", 5, "2.45")
    instrument_halt(instrument=future, actor=None)

    assert_refused(
        row_counts,
        OrderRejectCode.INSTRUMENT_HALTED,
        order_replace,
        order=reload(bid),
        price=Decimal("2.40"),
        quantity=5,
    )


@pytest.mark.parametrize("status", [Instrument.Status.HALTED, Instrument.Status.EXPIRED])
def test_replace_to_zero_cancels_on_an_instrument_that_stopped_trading(future, buyer, status):
    # given a resting bid, then its instrument halted (or expired, before the cycle's cancels)
    bid = place(buyer, future, "buy", 5, "2.45")
    instrument_set_status(instrument=future, status=status, actor=None)

    # when it is replaced down to nothing, as a DELETE would cancel it
    replaced = order_replace(order=reload(bid), price=Decimal("2.45"), quantity=0)

    # then it is cancelled as a replace to zero, and its collateral released
    assert (replaced.status, replaced.cancelled_quantity, replaced.done_reason) == (
        CANCELLED,
        5,
        matching.CancelReason.REPLACED_TO_ZERO,
    )
    assert not Hold.objects.filter(status=Hold.Status.PENDING).exists()
    assert Instrument.objects.get(pk=future.pk).status == status


def test_market_order_is_not_replaceable(future, buyer, seller, external_matcher, row_counts):
    # given a market order accepted but not yet matched (an ask rests, to price its collateral)
    external_matcher.EXCHANGE_MATCHER_MODE = "inline"
    place(seller, future, "sell", 3, "2.50")
    external_matcher.EXCHANGE_MATCHER_MODE = "external"
    market = place(buyer, future, "buy", 3, type="market", time_in_force="ioc")
    assert market.status == NEW

    assert_refused(
        row_counts,
        OrderRejectCode.MARKET_ORDER_NOT_REPLACEABLE,
        order_replace,
        order=market,
        price=Decimal("2.45"),
        quantity=3,
    )


# Refused by the matcher after acceptance --------------------------------------------------


def test_order_accepted_before_a_halt_is_rejected_by_the_matcher(future, buyer, external_matcher):
    # given an order accepted but not matched yet
    order = place(buyer, future, "buy", 5, "2.45")
    assert (order.status, reload(order).status) == (NEW, NEW)

    # when the instrument is halted before the matcher runs
    instrument_halt(instrument=future, actor=None, reason="incident")
    processed = Matcher().process_pending()

    # then
    order = reload(order)
    assert processed == 1
    assert (order.status, order.reject_code) == (REJECTED, "ORDER_INSTRUMENT_HALTED")
    assert status_path(order) == [NEW, REJECTED]
    command = OrderCommand.objects.get(order=order)
    assert (command.status, command.reject_code) == (
        OrderCommand.Status.REJECTED,
        "ORDER_INSTRUMENT_HALTED",
    )
    assert not Trade.objects.exists()


def test_cancel_is_still_applied_on_a_halted_instrument(future, buyer, external_matcher):
    order = place(buyer, future, "buy", 5, "2.45")
    matcher = Matcher()
    matcher.process_pending()
    instrument_halt(instrument=future, actor=None)

    order_cancel(order=reload(order))
    matcher.process_pending()

    assert reload(order).status == CANCELLED
    assert Instrument.objects.get(pk=future.pk).status == Instrument.Status.HALTED


def test_replace_to_zero_is_still_applied_on_a_halted_instrument(future, buyer, external_matcher):
    # given a resting bid
    bid = place(buyer, future, "buy", 5, "2.45")
    matcher = Matcher()
    matcher.process_pending()

    # when a replace to zero is accepted, then the instrument halted before the matcher runs
    order_replace(order=reload(bid), price=Decimal("2.45"), quantity=0)
    instrument_halt(instrument=future, actor=None, reason="incident")
    matcher.process_pending()

    # then the matcher applies it as the cancel it is, as it would a cancel
    assert (reload(bid).status, reload(bid).done_reason) == (
        CANCELLED,
        matching.CancelReason.REPLACED_TO_ZERO,
    )
    command = OrderCommand.objects.get(order=bid, kind=OrderCommand.Kind.REPLACE)
    assert command.status == OrderCommand.Status.DONE


def test_replace_accepted_before_a_halt_does_not_trade_after_it(
    future, buyer, seller, external_matcher
):
    # given a bid and an ask resting
    bid = place(buyer, future, "buy", 5, "2.45")
    place(seller, future, "sell", 5, "2.50")
    matcher = Matcher()
    matcher.process_pending()

    # when a crossing replace is accepted, then the instrument halted before the matcher runs
    order_replace(order=reload(bid), price=Decimal("2.50"), quantity=5)
    instrument_halt(instrument=future, actor=None, reason="incident")
    matcher.process_pending()

    # then nothing trades on the halted instrument
    assert not Trade.objects.exists()
    assert (reload(bid).price, reload(bid).open_quantity) == (Decimal("2.45"), 5)


def test_order_accepted_before_expiry_of_its_instrument_is_rejected_as_expired(
    future, buyer, external_matcher
):
    order = place(buyer, future, "buy", 5, "2.45")
    instrument_set_status(instrument=future, status=Instrument.Status.EXPIRED, actor=None)

    Matcher().process_pending()

    order = reload(order)
    assert (order.status, order.reject_code) == (REJECTED, "ORDER_INSTRUMENT_EXPIRED")


@pytest.mark.parametrize(
    ("after_the_close", "trades"),
    [(timedelta(microseconds=-1), True), (timedelta(0), False), (timedelta(hours=1), False)],
    ids=["a-microsecond-before", "at-the-close", "an-hour-after"],
)
def test_orders_accepted_on_the_last_trading_day_match_only_before_its_close(
    future, buyer, seller, external_matcher, after_the_close, trades
):
    # given an instrument whose last trading day is tomorrow, and an ask resting in its book
    last_trading_day = timezone.now().date() + timedelta(days=1)
    Instrument.objects.filter(pk=future.pk).update(last_trading_day=last_trading_day)
    close = calendar.close_at(last_trading_day)
    matcher = Matcher()
    ask = place(seller, future, "sell", 1, "2.50")
    matcher.process_pending(now=close - timedelta(hours=1))

    # when a crossing bid accepted before the close is matched around the close
    bid = place(buyer, future, "buy", 1, "2.50")
    matcher.process_pending(now=close + after_the_close)

    # then it trades before the close; from the close on it is refused as expired, and the
    # ask rests as it was
    if trades:
        assert (reload(bid).status, reload(ask).status) == (FILLED, FILLED)
        assert Trade.objects.get().executed_at == close - timedelta(microseconds=1)
    else:
        assert (reload(bid).status, reload(bid).reject_code) == (
            REJECTED,
            "ORDER_INSTRUMENT_EXPIRED",
        )
        assert (reload(ask).status, reload(ask).open_quantity) == (OPEN, 1)
        assert not Trade.objects.exists()


def test_orders_cancel_cancels_every_live_order_in_one_go(futures, buyer, seller):
    # given three resting bids on two books, and one order already filled
    bids = [
        order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.40"), quantity=2)
        for future in (futures[0], futures[0], futures[1])
    ]
    order_place(
        account=seller, instrument=futures[1], side="sell", price=Decimal("2.50"), quantity=1
    )
    filled = order_place(
        account=buyer, instrument=futures[1], side="buy", price=Decimal("2.50"), quantity=1
    )
    assert filled.status == Order.Status.FILLED
    held = Hold.objects.filter(status=Hold.Status.PENDING).count()
    assert held == 3

    # when all four are cancelled at once
    asked = orders_cancel(orders=[*bids, filled], reason=CancelReason.CANCEL_ALL)

    # then the three live ones are cancelled and their collateral released; the filled one
    # was not asked
    assert asked == 3
    for bid in bids:
        bid.refresh_from_db()
        assert (bid.status, bid.cancelled_quantity) == (Order.Status.CANCELLED, 2)
    assert not Hold.objects.filter(status=Hold.Status.PENDING).exists()
    assert orders_cancel(orders=bids, reason=CancelReason.CANCEL_ALL) == 0


def test_cancelling_each_of_a_list_asks_every_live_one_in_one_transaction(
    external_matcher, future, buyer, seller
):
    bids = [place(buyer, future, "buy", 1, price) for price in ("2.40", "2.41")]
    theirs = place(seller, future, "sell", 1, "2.60")
    Matcher().process_pending()
    finished = order_cancel(order=place(buyer, future, "buy", 1, "2.42"))
    Matcher().process_pending()
    ids = [bids[0].pk, theirs.pk, finished.pk, bids[1].pk]

    results = orders_cancel_each(account=buyer, order_ids=ids)

    assert [order_id for order_id, _ in results] == [ids[0], None, ids[2], ids[3]]
    first, missing, refused, last = (result for _, result in results)
    assert missing is None
    assert isinstance(refused, OrderRejected) and refused.code == OrderRejectCode.NOT_LIVE
    # asked, not yet done: the external matcher cancels them
    assert (first.status, last.status) == (Order.Status.OPEN, Order.Status.OPEN)
    assert OrderCommand.objects.filter(kind=OrderCommand.Kind.CANCEL).count() == 3  # 1 + 2
    Matcher().process_pending()
    assert [reload(order).status for order in bids] == [Order.Status.CANCELLED] * 2
    assert reload(theirs).status == Order.Status.OPEN


def test_cancelling_each_by_client_order_id_names_the_orders_found(future, buyer, seller):
    live = place(buyer, future, "buy", 1, "2.40", client_order_id="b-1")
    done = order_cancel(order=place(buyer, future, "buy", 1, "2.41", client_order_id="b-2"))
    place(seller, future, "sell", 1, "2.60", client_order_id="b-3")  # Not the buyer's.

    results = orders_cancel_each(account=buyer, client_order_ids=["b-3", "b-2", "b-1"])

    (none_id, none), (done_id, refused), (live_id, cancelled) = results
    assert (none_id, none) == (None, None)
    assert done_id == done.pk and refused.code == OrderRejectCode.NOT_LIVE
    assert (live_id, cancelled.status) == (live.pk, Order.Status.CANCELLED)


@pytest.mark.parametrize(
    "names", [{}, {"order_ids": [1], "client_order_ids": ["b-1"]}], ids=["neither", "both"]
)
def test_cancelling_each_needs_one_way_of_naming_the_orders(buyer, names):
    with pytest.raises(ValueError, match="one of them"):
        orders_cancel_each(account=buyer, **names)
    assert not OrderCommand.objects.exists()
