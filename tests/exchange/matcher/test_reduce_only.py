"""A reducing order (``Order.reduce_only``: placed under a margin call, or staff's liquidation)
holds no margin and pays no fee, so the matcher lets it fill no more than closes its account's
position when it trades (``Matcher._reduce_only_enforce``). Acceptance checks it against the
position then; until the matcher did too, a position that shrank since by other means (another
of the account's orders once the call was cured, before the cure's cancel reached it) left it to
open a position on the other side with no margin held."""

from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.matcher.runtime import Matcher
from exchange.models import MarginCall, Order, OrderCommand, OrderTransition
from exchange.services.ledger_accounts import margin_account
from exchange.services.orders import order_replace
from exchange.services.pools import (
    demand_submit,
    pool_cut_off,
    pool_member_add,
    pool_round_close,
    pool_take_back,
)
from exchange.services.risk_cycle import margin_call_review
from ledger.models import Hold
from ledger.selectors import ledger_problems
from tests.exchange.conftest import _account
from tests.exchange.ledger_figures import position
from tests.exchange.pools.support import sponsor_pool, startup
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def _margin_call(account) -> MarginCall:
    """An open call on ``account``: it may only reduce its positions."""
    return MarginCall.objects.create(
        account=account,
        trading_date=timezone.localdate(),
        required=30_000_000_000,
        maintenance=24_000_000_000,
        held=20_000_000_000,
        deficit=0,
    )


def _cured(call: MarginCall) -> None:
    """The call cured, its cancel of the reducing orders not run yet (it runs once the cure
    commits, and a failure there is only logged)."""
    call.status = MarginCall.Status.CURED
    call.save()


def _long_under_a_call(future, seller, quantity=10) -> tuple[object, MarginCall]:
    long = _account("quill", "startup")
    place(seller, future, "sell", quantity, "2.50")
    place(long, future, "buy", quantity, "2.50")
    return long, _margin_call(long)


def _margin_held(account, symbol: str) -> int:
    return -margin_account(account, symbol).balance


def _reasons(order) -> list[str]:
    return list(OrderTransition.objects.filter(order=order).values_list("reason", flat=True))


def test_a_reducing_order_that_closes_the_position_exactly_fills_in_full(future, seller, buyer):
    # given a long of 10 under a call that offers its 10 contracts, without margin or fee
    long, _ = _long_under_a_call(future, seller)
    reducing = place(long, future, "sell", 10, "2.60")
    assert reducing.reduce_only
    assert (reducing.margin_per_contract, reducing.maker_fee_rate) == (0, 0)

    # when a bid takes all of it
    place(buyer, future, "buy", 10, "2.60")

    # then it fills in full and the long is closed
    reducing.refresh_from_db()
    assert (reducing.status, reducing.done_reason) == (Order.Status.FILLED, "filled")
    assert (reducing.filled_quantity, reducing.cancelled_quantity) == (10, 0)
    assert "reduce_only_exceeded" not in _reasons(reducing)
    assert position(long, future.symbol) == 0
    assert ledger_problems() == []


def test_an_ordinary_order_may_not_lend_its_position_to_a_reducing_one(future, seller, buyer):
    # given a long of 10 offering its 10 under a call; the call is cured, and before its cancel
    # reaches the offer the account offers the same 10 again, as an ordinary order (margin held)
    long, call = _long_under_a_call(future, seller)
    reducing = place(long, future, "sell", 10, "2.60")
    _cured(call)
    ordinary = place(long, future, "sell", 10, "2.55")
    assert not ordinary.reduce_only

    # when a bid for 20 takes both offers (the ordinary one first, at the better price)
    bid = place(buyer, future, "buy", 20, "2.60")

    # then the ordinary one closes the long and the reducing one is cancelled whole: left, it
    # sold the account 10 short with no margin held
    reducing.refresh_from_db()
    assert (reducing.status, reducing.done_reason) == (
        Order.Status.CANCELLED,
        "reduce_only_exceeded",
    )
    assert (reducing.filled_quantity, reducing.cancelled_quantity) == (0, 10)
    assert position(long, future.symbol) == 0
    bid.refresh_from_db()
    assert (bid.status, bid.filled_quantity) == (Order.Status.PARTIALLY_FILLED, 10)
    assert ledger_problems() == []


def test_a_reducing_order_keeps_what_still_closes_and_fills_it(future, seller, buyer):
    # given a long of 10 offering its 10 under a call, then (cured, before the cancel) 4 more in
    # an ordinary offer
    long, call = _long_under_a_call(future, seller)
    reducing = place(long, future, "sell", 10, "2.60")
    _cured(call)
    place(long, future, "sell", 4, "2.55")

    # when a bid for 20 takes what it can
    place(buyer, future, "buy", 20, "2.60")

    # then the reducing offer keeps the 6 the ordinary one leaves to close and fills them; the
    # other 4 are cancelled, recorded as such
    reducing.refresh_from_db()
    assert (reducing.filled_quantity, reducing.cancelled_quantity) == (6, 4)
    assert reducing.status == Order.Status.FILLED
    assert _reasons(reducing) == ["accepted", "reduce_only_exceeded", "filled"]
    assert position(long, future.symbol) == 0
    assert _margin_held(long, future.symbol) == 0
    assert ledger_problems() == []


def test_fills_earlier_in_the_batch_count(future, seller, buyer, maker, external_matcher):
    # given a long of 10 offering its 10 under a call; cured, it offers them again at 2.55
    long, call = _long_under_a_call(future, seller)
    Matcher().process_pending()
    reducing = place(long, future, "sell", 10, "2.60")
    _cured(call)
    place(long, future, "sell", 10, "2.55")
    Matcher().process_pending()

    # when one batch runs a bid taking the ordinary offer, then another reaching the reducing one
    place(buyer, future, "buy", 10, "2.55")
    place(maker, future, "buy", 10, "2.60")
    Matcher().process_pending()

    # then the second finds the long closed by the first: the reducing offer is cancelled
    reducing.refresh_from_db()
    assert (reducing.status, reducing.done_reason) == (
        Order.Status.CANCELLED,
        "reduce_only_exceeded",
    )
    assert position(long, future.symbol) == 0
    assert position(maker, future.symbol) == 0
    assert ledger_problems() == []


def test_a_replace_of_a_reducing_order_beyond_the_position_is_refused(future, seller, buyer):
    # given a long of 10 offering its 10 under a call; cured, it closes the long with an
    # ordinary offer that trades at once (its own side: the reducing offer is not met), and a
    # later call comes before the cure's cancel of the reducing offer has run
    long, call = _long_under_a_call(future, seller)
    reducing = place(long, future, "sell", 10, "2.60")
    _cured(call)
    place(buyer, future, "buy", 10, "2.50")
    place(buyer, future, "buy", 10, "2.40")
    place(long, future, "sell", 10, "2.50")
    assert position(long, future.symbol) == 0
    _margin_call(long)

    # when it moves the reducing offer onto the bid left
    with pytest.raises(OrderRejected) as refused:
        order_replace(order=reducing, price=Decimal("2.40"), quantity=10)

    # then the replace is refused, as acceptance would refuse the order now, and nothing trades
    assert refused.value.code == OrderRejectCode.REDUCE_ONLY
    assert position(long, future.symbol) == 0
    # while lowering it where it rests trades nothing, and goes through
    lowered = order_replace(order=reducing, price=Decimal("2.60"), quantity=5)
    assert (lowered.status, lowered.open_quantity) == (Order.Status.OPEN, 5)
    # and the next bid to meet it finds nothing for it to close: cancelled, nothing traded
    place(buyer, future, "buy", 5, "2.60")
    reducing.refresh_from_db()
    assert (reducing.status, reducing.done_reason) == (
        Order.Status.CANCELLED,
        "reduce_only_exceeded",
    )
    assert position(long, future.symbol) == 0
    assert ledger_problems() == []


def test_a_reducing_order_is_not_replaced_once_its_call_has_ended(future, seller, buyer):
    """A reducing order pays no fee and holds no margin because the account was under a call.
    Until 2026-12-07 a replace after the cure went through with those terms (fee rates of 0,
    ``reduce_only``), a new price and a margin of the replace's: an ordinary order in all but
    its fee."""
    # given a long of 10 offering its 10 under a call, and the call cured (its cancel of the
    # offer not run yet)
    long, call = _long_under_a_call(future, seller)
    reducing = place(long, future, "sell", 10, "2.60")
    _cured(call)
    place(buyer, future, "buy", 10, "2.55")
    commands = OrderCommand.objects.count()
    holds = Hold.objects.count()

    # when it moves the offer onto the bid
    with pytest.raises(OrderRejected) as refused:
        order_replace(order=reducing, price=Decimal("2.55"), quantity=10)

    # then the replace is refused by name and nothing was written: the offer rests as it was,
    # and the long has traded nothing
    assert refused.value.code == OrderRejectCode.MARGIN_CALL_ENDED
    assert refused.value.field == "order"
    assert OrderCommand.objects.count() == commands
    assert Hold.objects.count() == holds
    reducing.refresh_from_db()
    assert (reducing.status, reducing.price, reducing.open_quantity) == (
        Order.Status.OPEN,
        Decimal("2.60"),
        10,
    )
    assert position(long, future.symbol) == 10
    # while a replace to 0, a cancel, goes through
    cancelled = order_replace(order=reducing, price=Decimal("2.60"), quantity=0)
    assert cancelled.status == Order.Status.CANCELLED
    assert ledger_problems() == []


def test_a_reducing_replace_queued_before_the_cure_is_refused_by_the_matcher_after_it(
    future, seller, buyer, external_matcher
):
    # given a long of 10 offering its 10 under a call, which asks to move 5 of it onto a bid
    # while the call is open
    long, call = _long_under_a_call(future, seller)
    Matcher().process_pending()
    reducing = place(long, future, "sell", 10, "2.60")
    Matcher().process_pending()
    pending = order_replace(order=reducing, price=Decimal("2.55"), quantity=5)
    assert pending.command_pending
    # and the call is cured before the matcher reaches the replace, a bid at 2.55 behind it
    _cured(call)
    bid = place(buyer, future, "buy", 5, "2.55")

    # when the matcher runs them
    Matcher().process_pending()

    # then it refuses the replace by name, and the bid finds nothing: the offer would have sold
    # 5 with no fee after the call ended
    command = OrderCommand.objects.get(order=reducing, kind=OrderCommand.Kind.REPLACE)
    assert (command.status, command.reject_code) == (
        OrderCommand.Status.REJECTED,
        OrderRejectCode.MARGIN_CALL_ENDED,
    )
    reducing.refresh_from_db()
    assert (reducing.status, reducing.price, reducing.open_quantity) == (
        Order.Status.OPEN,
        Decimal("2.60"),
        10,
    )
    bid.refresh_from_db()
    assert (bid.status, bid.filled_quantity) == (Order.Status.OPEN, 0)
    assert position(long, future.symbol) == 10
    assert ledger_problems() == []


@pytest.mark.parametrize(
    ("side", "resting", "crossing"),
    [("buy", "2.00", "2.40"), ("sell", "3.00", "2.60")],
    ids=["a bid adding to the long", "an offer on ordinary terms"],
)
def test_an_order_placed_before_a_call_keeps_its_price_under_it(
    future, seller, buyer, side, resting, crossing
):
    """Under a call the account may only reduce its positions. Until 2026-12-07 only the
    quantity of an order placed before the call was held: moved to a new price, a bid far
    below the market could buy at once, adding to a position the call says the account cannot
    carry; an offer, sell beyond the position on ordinary terms, without the matcher's cap
    that holds a reducing order to what closes it."""
    # given a long of 10 with an ordinary order resting away from the market, placed before a
    # call came; another account's order waits where the move would meet it
    long = _account("quill", "startup")
    place(seller, future, "sell", 10, "2.50")
    place(long, future, "buy", 10, "2.50")
    ordinary = place(long, future, side, 5, resting)
    call = _margin_call(long)
    other = place(seller if side == "buy" else buyer, future, _other(side), 5, crossing)
    commands, holds = OrderCommand.objects.count(), Hold.objects.count()

    # when it moves the order onto it, with its quantity or less
    for quantity in (5, 2):
        with pytest.raises(OrderRejected) as refused:
            order_replace(order=ordinary, price=Decimal(crossing), quantity=quantity)

        # then the replace is refused by name and nothing was written: nothing traded
        assert (refused.value.code, refused.value.field) == (OrderRejectCode.REDUCE_ONLY, "price")
        assert OrderCommand.objects.count() == commands
        assert Hold.objects.count() == holds
    ordinary.refresh_from_db()
    assert (ordinary.status, ordinary.price, ordinary.open_quantity) == (
        Order.Status.OPEN,
        Decimal(resting),
        5,
    )
    other.refresh_from_db()
    assert other.filled_quantity == 0
    assert position(long, future.symbol) == 10
    # while lowering it at its price goes through, and so does a cancel
    lowered = order_replace(order=ordinary, price=Decimal(resting), quantity=3)
    assert (lowered.status, lowered.price, lowered.open_quantity) == (
        Order.Status.OPEN,
        Decimal(resting),
        3,
    )
    cancelled = order_replace(order=ordinary, price=Decimal(crossing), quantity=0)
    assert cancelled.status == Order.Status.CANCELLED
    # and an order placed under the call as reducing may move, held to what it closes
    reducing = place(long, future, "sell", 5, "3.00")
    assert reducing.reduce_only
    moved = order_replace(order=reducing, price=Decimal("2.90"), quantity=5)
    assert (moved.status, moved.price) == (Order.Status.OPEN, Decimal("2.90"))
    assert call.status == MarginCall.Status.OPEN
    assert ledger_problems() == []


def _other(side: str) -> str:
    return "sell" if side == "buy" else "buy"


def test_a_replace_queued_before_a_call_is_refused_by_the_matcher_under_it(
    future, seller, external_matcher
):
    """Acceptance reads the call as it is then: a replace accepted just before the call
    opened may reach the matcher after. Until 2026-12-07 it moved the order and traded."""
    # given a long of 10 with a bid far below the market, asking to move it onto an offer
    long = _account("quill", "startup")
    place(seller, future, "sell", 10, "2.50")
    place(long, future, "buy", 10, "2.50")
    bid = place(long, future, "buy", 5, "2.00")
    Matcher().process_pending()
    pending = order_replace(order=bid, price=Decimal("2.40"), quantity=5)
    assert pending.command_pending
    # and a call opens before the matcher reaches the replace, an offer at 2.40 behind it
    _margin_call(long)
    offer = place(seller, future, "sell", 5, "2.40")

    # when the matcher runs them
    Matcher().process_pending()

    # then it refuses the replace by name; the bid rests where it was and nothing traded
    command = OrderCommand.objects.get(order=bid, kind=OrderCommand.Kind.REPLACE)
    assert (command.status, command.reject_code) == (
        OrderCommand.Status.REJECTED,
        OrderRejectCode.REDUCE_ONLY,
    )
    bid.refresh_from_db()
    assert (bid.status, bid.price, bid.open_quantity) == (Order.Status.OPEN, Decimal("2.00"), 5)
    offer.refresh_from_db()
    assert (offer.status, offer.filled_quantity) == (Order.Status.OPEN, 0)
    assert position(long, future.symbol) == 10
    # and the refusal reads as the call's, with the holds of the replace released
    assert ledger_problems() == []
    assert not Hold.objects.filter(
        idempotency_key__startswith=f"command:{command.pk}:", status=Hold.Status.PENDING
    ).exists()


def test_a_cure_cancels_a_reducing_order_an_earlier_cure_left_working(
    future, seller, django_capture_on_commit_callbacks
):
    """The cancel of the reducing orders runs after the cure commits, and a failure there is
    only logged. Until 2026-12-07 the next cure cancelled only the orders placed under its own
    call, so one left from an earlier call kept working without margin or fee for good."""
    # given a long of 10 offering its 10 under a call that a review cured, its cancel of the
    # offer lost (never run)
    long, call = _long_under_a_call(future, seller)
    reducing = place(long, future, "sell", 10, "2.60")
    assert margin_call_review(call).status == MarginCall.Status.CURED
    reducing.refresh_from_db()
    assert reducing.status == Order.Status.OPEN
    # and a later call on the account
    later = _margin_call(long)

    # when a review cures that one, its cancel run
    with django_capture_on_commit_callbacks(execute=True):
        assert margin_call_review(later).status == MarginCall.Status.CURED

    # then the offer left from the first call is cancelled too
    reducing.refresh_from_db()
    assert (reducing.status, reducing.done_reason) == (Order.Status.CANCELLED, "margin_call_cured")
    assert ledger_problems() == []


def test_a_take_back_under_a_call_leaves_the_reducing_offer_no_more_than_it_closes(
    future, seller, buyer
):
    # given a pool member holding 10 of the pool's contracts, under a call, offering 6 of them
    _, sam, pool = sponsor_pool()
    ada = pool_member_add(pool=pool, organization=startup("ada", "200000"), priority=10, actor=sam)
    demand_submit(
        member=ada,
        sku=future.sku,
        region=future.region,
        months=[future.delivery_start],
        gpus=10,
        limit_price=Decimal("2.50"),
        actor=None,
    )
    place(seller, future, "sell", 10, "2.45")
    pool_round_close(round_=pool_cut_off(pool=pool, actor=None), actor=None)
    assert position(ada.account, future.symbol) == 10
    call = _margin_call(ada.account)
    reducing = place(ada.account, future, "sell", 6, "2.60")

    # when the sponsor takes back the 4 not offered, the call is cured (its cancel not run
    # yet) and ada offers 3 more as an ordinary order
    pool_take_back(member=ada, instrument=future, quantity=4, actor=sam)
    _cured(call)
    place(ada.account, future, "sell", 3, "2.55")
    place(buyer, future, "buy", 10, "2.60")

    # then of the 6 the take-back left, the reducing offer fills the 3 the ordinary one does
    # not close, and no more
    reducing.refresh_from_db()
    assert (reducing.filled_quantity, reducing.cancelled_quantity) == (3, 3)
    assert position(ada.account, future.symbol) == 0
    assert ledger_problems() == []
