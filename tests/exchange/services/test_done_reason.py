"""Why an order left the book (``Order.done_reason``): set by the matcher with the order's final
status, from the engine's reason or, for a cancel command, from who or what asked for it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from exchange.backoffice.roles import Role
from exchange.matcher import inline
from exchange.matcher.runtime import Matcher
from exchange.models import CancelReason, Order, OrderCommand, OrderTransition
from exchange.services.cancel_after import cancel_all_after_fire_due, cancel_all_after_set
from exchange.services.instruments import instrument_halt
from exchange.services.orders import order_cancel, order_replace, orders_cancel
from exchange.services.staff import order_staff_cancel
from tests.exchange import support
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_user(db):
    return support.staff_user("operations", Role.OPERATIONS)


def reload(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def final_transition(order: Order) -> OrderTransition:
    return OrderTransition.objects.filter(order=order).order_by("id").last()


def test_a_live_order_has_no_done_reason_and_a_users_cancel_says_user(future, buyer):
    order = place(buyer, future, "buy", 5, "2.45")
    assert (order.status, order.done_reason) == (Order.Status.OPEN, "")

    cancelled = order_cancel(order=order)

    assert (cancelled.status, cancelled.done_reason) == (Order.Status.CANCELLED, "user")
    assert final_transition(order).reason == "user"
    assert OrderCommand.objects.get(order=order, kind="cancel").cancel_reason == "user"


def test_a_filled_order_says_filled_and_a_partial_fill_then_cancel_says_user(future, buyer, seller):
    resting = place(seller, future, "sell", 5, "2.45")
    taker = place(buyer, future, "buy", 2, "2.45")
    assert (taker.status, taker.done_reason) == (Order.Status.FILLED, "filled")
    assert reload(resting).done_reason == ""  # Partially filled: still in the book.

    cancelled = order_cancel(order=reload(resting))

    assert (cancelled.status, cancelled.filled_quantity, cancelled.done_reason) == (
        Order.Status.CANCELLED,
        2,
        "user",
    )


@pytest.mark.parametrize(
    ("options", "price", "reason"),
    [
        ({"time_in_force": "ioc"}, "2.50", "ioc_remainder"),
        ({"time_in_force": "fok"}, "2.50", "fok_not_fillable"),
        ({"type": "market", "time_in_force": "ioc"}, None, "market_remainder"),
    ],
    ids=["ioc", "fok", "market"],
)
def test_what_the_engine_removes_says_the_engines_reason(
    future, buyer, seller, options, price, reason
):
    place(seller, future, "sell", 2, "2.50")

    order = place(buyer, future, "buy", 5, price, **options)

    assert (order.status, order.done_reason) == (Order.Status.CANCELLED, reason)
    assert final_transition(order).reason == reason


def test_a_self_trade_cancelled_by_prevention_says_self_trade(future, buyer):
    resting = place(buyer, future, "sell", 3, "2.50")

    incoming = place(buyer, future, "buy", 3, "2.50", self_trade_prevention="cancel_oldest")

    assert (reload(resting).status, reload(resting).done_reason) == (
        Order.Status.CANCELLED,
        "self_trade",
    )
    assert (incoming.status, incoming.done_reason) == (Order.Status.OPEN, "")


def test_a_replace_to_zero_says_replaced_to_zero(future, buyer):
    order = place(buyer, future, "buy", 3, "2.45")

    replaced = order_replace(order=order, price=order.price, quantity=0)

    assert (replaced.status, replaced.done_reason) == (Order.Status.CANCELLED, "replaced_to_zero")


def test_a_gtd_order_past_its_time_says_expired(future, buyer):
    now = timezone.now()
    order = place(
        buyer, future, "buy", 4, "2.45", time_in_force="gtd", expires_at=now + timedelta(minutes=5)
    )

    inline._matcher.process_instrument(future.pk, now=now + timedelta(minutes=6))

    assert (reload(order).status, reload(order).done_reason) == (Order.Status.EXPIRED, "expired")


def test_an_order_the_matcher_refuses_says_the_rejection_code(future, buyer, external_matcher):
    order = place(buyer, future, "buy", 5, "2.45")
    instrument_halt(instrument=future, actor=None, reason="incident")

    Matcher().process_pending()

    order = reload(order)
    assert (order.status, order.reject_code, order.done_reason) == (
        Order.Status.REJECTED,
        "ORDER_INSTRUMENT_HALTED",
        "ORDER_INSTRUMENT_HALTED",
    )


@pytest.mark.parametrize("reason", CancelReason.values)
def test_a_cancel_asked_for_by_anyone_says_who(futures, buyer, reason):
    orders = [
        place(buyer, futures[0], "buy", 1, "2.40"),
        place(buyer, futures[1], "sell", 1, "2.70"),
    ]

    assert orders_cancel(orders=orders, reason=reason) == 2

    for order in orders:
        order = reload(order)
        assert (order.status, order.done_reason) == (Order.Status.CANCELLED, reason)
        assert final_transition(order).reason == reason
        assert OrderCommand.objects.get(order=order, kind="cancel").cancel_reason == reason


def test_the_switch_and_staff_name_themselves(futures, buyer, staff_user):
    by_switch = place(buyer, futures[0], "buy", 1, "2.40")
    now = timezone.now()
    cancel_all_after_set(account=buyer, timeout_seconds=5, now=now)
    assert cancel_all_after_fire_due(now=now + timedelta(seconds=5)) == 1
    by_staff = place(buyer, futures[1], "buy", 1, "2.40")

    order_staff_cancel(order=by_staff, actor=staff_user, reason="client asked by phone")

    assert reload(by_switch).done_reason == CancelReason.CANCEL_ALL_AFTER
    assert reload(by_staff).done_reason == CancelReason.STAFF
    command = OrderCommand.objects.get(order=by_staff, kind="cancel")
    assert (command.cancel_reason, command.requested_by) == (CancelReason.STAFF, staff_user)


@pytest.mark.parametrize("reason", ["", "because", "USER"])
def test_a_reason_that_is_not_a_cancel_reason_is_refused_and_writes_nothing(future, buyer, reason):
    order = place(buyer, future, "buy", 1, "2.40")

    with pytest.raises(ValueError, match="is not a CancelReason"):
        orders_cancel(orders=[order], reason=reason)
    with pytest.raises(ValueError, match="is not a CancelReason"):
        order_cancel(order=order, reason=reason)

    assert not OrderCommand.objects.filter(kind="cancel").exists()
    assert reload(order).status == Order.Status.OPEN
