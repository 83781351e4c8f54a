"""Many threads placing orders at once through the inline matcher (PostgreSQL only)."""

import random
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Sum

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import Order, OrderCommand, OrderRejection, Trade
from exchange.selectors.integrity import order_book_problems
from exchange.services.orders import order_place
from tests.exchange.support import assert_consistent

THREADS = 4
ORDERS_PER_THREAD = 30


def run_threads(target, count: int) -> list[BaseException]:
    """Run ``target(index, barrier)`` in ``count`` threads at once; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            target(index)
        except BaseException as error:  # Reported by the test.
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_keep_books_and_trades_consistent(
    postgres_only, futures, buyer, seller, maker, fourth
):
    # given
    accounts = [buyer, seller, maker, fourth]
    placed: list[list[Order]] = [[] for _ in range(THREADS)]

    def trade(index: int) -> None:
        rng = random.Random(index)
        for _ in range(ORDERS_PER_THREAD):
            side = rng.choice(("buy", "sell"))
            ticks = 490 + rng.randint(-4, 4)  # Around 2.45: about half the orders cross.
            placed[index].append(
                order_place(
                    account=accounts[index],
                    instrument=rng.choice(futures),
                    side=side,
                    price=Decimal("0.005") * ticks,
                    quantity=rng.choice((1, 2, 5)),
                    time_in_force=rng.choice(("gtc", "gtc", "ioc")),
                    self_trade_prevention=rng.choice(("cancel_newest", "decrement")),
                )
            )

    # when
    errors = run_threads(trade, THREADS)

    # then
    assert errors == []
    assert sum(len(orders) for orders in placed) == THREADS * ORDERS_PER_THREAD
    assert all(order.status != Order.Status.NEW for orders in placed for order in orders)
    assert Order.objects.count() == THREADS * ORDERS_PER_THREAD
    assert not OrderCommand.objects.filter(status=OrderCommand.Status.PENDING).exists()
    assert order_book_problems() == []
    traded = Trade.objects.aggregate(total=Sum("quantity"))["total"]
    assert traded, "the flow is meant to cross"
    bought = Order.objects.filter(side="buy").aggregate(total=Sum("filled_quantity"))["total"]
    sold = Order.objects.filter(side="sell").aggregate(total=Sum("filled_quantity"))["total"]
    filled = Order.objects.aggregate(total=Sum("filled_quantity"))["total"]
    assert bought == sold == traded == filled / 2
    for instrument in futures:
        sequences = list(
            Trade.objects.filter(instrument=instrument).values_list("sequence", flat=True)
        )
        assert len(sequences) == len(set(sequences))
    assert_consistent(*(instrument.pk for instrument in futures))


@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_of_a_client_order_id_make_one_order(postgres_only, future, buyer):
    results: list[Order] = []

    def place(_index: int) -> None:
        results.append(
            order_place(
                account=buyer,
                instrument=future,
                side="buy",
                price=Decimal("2.45"),
                quantity=3,
                client_order_id="same-request",
            )
        )

    errors = run_threads(place, THREADS)

    assert errors == []
    assert len({order.pk for order in results}) == 1
    assert Order.objects.count() == 1
    assert OrderCommand.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_client_order_id_conflict_met_at_the_insert_is_recorded(postgres_only, future, buyer):
    """The second request finds no order under the id (the first has not committed), then
    meets the first's row at the unique index: it is refused and recorded as a conflict, as
    it would be had it come a moment later."""
    outcome: list[BaseException | Order] = []

    def place_other() -> None:
        try:
            outcome.append(
                order_place(
                    account=buyer,
                    instrument=future,
                    side="buy",
                    price=Decimal("2.40"),
                    quantity=3,
                    client_order_id="same-id",
                )
            )
        except BaseException as error:  # Checked below.
            outcome.append(error)
        finally:
            connection.close()

    template = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=3
    )
    second = threading.Thread(target=place_other)
    with transaction.atomic():  # The first request's row, written and not yet committed.
        first = Order.objects.get(pk=template.pk)
        first.pk = None
        first.client_order_id = "same-id"
        first.save()
        second.start()
        with connection.cursor() as cursor:
            for _ in range(200):  # Until the second waits on the first's row at the index.
                cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the second placement never waited at the unique index")
    second.join(timeout=30)

    [error] = outcome
    assert isinstance(error, OrderRejected)
    assert error.code == OrderRejectCode.CLIENT_ORDER_ID_CONFLICT
    assert list(Order.objects.filter(client_order_id="same-id")) == [first]
    assert Order.objects.count() == 2  # The template and the first: the second wrote nothing.
    rejection = OrderRejection.objects.get()
    assert (rejection.code, rejection.client_order_id) == (error.code, "same-id")


@pytest.mark.django_db(transaction=True)
def test_a_trade_is_timed_once_its_matcher_holds_the_book(postgres_only, future, buyer, seller):
    """The matcher reads the clock after taking the instrument's lock: a pass that waited for
    another process's pass writes trades later in time as well as in sequence."""
    from django.utils import timezone

    from exchange.models import Instrument
    from tests.exchange.support import place

    place(seller, future, "sell", 1, "2.45")
    outcome: list[BaseException | Order] = []

    def lift() -> None:
        try:
            outcome.append(
                order_place(
                    account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=1
                )
            )
        except BaseException as error:  # Checked below.
            outcome.append(error)
        finally:
            connection.close()

    taker = threading.Thread(target=lift)
    with transaction.atomic():  # Another process's matching pass on the book, as it locks it.
        Instrument.objects.select_for_update(no_key=True).get(pk=future.pk)
        taker.start()
        with connection.cursor() as cursor:
            for _ in range(200):  # Until the taker's matcher waits for the book.
                cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the taker's matcher never waited for the book")
        time.sleep(0.2)
        released = timezone.now()
    taker.join(timeout=30)

    [order] = outcome
    assert isinstance(order, Order) and order.status == Order.Status.FILLED
    assert Trade.objects.get().executed_at >= released
