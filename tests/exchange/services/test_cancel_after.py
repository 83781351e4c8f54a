"""The dead man's switch (``exchange.services.cancel_after``): armed, armed again, disarmed,
and fired by the sweep once its time has come."""

from datetime import timedelta

import pytest
from django.utils import timezone

from exchange import tasks
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import CancelAllTimer, Order
from exchange.services import cancel_after
from exchange.services.cancel_after import (
    TIMEOUT_SECONDS_MAX,
    TIMEOUT_SECONDS_MIN,
    cancel_all_after_fire_due,
    cancel_all_after_set,
)
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

OPEN, CANCELLED = Order.Status.OPEN, Order.Status.CANCELLED


def statuses(*orders: Order) -> list[str]:
    return [Order.objects.get(pk=order.pk).status for order in orders]


def test_a_switch_fires_at_its_time_and_cancels_only_its_accounts_live_orders(
    futures, buyer, seller
):
    now = timezone.now()
    mine = [
        place(buyer, futures[0], "buy", 1, "2.400"),
        place(buyer, futures[1], "sell", 2, "2.700"),
    ]
    filled = place(buyer, futures[0], "sell", 1, "2.500")
    place(seller, futures[0], "buy", 1, "2.500")
    theirs = place(seller, futures[1], "buy", 1, "2.300")
    timer = cancel_all_after_set(account=buyer, timeout_seconds=30, now=now)
    assert (timer.timeout_seconds, timer.fires_at) == (30, now + timedelta(seconds=30))

    assert cancel_all_after_fire_due(now=now + timedelta(seconds=29)) == 0
    assert statuses(*mine) == [OPEN, OPEN]

    assert cancel_all_after_fire_due(now=now + timedelta(seconds=30)) == 1
    assert statuses(*mine) == [CANCELLED, CANCELLED]
    assert statuses(filled, theirs) == [Order.Status.FILLED, OPEN]
    assert not CancelAllTimer.objects.exists()  # Fired: disarmed.
    assert cancel_all_after_fire_due(now=now + timedelta(seconds=31)) == 0


def test_arming_again_moves_the_time_and_zero_disarms(future, buyer):
    now = timezone.now()
    order = place(buyer, future, "buy", 1, "2.400")
    cancel_all_after_set(account=buyer, timeout_seconds=10, now=now)

    again = cancel_all_after_set(account=buyer, timeout_seconds=10, now=now + timedelta(seconds=8))
    assert cancel_all_after_fire_due(now=now + timedelta(seconds=12)) == 0
    assert again.fires_at == now + timedelta(seconds=18)
    assert CancelAllTimer.objects.get().fires_at == again.fires_at

    assert cancel_all_after_set(account=buyer, timeout_seconds=0) is None
    assert cancel_all_after_fire_due(now=now + timedelta(hours=1)) == 0
    assert statuses(order) == [OPEN]
    assert cancel_all_after_set(account=buyer, timeout_seconds=0) is None  # Already disarmed.


@pytest.mark.parametrize("timeout", [5, 0], ids=["armed-again", "disarmed"])
def test_a_switch_past_its_time_fires_when_armed_again_or_disarmed_before_the_sweep(
    future, buyer, timeout
):
    """The trader came back too late: its orders go, as if the sweep had run at the time."""
    now = timezone.now()
    order = place(buyer, future, "buy", 1, "2.400")
    cancel_all_after_set(account=buyer, timeout_seconds=5, now=now)

    again = cancel_all_after_set(
        account=buyer, timeout_seconds=timeout, now=now + timedelta(seconds=6)
    )

    assert statuses(order) == [CANCELLED]
    if timeout:
        assert (
            CancelAllTimer.objects.get().fires_at == again.fires_at == now + timedelta(seconds=11)
        )
    else:
        assert again is None and not CancelAllTimer.objects.exists()


def test_a_sweep_that_read_a_time_since_moved_cancels_but_leaves_the_new_time(future, buyer):
    """The sweep read the switch due; the trader armed it again before the sweep disarmed it:
    the orders go (their time had come), and the switch keeps its new time."""
    now = timezone.now()
    order = place(buyer, future, "buy", 1, "2.400")
    cancel_all_after_set(account=buyer, timeout_seconds=5, now=now)
    old_time = CancelAllTimer.objects.get().fires_at
    cancel_all_after_set(account=buyer, timeout_seconds=19, now=now + timedelta(seconds=1))

    cancel_after._fire(buyer, old_time)

    assert statuses(order) == [CANCELLED]
    assert CancelAllTimer.objects.get().fires_at == now + timedelta(seconds=20)


def test_a_sweep_that_read_a_time_since_moved_leaves_the_orders_placed_after_it(future, buyer):
    """The sweep read the switch due; the trader armed it again too late (which fired it
    itself) and quoted anew before the sweep fired it: the new quotes stay."""
    now = timezone.now()
    old = place(buyer, future, "buy", 1, "2.400")
    Order.objects.filter(pk=old.pk).update(created_at=now - timedelta(seconds=7))
    cancel_all_after_set(account=buyer, timeout_seconds=5, now=now - timedelta(seconds=6))
    old_time = CancelAllTimer.objects.get().fires_at
    cancel_all_after_set(account=buyer, timeout_seconds=30, now=now)
    assert statuses(old) == [CANCELLED]  # Arming again late fired it.
    quote = place(buyer, future, "buy", 1, "2.395")

    cancel_after._fire(buyer, old_time)

    assert statuses(quote) == [OPEN]
    assert CancelAllTimer.objects.get().fires_at == now + timedelta(seconds=30)


def test_the_sweep_is_the_beat_task_every_second(settings, future, buyer):
    order = place(buyer, future, "buy", 1, "2.400")
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(seconds=7))
    cancel_all_after_set(
        account=buyer, timeout_seconds=5, now=timezone.now() - timedelta(seconds=6)
    )

    assert tasks.orders_cancel_all_after_due.apply().get() == 1
    assert statuses(order) == [CANCELLED]
    entry = settings.CELERY_BEAT_SCHEDULE["fire-cancel-all-after-switches"]
    assert (entry["task"], entry["schedule"]) == ("exchange.tasks.orders_cancel_all_after_due", 1.0)


@pytest.mark.parametrize(
    "timeout", [-1, 1, TIMEOUT_SECONDS_MIN - 1, TIMEOUT_SECONDS_MAX + 1, True, 10.0, "10"]
)
def test_a_timeout_out_of_range_is_refused_and_changes_nothing(buyer, timeout):
    cancel_all_after_set(account=buyer, timeout_seconds=60)
    before = CancelAllTimer.objects.get()

    with pytest.raises(OrderRejected) as refused:
        cancel_all_after_set(account=buyer, timeout_seconds=timeout)

    assert (refused.value.code, refused.value.field) == (
        OrderRejectCode.CANCEL_AFTER_TIMEOUT_INVALID,
        "timeout_seconds",
    )
    assert CancelAllTimer.objects.get().fires_at == before.fires_at


@pytest.mark.parametrize("timeout", [TIMEOUT_SECONDS_MIN, TIMEOUT_SECONDS_MAX])
def test_the_bounds_are_accepted(buyer, timeout):
    assert cancel_all_after_set(account=buyer, timeout_seconds=timeout).timeout_seconds == timeout


def test_one_account_that_fails_to_fire_does_not_stop_the_others(
    futures, buyer, seller, monkeypatch, caplog
):
    now = timezone.now()
    mine, theirs = (
        place(buyer, futures[0], "buy", 1, "2.400"),
        place(seller, futures[1], "sell", 1, "2.700"),
    )
    cancel_all_after_set(account=buyer, timeout_seconds=5, now=now)
    cancel_all_after_set(account=seller, timeout_seconds=5, now=now)
    cancel = cancel_after.orders_cancel

    def failing_for_the_buyer(*, orders, reason):
        if any(order.account_id == buyer.pk for order in orders):
            raise RuntimeError("the database went away")
        return cancel(orders=orders, reason=reason)

    monkeypatch.setattr(cancel_after, "orders_cancel", failing_for_the_buyer)

    assert cancel_all_after_fire_due(now=now + timedelta(seconds=5)) == 1
    assert statuses(mine, theirs) == [OPEN, CANCELLED]
    assert f"account #{buyer.pk} did not fire" in caplog.text
    assert list(CancelAllTimer.objects.values_list("account", flat=True)) == [
        buyer.pk
    ]  # Next time.
