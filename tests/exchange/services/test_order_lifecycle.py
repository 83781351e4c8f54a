"""Orders through the services and the inline matcher: statuses, trades and their records."""

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

import matching
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.matcher import inline
from exchange.matcher.runtime import Matcher
from exchange.models import Instrument, Order, OrderCommand, OrderTransition, Trade
from tests.exchange import support
from tests.exchange.support import assert_as_stored, assert_consistent, status_path

pytestmark = pytest.mark.django_db

NEW, OPEN, PARTIAL, FILLED = "new", "open", "partially_filled", "filled"
CANCELLED, EXPIRED, REJECTED = "cancelled", "expired", "rejected"


def place(account, instrument, side, quantity, price=None, **options):
    order = support.place(account, instrument, side, quantity, price, **options)
    assert_as_stored(order)
    return order


def reload(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def test_resting_buy_is_open_after_one_recorded_transition(future, buyer):
    order = place(buyer, future, "buy", 5, "2.45")

    assert order.status == OPEN
    assert order.open_quantity == 5
    assert status_path(order) == [NEW, OPEN]
    accepted = OrderTransition.objects.filter(order=order).last()
    assert (accepted.from_status, accepted.to_status, accepted.reason) == (NEW, OPEN, "accepted")
    assert order.priority_sequence == accepted.sequence
    assert OrderCommand.objects.get(order=order).status == OrderCommand.Status.DONE
    assert not Trade.objects.exists()
    assert_consistent(future.pk)


def test_crossing_sell_trades_at_the_makers_price(future, buyer, seller):
    # given
    bid = place(buyer, future, "buy", 5, "2.45")

    # when
    sell = place(seller, future, "sell", 5, "2.40")

    # then
    trade = Trade.objects.get()
    assert trade.price == Decimal("2.45")
    assert isinstance(trade.price, Decimal)
    assert trade.quantity == 5
    assert trade.instrument == future
    assert (trade.maker_order, trade.taker_order) == (bid, sell)
    assert trade.taker_side == "sell"
    assert (trade.buyer_account, trade.seller_account) == (buyer, seller)
    assert sell.status == FILLED
    assert reload(bid).status == FILLED
    assert sell.average_fill_price == Decimal("2.45")
    assert status_path(sell) == [NEW, OPEN, FILLED]
    assert status_path(bid) == [NEW, OPEN, FILLED]
    future.refresh_from_db()
    assert trade.sequence <= future.sequence
    assert_consistent(future.pk)


def test_crossing_buy_names_the_buyer_as_taker(future, buyer, seller):
    ask = place(seller, future, "sell", 2, "2.50")

    bid = place(buyer, future, "buy", 2, "2.55")

    trade = Trade.objects.get()
    assert (trade.maker_order, trade.taker_order, trade.taker_side) == (ask, bid, "buy")
    assert (trade.buyer_account, trade.seller_account) == (buyer, seller)
    assert trade.price == Decimal("2.50")


def test_partial_fills_then_filled(future, buyer, seller, maker):
    # given
    bid = place(buyer, future, "buy", 10, "2.45")

    # when a first sell takes 3
    place(seller, future, "sell", 3, "2.45")

    # then
    bid = reload(bid)
    assert (bid.status, bid.filled_quantity, bid.open_quantity) == (PARTIAL, 3, 7)

    # when another takes the rest
    last = place(maker, future, "sell", 7, "2.40")

    # then
    bid = reload(bid)
    assert (bid.status, bid.filled_quantity, bid.open_quantity) == (FILLED, 10, 0)
    assert bid.filled_notional == Decimal("24.50")
    assert bid.average_fill_price == Decimal("2.45")
    assert last.status == FILLED
    assert status_path(bid) == [NEW, OPEN, PARTIAL, FILLED]
    assert list(Trade.objects.order_by("sequence").values_list("quantity", flat=True)) == [3, 7]
    assert_consistent(future.pk)


def test_taker_sweeping_levels_averages_its_fills_and_rests_the_rest(future, buyer, seller, maker):
    place(seller, future, "sell", 2, "2.50")
    place(maker, future, "sell", 3, "2.55")

    bid = place(buyer, future, "buy", 6, "2.60")

    assert (bid.status, bid.filled_quantity, bid.open_quantity) == (PARTIAL, 5, 1)
    assert bid.filled_notional == Decimal("12.65")
    assert bid.average_fill_price == Decimal("2.53")
    assert list(Trade.objects.order_by("sequence").values_list("price", "quantity")) == [
        (Decimal("2.50"), 2),
        (Decimal("2.55"), 3),
    ]
    assert status_path(bid) == [NEW, OPEN, PARTIAL]
    assert_consistent(future.pk)


def test_ioc_remainder_is_cancelled(future, buyer, seller):
    place(seller, future, "sell", 2, "2.50")

    ioc = place(buyer, future, "buy", 5, "2.50", time_in_force="ioc")

    assert (ioc.status, ioc.filled_quantity, ioc.cancelled_quantity) == (CANCELLED, 2, 3)
    assert status_path(ioc) == [NEW, OPEN, PARTIAL, CANCELLED]
    assert OrderTransition.objects.filter(order=ioc).last().reason == "ioc_remainder"
    assert_consistent(future.pk)


def test_ioc_without_a_counterparty_never_rests(future, buyer):
    ioc = place(buyer, future, "buy", 5, "2.50", time_in_force="ioc")

    assert (ioc.status, ioc.cancelled_quantity) == (CANCELLED, 5)
    assert inline._matcher.engine.book(future.pk).orders() == []


def test_fok_not_fillable_is_cancelled_without_trading(future, buyer, seller):
    ask = place(seller, future, "sell", 2, "2.50")

    fok = place(buyer, future, "buy", 5, "2.50", time_in_force="fok")

    assert (fok.status, fok.filled_quantity, fok.cancelled_quantity) == (CANCELLED, 0, 5)
    assert OrderTransition.objects.filter(order=fok).last().reason == "fok_not_fillable"
    assert not Trade.objects.exists()
    assert reload(ask).status == OPEN
    assert_consistent(future.pk)


def test_fok_fillable_is_filled_in_full(future, buyer, seller, maker):
    place(seller, future, "sell", 2, "2.50")
    place(maker, future, "sell", 3, "2.55")

    fok = place(buyer, future, "buy", 5, "2.55", time_in_force="fok")

    assert (fok.status, fok.filled_quantity) == (FILLED, 5)
    assert Trade.objects.count() == 2


def test_market_order_on_an_empty_book_is_rejected_at_the_door(future, buyer, row_counts):
    # given nothing resting to fill against, so nothing to price the order's collateral
    before = row_counts()

    with pytest.raises(OrderRejected) as refused:
        place(buyer, future, "buy", 3, type="market", time_in_force="ioc")

    assert refused.value.code == OrderRejectCode.NO_REFERENCE_PRICE
    assert row_counts() == replace(before, rejections=before.rejections + 1)


def test_market_order_takes_every_level_within_its_protection(future, buyer, seller, maker):
    # given asks at 2.50 and 2.70, and one far away at 9.00
    place(seller, future, "sell", 2, "2.50")
    place(maker, future, "sell", 2, "2.70")
    place(maker, future, "sell", 2, "9.00")

    market = place(buyer, future, "buy", 5, type="market", time_in_force="ioc")

    # then it fills up to 10% above the best ask it found (2.75) and no further
    assert market.protection_price == Decimal("2.75")
    assert (market.status, market.filled_quantity, market.cancelled_quantity) == (CANCELLED, 4, 1)
    assert market.filled_notional == Decimal("10.40")
    assert OrderTransition.objects.filter(order=market).last().reason == "market_remainder"
    assert_consistent(future.pk)


def test_market_sell_protection_is_below_the_best_bid_on_the_tick(future, buyer, seller):
    place(buyer, future, "buy", 2, "2.505")

    market = place(seller, future, "sell", 2, type="market", time_in_force="ioc")

    # 2.505 x 0.9 = 2.2545, down to the tick of 0.005
    assert market.protection_price == Decimal("2.250")
    assert (market.status, market.filled_quantity) == (FILLED, 2)


def test_market_fok_is_filled(future, buyer, seller):
    place(seller, future, "sell", 4, "2.50")

    market = place(buyer, future, "buy", 4, type="market", time_in_force="fok")

    assert (market.status, market.filled_quantity) == (FILLED, 4)


def test_post_only_that_would_cross_is_rejected(future, buyer, seller, row_counts):
    ask = place(seller, future, "sell", 2, "2.50")

    post = place(buyer, future, "buy", 2, "2.50", post_only=True)

    assert post.status == REJECTED
    assert post.reject_code == matching.RejectReason.POST_ONLY_WOULD_CROSS
    assert post.reject_code == "MATCHING_POST_ONLY_WOULD_CROSS"
    assert status_path(post) == [NEW, REJECTED]
    command = OrderCommand.objects.get(order=post)
    assert (command.status, command.reject_code) == (
        OrderCommand.Status.REJECTED,
        "MATCHING_POST_ONLY_WOULD_CROSS",
    )
    assert not Trade.objects.exists()
    assert reload(ask).status == OPEN
    assert_consistent(future.pk)


def test_post_only_that_does_not_cross_rests(future, buyer, seller):
    place(seller, future, "sell", 2, "2.50")

    post = place(buyer, future, "buy", 2, "2.495", post_only=True)

    assert post.status == OPEN


# Self-trade prevention -------------------------------------------------------------------


def test_stp_cancel_newest_cancels_the_incoming_order(future, buyer):
    resting = place(buyer, future, "sell", 5, "2.50")

    incoming = place(buyer, future, "buy", 3, "2.50", self_trade_prevention="cancel_newest")

    assert (incoming.status, incoming.cancelled_quantity) == (CANCELLED, 3)
    assert OrderTransition.objects.filter(order=incoming).last().reason == "self_trade"
    assert (reload(resting).status, reload(resting).open_quantity) == (OPEN, 5)
    assert not Trade.objects.exists()
    assert_consistent(future.pk)


def test_stp_cancel_oldest_cancels_the_resting_order_and_keeps_matching(future, buyer, seller):
    own = place(buyer, future, "sell", 2, "2.50")
    other = place(seller, future, "sell", 5, "2.50")

    incoming = place(buyer, future, "buy", 3, "2.50", self_trade_prevention="cancel_oldest")

    assert (reload(own).status, reload(own).cancelled_quantity) == (CANCELLED, 2)
    assert (incoming.status, incoming.filled_quantity) == (FILLED, 3)
    assert (reload(other).status, reload(other).open_quantity) == (PARTIAL, 2)
    trade = Trade.objects.get()
    assert (trade.maker_order, trade.taker_order, trade.quantity) == (other, incoming, 3)
    assert_consistent(future.pk)


def test_stp_cancel_oldest_rests_the_rest_when_nothing_else_matches(future, buyer):
    own = place(buyer, future, "sell", 2, "2.50")

    incoming = place(buyer, future, "buy", 3, "2.50", self_trade_prevention="cancel_oldest")

    assert reload(own).status == CANCELLED
    assert (incoming.status, incoming.open_quantity) == (OPEN, 3)
    assert_consistent(future.pk)


def test_stp_cancel_both(future, buyer):
    own = place(buyer, future, "sell", 2, "2.50")

    incoming = place(buyer, future, "buy", 3, "2.50", self_trade_prevention="cancel_both")

    assert (reload(own).status, reload(own).cancelled_quantity) == (CANCELLED, 2)
    assert (incoming.status, incoming.cancelled_quantity) == (CANCELLED, 3)
    assert not Trade.objects.exists()
    assert_consistent(future.pk)


def test_stp_decrement_reduces_both_without_trading(future, buyer):
    own = place(buyer, future, "sell", 5, "2.50")

    incoming = place(buyer, future, "buy", 3, "2.50", self_trade_prevention="decrement")

    own = reload(own)
    assert (own.status, own.open_quantity, own.cancelled_quantity) == (OPEN, 2, 3)
    assert (incoming.status, incoming.cancelled_quantity) == (CANCELLED, 3)
    assert not Trade.objects.exists()
    assert_consistent(future.pk)


def test_stp_decrement_rests_what_is_left_of_a_larger_incoming_order(future, buyer):
    own = place(buyer, future, "sell", 2, "2.50")

    incoming = place(buyer, future, "buy", 5, "2.50", self_trade_prevention="decrement")

    assert (reload(own).status, reload(own).cancelled_quantity) == (CANCELLED, 2)
    assert (incoming.status, incoming.open_quantity, incoming.cancelled_quantity) == (OPEN, 3, 2)
    assert_consistent(future.pk)


def test_stp_after_a_fill_leaves_a_partially_filled_order_cancelled(future, buyer, seller):
    place(seller, future, "sell", 2, "2.50")
    place(buyer, future, "sell", 5, "2.55")

    incoming = place(buyer, future, "buy", 6, "2.55", self_trade_prevention="cancel_newest")

    assert (incoming.status, incoming.filled_quantity, incoming.cancelled_quantity) == (
        CANCELLED,
        2,
        4,
    )
    assert status_path(incoming) == [NEW, OPEN, PARTIAL, CANCELLED]
    assert_consistent(future.pk)


# Expiry ---------------------------------------------------------------------------------


def test_gtd_order_expires_when_the_matcher_passes_its_expiry(future, buyer):
    # given
    now = timezone.now()
    gtd = place(
        buyer, future, "buy", 4, "2.45", time_in_force="gtd", expires_at=now + timedelta(minutes=5)
    )
    assert gtd.status == OPEN

    # when the matcher runs before, then after the expiry
    inline._matcher.process_instrument(future.pk, now=now + timedelta(minutes=4))
    assert reload(gtd).status == OPEN
    inline._matcher.process_instrument(future.pk, now=now + timedelta(minutes=6))

    # then
    gtd = reload(gtd)
    assert (gtd.status, gtd.cancelled_quantity, gtd.open_quantity) == (EXPIRED, 4, 0)
    assert status_path(gtd) == [NEW, OPEN, EXPIRED]
    assert OrderTransition.objects.filter(order=gtd).last().reason == "expired"
    assert_consistent(future.pk)


@pytest.mark.parametrize("matcher_of", ["in-memory", "restarted"])
def test_gtd_order_rests_until_a_microsecond_before_its_expiry_and_expires_at_it(
    future, buyer, external_matcher, matcher_of
):
    """Its expiry is a moment the order no longer rests at, to the microsecond, whether the
    matcher knows the book in memory or rebuilds it (and finds it due) from the database."""
    # given a GTD bid expiring at a time with microseconds, resting in a matcher's book
    expires_at = timezone.now().replace(microsecond=123457) + timedelta(minutes=5)
    gtd = support.place(buyer, future, "buy", 4, "2.45", time_in_force="gtd", expires_at=expires_at)
    matcher = Matcher()
    matcher.process_pending(now=expires_at - timedelta(minutes=1))

    # when the matcher passes a microsecond before its expiry, then at its expiry
    if matcher_of == "restarted":
        matcher = Matcher()
        matcher.rebuild_all()
    matcher.process_pending(now=expires_at - timedelta(microseconds=1))
    still = reload(gtd).status
    matcher.process_pending(now=expires_at)

    # then it rests until then, and expires at its time
    assert still == OPEN
    gtd = reload(gtd)
    assert (gtd.status, gtd.done_reason, gtd.cancelled_quantity) == (EXPIRED, "expired", 4)


def test_partially_filled_gtd_order_expires_keeping_its_fills(future, buyer, seller):
    now = timezone.now()
    gtd = place(
        buyer, future, "buy", 4, "2.45", time_in_force="gtd", expires_at=now + timedelta(minutes=5)
    )
    place(seller, future, "sell", 1, "2.45")

    processed = inline._matcher.process_pending(now=now + timedelta(hours=1))

    gtd = reload(gtd)
    assert processed == 0  # No command ran: the expiry alone brought the matcher.
    assert (gtd.status, gtd.filled_quantity, gtd.cancelled_quantity) == (EXPIRED, 1, 3)
    assert status_path(gtd) == [NEW, OPEN, PARTIAL, EXPIRED]
    assert_consistent(future.pk)


def test_expired_gtd_order_does_not_trade_with_a_later_order(future, buyer, seller):
    # given a GTD bid whose expiry has passed, not yet swept
    gtd = place(
        buyer,
        future,
        "buy",
        4,
        "2.45",
        time_in_force="gtd",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    Order.objects.filter(pk=gtd.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    inline.reset()  # A matcher that starts now sees the expiry as stored.

    # when a crossing sell arrives
    sell = place(seller, future, "sell", 4, "2.45")

    # then the expiry is applied first
    assert reload(gtd).status == EXPIRED
    assert sell.status == OPEN
    assert not Trade.objects.exists()
    assert_consistent(future.pk)


# Sequences ------------------------------------------------------------------------------


def test_matcher_records_carry_increasing_instrument_sequences(future, buyer, seller, maker):
    place(buyer, future, "buy", 5, "2.45")
    place(maker, future, "buy", 5, "2.44")
    place(seller, future, "sell", 8, "2.40")
    place(seller, future, "sell", 1, "2.50", time_in_force="ioc")

    future = Instrument.objects.get(pk=future.pk)
    matcher_transitions = list(
        OrderTransition.objects.exclude(sequence=None)
        .order_by("id")
        .values_list("sequence", flat=True)
    )
    trade_sequences = list(Trade.objects.order_by("id").values_list("sequence", flat=True))
    assert matcher_transitions == sorted(matcher_transitions)
    assert trade_sequences == sorted(set(trade_sequences))
    assert max(matcher_transitions + trade_sequences) == future.sequence
    assert_consistent(future.pk)
