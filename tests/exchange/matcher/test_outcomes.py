"""Waiting for the external matcher's outcome: notified at the batch's commit, polled without."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from exchange.matcher import outcomes
from exchange.matcher.runtime import Matcher
from exchange.matcher.wake import DONE_CHANNEL, PAYLOAD_BYTES_MAX, done_payloads, side_connection
from exchange.models import Order
from exchange.services.orders import order_place


def test_done_payloads_keep_every_id_once_and_stay_under_the_limit():
    ids = list(range(10**9, 10**9 + 2000))

    payloads = done_payloads(ids)

    assert len(payloads) > 1
    assert all(len(payload) <= PAYLOAD_BYTES_MAX for payload in payloads)
    assert [int(text) for payload in payloads for text in payload.split(",")] == ids
    assert done_payloads([]) == []


@pytest.mark.django_db(transaction=True)
def test_a_matcher_batch_notifies_the_orders_it_wrote_at_commit(
    postgres_only, external_matcher, future, buyer, seller
):
    listener = side_connection("test-outcomes")
    try:
        listener.execute(f"LISTEN {DONE_CHANNEL}")
        bid = order_place(
            account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5
        )
        ask = order_place(
            account=seller, instrument=future, side="sell", price=Decimal("2.45"), quantity=3
        )
        # nothing is said while the orders wait for the matcher
        assert list(listener.notifies(timeout=0.2, stop_after=1)) == []

        Matcher().process_pending()

        heard = {
            int(text)
            for notification in listener.notifies(timeout=2, stop_after=1)
            for text in notification.payload.split(",")
        }
    finally:
        listener.close()
    assert heard == {bid.pk, ask.pk}


@pytest.mark.django_db(transaction=True)
def test_a_waiting_request_learns_of_its_order_without_reading_it_again(
    postgres_only, external_matcher, future, buyer
):
    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5
    )
    outcomes._listener.listen()  # A process that has served a request before.
    reads = []

    def is_new() -> bool:
        reads.append(1)
        return Order.objects.get(pk=order.pk).status == Order.Status.NEW

    waited = _waited_for_a_later_matcher(order.pk, is_new, delay_seconds=0.2)

    assert Order.objects.get(pk=order.pk).status == Order.Status.OPEN
    assert reads == []
    assert waited < 5  # Heard, not timed out.


@pytest.mark.django_db(transaction=True)
def test_a_process_that_starts_listening_reads_the_order_once(
    postgres_only, external_matcher, future, buyer, monkeypatch
):
    """The outcome may have been notified before the listener existed: one read settles it."""
    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5
    )
    Matcher().process_pending()
    fresh = outcomes.OutcomeListener()  # A new web process.
    monkeypatch.setattr(outcomes, "_listener", fresh)
    reads = []

    def is_new() -> bool:
        reads.append(1)
        return Order.objects.get(pk=order.pk).status == Order.Status.NEW

    started = time.monotonic()
    outcomes.await_processed(order.pk, 10, is_new)

    fresh.stop()
    assert reads == [1]
    assert time.monotonic() - started < 5


@pytest.mark.django_db
def test_without_postgres_waiting_polls_until_the_order_is_processed(sqlite_only):
    answers = iter([True, True, False])
    reads = []

    def is_new() -> bool:
        reads.append(1)
        return next(answers)

    outcomes.await_processed(1, 10, is_new)

    assert len(reads) == 3


@pytest.mark.django_db
def test_waiting_gives_up_at_the_deadline(sqlite_only):
    started = time.monotonic()

    outcomes.await_processed(1, 0.05, lambda: True)

    assert 0.05 <= time.monotonic() - started < 2


@pytest.mark.django_db(transaction=True)
def test_an_idle_process_keeps_taking_the_notifications(
    postgres_only, external_matcher, future, buyer
):
    """Nobody waits, yet the listener reads on: PostgreSQL keeps every notification until
    each listener has taken it, so one that stopped reading would fill the server's queue."""
    listener = outcomes.OutcomeListener()
    listener.listen()
    try:
        order = order_place(
            account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5
        )
        Matcher().process_pending()
        time.sleep(0.5)  # No one is waiting meanwhile.

        # the id was taken off the connection without a waiter
        assert order.pk in listener._done
        assert listener.wait(order.pk, time.monotonic())
    finally:
        listener.stop()


@pytest.mark.django_db(transaction=True)
def test_a_listener_whose_connection_breaks_falls_back_to_polling(
    postgres_only, external_matcher, future, buyer, monkeypatch
):
    listener = outcomes.OutcomeListener()
    monkeypatch.setattr(outcomes, "_listener", listener)
    listener.listen()
    pid = listener._connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while listener._connection is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener._connection is None  # the reading thread saw the break

    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5
    )
    Matcher().process_pending()
    reads = []

    def is_new() -> bool:
        reads.append(1)
        return Order.objects.get(pk=order.pk).status == Order.Status.NEW

    # the next wait listens again, reads the order once, and finds it processed
    outcomes.await_processed(order.pk, 5, is_new)

    assert reads == [1]
    assert listener._connection is not None
    listener.stop()


@pytest.mark.django_db(transaction=True)
def test_a_batch_hears_every_outcome_even_those_before_its_first_wait(
    postgres_only, external_matcher, future, buyer, monkeypatch
):
    """A process not yet listening places a batch, and the matcher processes each order at
    once, before the batch starts waiting: the listener is started before the first order
    commits, so no outcome is missed (the batch used to wait out its whole wait for the
    second)."""
    from exchange.services import orders as orders_service

    outcomes._listener.stop()
    submit = orders_service.order_submit

    def submit_then_match(**fields):
        placement = submit(**fields)
        Matcher().process_pending()
        return placement

    monkeypatch.setattr(orders_service, "order_submit", submit_then_match)
    order = {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": Decimal("2.40")}

    started = time.monotonic()
    results = orders_service.orders_submit(account=buyer, orders=[order] * 3, wait_seconds=5)
    waited = time.monotonic() - started

    assert [result.order.status for result in results] == [Order.Status.OPEN] * 3
    assert waited < 2.5  # Not the 5 s a missed outcome waits.


@pytest.mark.django_db(transaction=True)
def test_a_commands_wait_is_not_ended_by_its_orders_earlier_outcome(
    postgres_only, external_matcher, future, buyer
):
    """The order's placement was heard; a replace of it waits for the replace, and ends when
    the matcher has processed it (not at once, for the placement's notification)."""
    from exchange.models import OrderCommand
    from exchange.services.orders import order_replace

    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5
    )
    outcomes._listener.listen()
    Matcher().process_pending()
    assert outcomes._listener.wait(order.pk, time.monotonic() + 5)  # the placement, heard
    order.refresh_from_db()
    order_replace(order=order, price=Decimal("2.46"), quantity=5)  # no wait: left pending
    command = OrderCommand.objects.filter(order=order).latest("pk")

    def is_pending() -> bool:
        return OrderCommand.objects.get(pk=command.pk).status == OrderCommand.Status.PENDING

    waited = _waited_for_a_later_matcher(order.pk, is_pending, delay_seconds=0.3, command=True)

    assert not is_pending()
    assert 0.2 < waited < 5  # Waited for the matcher, and heard it.


def _waited_for_a_later_matcher(
    order_id: int, is_unprocessed, *, delay_seconds: float, command: bool = False
) -> float:
    """How long ``await_processed`` waited while a matcher, in a thread of its own, ran one pass
    ``delay_seconds`` after the wait began."""

    def match() -> None:
        time.sleep(delay_seconds)
        try:
            Matcher().process_pending()
        finally:
            connection.close()  # This thread's own connection.

    worker = threading.Thread(target=match)
    worker.start()
    started = time.monotonic()
    outcomes.await_processed(order_id, 10, is_unprocessed, command=command)
    waited = time.monotonic() - started
    worker.join(10)
    return waited
