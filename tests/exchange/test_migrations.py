"""Migrations that carry data or database code, run backwards and forwards on real rows."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from exchange.models import Order, OrderCommand
from exchange.services.orders import order_cancel
from tests.exchange.support import place

BEFORE_DONE_REASON = ("exchange", "0011_cancel_all_timer")
DONE_REASON = ("exchange", "0012_order_done_reason")


def migrate_to(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


@pytest.mark.django_db(transaction=True)
def test_0012_gives_finished_orders_their_done_reason_and_keeps_new_orders_queued(
    future, buyer, seller
):
    # given orders that finished before the column existed, and one still resting
    resting = place(seller, future, "sell", 5, "2.500")
    filled = place(buyer, future, "buy", 2, "2.500")
    cancelled = order_cancel(order=place(buyer, future, "buy", 1, "2.400"))
    migrate_to(BEFORE_DONE_REASON)

    # when the migration runs
    migrate_to(DONE_REASON)

    # then each finished order takes the reason of its final transition
    reasons = dict(Order.objects.values_list("pk", "done_reason"))
    assert (reasons[filled.pk], reasons[cancelled.pk], reasons[resting.pk]) == (
        "filled",
        "user",
        "",
    )
    # and the trigger still queues every new order's command, which the matcher runs
    order = place(buyer, future, "buy", 1, "2.450")
    command = OrderCommand.objects.get(order=order)
    assert (command.kind, command.status, command.cancel_reason) == ("new", "done", "")
    assert order.status == Order.Status.OPEN
