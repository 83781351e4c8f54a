"""The matcher outside the inline mode: pending commands, rebuilds, restarts and shards."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from exchange.matcher import settlement as settlement_module
from exchange.matcher.runtime import Matcher
from exchange.models import Order, OrderCommand, Trade
from exchange.selectors.integrity import order_book_problems
from exchange.services.orders import order_cancel, order_replace
from tests.exchange import support
from tests.exchange.support import book_key, database_book, matcher_book

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _external(external_matcher):
    """Every order here waits for a matcher the test runs."""


def place(account, instrument, side, quantity, price, **options):
    order = support.place(account, instrument, side, quantity, price, **options)
    assert order.status == Order.Status.NEW
    return order


def status(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


def pending() -> int:
    return OrderCommand.objects.filter(status=OrderCommand.Status.PENDING).count()


def trades() -> list[tuple]:
    return list(
        Trade.objects.order_by("sequence").values_list(
            "sequence", "price", "quantity", "maker_order_id", "taker_order_id", "taker_side"
        )
    )


def orders_state() -> list[tuple]:
    return list(
        Order.objects.order_by("pk").values_list(
            "pk",
            "status",
            "quantity",
            "filled_quantity",
            "cancelled_quantity",
            "price",
            "priority_sequence",
        )
    )


def test_accepted_orders_wait_for_the_matcher(future, buyer, seller, maker):
    # given
    first = place(buyer, future, "buy", 5, "2.45")
    second = place(maker, future, "buy", 5, "2.45")
    ask = place(seller, future, "sell", 3, "2.50")
    matcher = Matcher()
    assert pending() == 3
    assert matcher.pending_instrument_ids() == [future.pk]
    assert not Order.objects.exclude(status=Order.Status.NEW).exists()

    # when
    processed = matcher.process_pending()

    # then
    assert processed == 3
    assert pending() == 0
    assert {status(first), status(second), status(ask)} == {Order.Status.OPEN}
    book = matcher.engine.book(future.pk)
    assert book.depth(5) == ([(490, 10, 2)], [(500, 3, 1)])
    assert [resting.order_id for resting in book.orders()] == [first.pk, second.pk, ask.pk]
    assert matcher.process_pending() == 0


def test_matcher_processes_commands_in_the_order_they_were_committed(future, buyer, seller):
    bid = place(buyer, future, "buy", 5, "2.45")
    order_cancel(order=bid)
    place(seller, future, "sell", 5, "2.45")

    Matcher().process_pending()

    # The cancel ran before the sell arrived: nothing traded.
    assert status(bid) == Order.Status.CANCELLED
    assert not Trade.objects.exists()


def test_matcher_runs_many_commands_in_bounded_batches(future, buyer):
    for index in range(7):
        place(buyer, future, "buy", 1, f"2.{40 + index}")
    matcher = Matcher()
    matcher.BATCH_COMMANDS_MAX = 3
    matcher.BATCHES_PER_CALL_MAX = 2

    assert matcher.process_instrument(future.pk) == 6
    assert pending() == 1
    assert matcher.process_instrument(future.pk) == 1
    assert pending() == 0
    assert len(matcher.engine.book(future.pk).orders()) == 7


def build_history(future, buyer, seller, maker, fourth):
    """A book with a history: fills, replaces that kept and lost priority, a GTD order."""
    matcher = Matcher()
    a = place(buyer, future, "buy", 5, "2.45")
    b = place(maker, future, "buy", 5, "2.45")
    c = place(fourth, future, "buy", 4, "2.45")
    d = place(buyer, future, "buy", 2, "2.40")
    ask = place(seller, future, "sell", 6, "2.55")
    place(
        maker,
        future,
        "sell",
        2,
        "2.60",
        time_in_force="gtd",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    matcher.process_pending()
    order_replace(order=Order.objects.get(pk=a.pk), price=Decimal("2.45"), quantity=3)  # keeps
    order_replace(order=Order.objects.get(pk=b.pk), price=Decimal("2.45"), quantity=6)  # loses
    place(fourth, future, "buy", 2, "2.55")  # takes 2 of the ask
    matcher.process_pending()
    return matcher, {"a": a, "b": b, "c": c, "d": d, "ask": ask}


def test_restarted_matcher_rebuilds_identical_books(future, buyer, seller, maker, fourth):
    # given
    matcher, orders = build_history(future, buyer, seller, maker, fourth)
    book = matcher.engine.book(future.pk)
    before_orders, before_depth = book.orders(), book.depth(10)
    bid_ids = [resting.order_id for resting in before_orders if resting.side == "buy"]
    assert bid_ids == [orders["a"].pk, orders["c"].pk, orders["b"].pk, orders["d"].pk]

    # when a new matcher starts
    restarted = Matcher()
    built = restarted.rebuild_all()

    # then
    assert built == 1
    rebuilt = restarted.engine.book(future.pk)
    assert rebuilt.orders() == before_orders
    assert rebuilt.depth(10) == before_depth
    assert [book_key(resting) for resting in before_orders] == database_book(future.pk)


def test_restarted_matcher_matches_exactly_as_the_one_that_never_stopped(
    future, buyer, seller, maker, fourth
):
    # given a history, and a restarted twin of its matcher
    matcher, orders = build_history(future, buyer, seller, maker, fourth)
    restarted = Matcher()
    restarted.rebuild_all()
    # further commands: a sell sweeping the bids, a cancel, a replace and a crossing buy
    place(seller, future, "sell", 9, "2.40")
    order_cancel(order=Order.objects.get(pk=orders["d"].pk))
    place(buyer, future, "buy", 5, "2.60")
    now = timezone.now()

    # when the matcher that never stopped runs them (then everything is rolled back)
    savepoint = transaction.savepoint()
    matcher.process_pending(now=now)
    expected_trades, expected_orders = trades(), orders_state()
    transaction.savepoint_rollback(savepoint)
    assert pending() == 3

    # and the restarted one runs them for real
    restarted.process_pending(now=now)

    # then both wrote the same
    assert trades() == expected_trades
    assert orders_state() == expected_orders
    # and time priority survived the restart: a before c before b
    sweep = [maker_id for _, _, _, maker_id, _, side in trades() if side == "sell"]
    assert sweep == [orders["a"].pk, orders["c"].pk, orders["b"].pk]
    assert order_book_problems() == []
    assert matcher_book(restarted, future.pk) == database_book(future.pk)


def test_matcher_rebuilds_a_book_another_process_changed(future, buyer, seller, maker):
    # given matcher A holds a bid in memory
    a, b = Matcher(), Matcher()
    bid = place(buyer, future, "buy", 5, "2.45")
    a.process_pending()

    # when another matcher fills it
    place(seller, future, "sell", 5, "2.45")
    b.process_pending()
    assert status(bid) == Order.Status.FILLED

    # and A runs the next command
    late = place(maker, future, "sell", 5, "2.45")
    a.process_pending()

    # then A did not trade against the bid it remembered
    assert status(late) == Order.Status.OPEN
    assert Trade.objects.count() == 1
    assert order_book_problems() == []
    assert matcher_book(a, future.pk) == database_book(future.pk)


def test_matcher_expires_due_orders_without_commands(future, buyer):
    now = timezone.now()
    gtd = place(
        buyer, future, "buy", 5, "2.45", time_in_force="gtd", expires_at=now + timedelta(minutes=1)
    )
    matcher = Matcher()
    matcher.process_pending(now=now)
    assert status(gtd) == Order.Status.OPEN
    assert matcher.expiring_instrument_ids(now + timedelta(minutes=2)) == [future.pk]

    assert matcher.process_pending(now=now + timedelta(minutes=2)) == 0

    assert status(gtd) == Order.Status.EXPIRED
    assert matcher.engine.book(future.pk).orders() == []
    assert matcher.expiring_instrument_ids(now + timedelta(minutes=2)) == []


def test_a_gtd_order_gone_before_its_expiry_leaves_no_expiry_due_after_one_pass(future, buyer):
    """A market maker's GTD quotes are mostly cancelled or filled before their time. The
    matcher kept the earliest expiry it had seen until a tick expired something, so once a
    cancelled quote's time passed the book was due forever: every pass of the loop (back to
    back while busy) locked and ticked it for nothing."""
    # given a GTD bid that rests, then is cancelled before its time
    now = timezone.now()
    gtd = place(
        buyer, future, "buy", 5, "2.45", time_in_force="gtd", expires_at=now + timedelta(minutes=1)
    )
    matcher = Matcher()
    matcher.process_pending(now=now)
    order_cancel(order=Order.objects.get(pk=gtd.pk))
    matcher.process_pending(now=now)
    later = now + timedelta(minutes=2)

    # when its time has passed and the loop ticks the book once
    matcher.process_instruments(matcher.due_expiry_instrument_ids(later), now=later)

    # then no expiry is due there any more, and a GTD order placed since is due at its time
    assert matcher.due_expiry_instrument_ids(later + timedelta(minutes=1)) == []
    place(
        buyer,
        future,
        "buy",
        5,
        "2.45",
        time_in_force="gtd",
        expires_at=later + timedelta(minutes=5),
    )
    matcher.process_pending(now=later)
    assert matcher.due_expiry_instrument_ids(later + timedelta(minutes=1)) == []
    assert matcher.due_expiry_instrument_ids(later + timedelta(minutes=5)) == [future.pk]


def test_restarted_matcher_expires_orders_it_rebuilt(future, buyer):
    now = timezone.now()
    gtd = place(
        buyer, future, "buy", 5, "2.45", time_in_force="gtd", expires_at=now + timedelta(minutes=1)
    )
    Matcher().process_pending(now=now)

    restarted = Matcher()
    restarted.rebuild_all()
    restarted.process_pending(now=now + timedelta(minutes=2))

    assert status(gtd) == Order.Status.EXPIRED


def test_gtd_order_reaching_the_matcher_after_its_expiry_does_not_trade(future, buyer, seller):
    # given a resting ask, and a crossing GTD bid accepted while still valid
    now = timezone.now()
    place(seller, future, "sell", 5, "2.45")
    matcher = Matcher()
    matcher.process_pending(now=now)
    bid = place(
        buyer, future, "buy", 5, "2.45", time_in_force="gtd", expires_at=now + timedelta(minutes=1)
    )

    # when the matcher only gets to it after the expiry
    matcher.process_pending(now=now + timedelta(minutes=5))

    # then it must not trade
    assert not Trade.objects.exists()
    bid = Order.objects.get(pk=bid.pk)
    assert (bid.status, bid.reject_code) == (Order.Status.REJECTED, "MATCHING_ALREADY_EXPIRED")


# Shards ---------------------------------------------------------------------------------


def test_shard_owns_instruments_by_id_modulo_shards():
    assert [Matcher(shard=1, shards=2).owns(instrument_id) for instrument_id in (1, 2, 3, 4)] == [
        True,
        False,
        True,
        False,
    ]
    assert all(Matcher().owns(instrument_id) for instrument_id in (1, 2, 3))
    with pytest.raises(AssertionError):
        Matcher(shard=2, shards=2)


def test_shard_sees_and_processes_only_its_instruments(futures, buyer, seller):
    # given orders on two instruments of different shards
    first, second = futures
    assert first.pk % 2 != second.pk % 2
    mine = Matcher(shard=first.pk % 2, shards=2)
    other = Matcher(shard=second.pk % 2, shards=2)
    bid_first = place(buyer, first, "buy", 1, "2.45")
    bid_second = place(buyer, second, "buy", 1, "2.45")

    # then
    assert mine.pending_instrument_ids() == [first.pk]
    assert other.pending_instrument_ids() == [second.pk]
    assert Matcher().pending_instrument_ids() == [first.pk, second.pk]

    # when
    assert mine.process_pending() == 1

    # then
    assert status(bid_first) == Order.Status.OPEN
    assert status(bid_second) == Order.Status.NEW
    assert other.process_pending() == 1
    assert status(bid_second) == Order.Status.OPEN

    # and a restarted shard rebuilds only its own books
    restarted = Matcher(shard=first.pk % 2, shards=2)
    assert restarted.rebuild_all() == 1
    assert restarted.engine.instruments() == [first.pk]


def test_one_pass_matches_several_instruments_in_one_transaction(
    futures, buyer, seller, monkeypatch
):
    # given a cross on each of two futures
    first, second = futures
    cross_each(futures, buyer, seller)
    posted = []
    real_entries_post = settlement_module.entries_post

    def entries_post(specs, **options):
        posted.append(sorted(spec.key for spec in specs))
        return real_entries_post(specs, **options)

    monkeypatch.setattr(settlement_module, "entries_post", entries_post)

    # when one pass takes both
    assert Matcher().process_instruments([second.pk, first.pk]) == 4

    # then both trades settle in one ledger call, and everything agrees
    assert posted == [[f"trade:{first.pk}:3", f"trade:{second.pk}:3"]]
    assert Trade.objects.filter(instrument=first).count() == 1
    assert Trade.objects.filter(instrument=second).count() == 1
    assert pending() == 0
    assert order_book_problems() == []


def test_a_failing_instrument_rolls_back_the_whole_pass_and_its_books(
    futures, buyer, seller, monkeypatch
):
    # given a cross on each of two futures, and settlement that breaks on the second
    first, second = futures
    cross_each(futures, buyer, seller)
    matcher = Matcher()
    real_trade = settlement_module.Settlement.trade

    def trade(self, *args, **kwargs):
        if self.instrument.pk == second.pk:
            raise settlement_module.SettlementError("broken on purpose")
        return real_trade(self, *args, **kwargs)

    monkeypatch.setattr(settlement_module.Settlement, "trade", trade)

    # when
    with pytest.raises(settlement_module.SettlementError):
        matcher.process_instruments([first.pk, second.pk])

    # then nothing of either instrument was written, and neither book is kept in memory
    assert pending() == 4
    assert not Trade.objects.exists()
    assert Order.objects.filter(status=Order.Status.NEW).count() == 4
    assert matcher.engine.instruments() == []

    # when the fault is gone, the same matcher does both from the database
    monkeypatch.setattr(settlement_module.Settlement, "trade", real_trade)
    assert matcher.process_instruments([first.pk, second.pk]) == 4
    assert Trade.objects.count() == 2
    assert order_book_problems() == []
    for instrument in futures:
        assert matcher_book(matcher, instrument.pk) == database_book(instrument.pk)


def cross_each(instruments, buyer, seller) -> None:
    """A bid and an ask that trade 2 contracts on each instrument, queued for the matcher."""
    for instrument in instruments:
        place(buyer, instrument, "buy", 2, "2.45")
        place(seller, instrument, "sell", 2, "2.45")


def test_what_the_matcher_keeps_per_order_is_forgotten_when_the_order_leaves_the_book(
    future, buyer, seller, maker, fourth
):
    """The holds kept for settlement belong to resting orders only: each pass forgets those of
    its orders that left (filled, cancelled, IOC remainders), and the holds it released."""
    matcher, orders = build_history(future, buyer, seller, maker, fourth)
    place(seller, future, "sell", 3, "2.45", time_in_force="ioc")  # fills a (3): a leaves
    order_cancel(order=Order.objects.get(pk=orders["d"].pk))
    matcher.process_pending()

    kept = matcher._settlements[future.pk]
    resting = {resting.order_id for resting in matcher.engine.book(future.pk).orders()}
    assert status(orders["a"]) == "filled" and status(orders["d"]) == "cancelled"
    assert kept.loaded and kept.loaded <= resting
    assert set(kept.active) <= resting
    assert orders["a"].pk not in kept.loaded and orders["d"].pk not in kept.loaded
    # Holds known in memory: those of resting orders and of queued replaces, no released one.
    held = {hold.pk for holds in [*kept.active.values(), *kept.fresh.values()] for hold in holds}
    assert set(kept.remaining) == held
    assert set(kept.rows) == held
