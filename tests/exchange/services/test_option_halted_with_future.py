"""An option trades only while its future is not halted: acceptance and the matcher refuse
orders on it as on a halted instrument, and the option's own status is left as it is."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.matcher.runtime import Matcher
from exchange.models import Instrument, Order, OrderCommand, Trade
from exchange.services.instruments import instrument_halt, instrument_resume
from exchange.services.orders import order_cancel, order_dry_run, order_replace
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

PREMIUM = "0.10"


def reload(row):
    return type(row).objects.get(pk=row.pk)


def assert_refused_writing_nothing(row_counts, call, **arguments) -> OrderRejected:
    """The call is refused with ORDER_INSTRUMENT_HALTED and writes no order, command,
    transition nor trade (a refused placement records only its rejection)."""
    before = row_counts()
    with pytest.raises(OrderRejected) as raised:
        call(**arguments)
    after = row_counts()
    assert raised.value.code == OrderRejectCode.INSTRUMENT_HALTED
    assert raised.value.field == "instrument"
    assert (after.orders, after.commands, after.transitions, after.trades) == (
        before.orders,
        before.commands,
        before.transitions,
        before.trades,
    )
    return raised.value


def test_an_option_order_is_refused_while_its_future_is_halted(call, future, buyer, row_counts):
    # given the option's future is halted (the option itself is not)
    instrument_halt(instrument=future, actor=None, reason="incident")

    # when an order on the option is placed, or previewed
    refused = assert_refused_writing_nothing(
        row_counts, place, account=buyer, instrument=call, side="buy", quantity=1, price=PREMIUM
    )
    with pytest.raises(OrderRejected) as previewed:
        order_dry_run(
            account=buyer, instrument=call.symbol, side="buy", quantity=1, price=Decimal(PREMIUM)
        )

    # then both are refused as on a halted instrument, naming the future
    assert refused.message == (
        f"Trading in {call.symbol} is halted: its underlying future {future.symbol} is halted. "
        "Orders are refused until it resumes."
    )
    assert previewed.value.code == OrderRejectCode.INSTRUMENT_HALTED
    # and the option's own status is untouched
    assert reload(call).status == Instrument.Status.ACTIVE


def test_an_option_accepts_orders_again_when_its_future_resumes(call, future, buyer):
    instrument_halt(instrument=future, actor=None)
    with pytest.raises(OrderRejected):
        place(buyer, call, "buy", 1, PREMIUM)

    instrument_resume(instrument=future, actor=None)
    order = place(buyer, call, "buy", 1, PREMIUM)

    assert order.status == Order.Status.OPEN


def test_an_option_halted_on_its_own_stays_halted_when_its_future_resumes(call, future, buyer):
    # given staff halted the option, then its future
    instrument_halt(instrument=call, actor=None)
    instrument_halt(instrument=future, actor=None)

    # when the future resumes
    instrument_resume(instrument=future, actor=None)

    # then the option is still halted, and refuses orders as halted on its own
    assert reload(call).status == Instrument.Status.HALTED
    with pytest.raises(OrderRejected) as raised:
        place(buyer, call, "buy", 1, PREMIUM)
    assert raised.value.code == OrderRejectCode.INSTRUMENT_HALTED
    assert raised.value.message == f"Trading in {call.symbol} is halted."


def test_a_replace_on_an_option_is_refused_while_its_future_is_halted(
    call, future, buyer, row_counts
):
    # given a bid resting on the option, then its future halted
    bid = place(buyer, call, "buy", 2, PREMIUM)
    instrument_halt(instrument=future, actor=None)

    # when the bid is replaced at another price
    assert_refused_writing_nothing(
        row_counts, order_replace, order=reload(bid), price=Decimal("0.11"), quantity=2
    )

    # then it rests as it was; a replace to 0, a cancel, still goes through
    assert (reload(bid).price, reload(bid).open_quantity) == (Decimal(PREMIUM), 2)
    cancelled = order_replace(order=reload(bid), price=Decimal(PREMIUM), quantity=0)
    assert cancelled.status == Order.Status.CANCELLED

    # and after the future resumes a replace is accepted
    instrument_resume(instrument=future, actor=None)
    other = place(buyer, call, "buy", 2, PREMIUM)
    replaced = order_replace(order=reload(other), price=Decimal("0.11"), quantity=2)
    assert replaced.price == Decimal("0.11")


def test_an_option_order_queued_before_its_future_halts_is_refused_by_the_matcher(
    call, future, buyer, seller, external_matcher
):
    # given an ask resting on the option, and a bid that would trade with it accepted but not
    # matched yet
    ask = place(seller, call, "sell", 1, PREMIUM)
    matcher = Matcher()
    matcher.process_pending()
    bid = place(buyer, call, "buy", 1, PREMIUM)
    assert reload(bid).status == Order.Status.NEW

    # when the future is halted before the matcher runs, and the ask is cancelled
    instrument_halt(instrument=future, actor=None, reason="incident")
    order_cancel(order=reload(ask))
    matcher.process_pending()

    # then the bid is refused as on a halted instrument, nothing trades, and the cancel goes
    # through
    bid = reload(bid)
    assert (bid.status, bid.reject_code) == (Order.Status.REJECTED, "ORDER_INSTRUMENT_HALTED")
    command = OrderCommand.objects.get(order=bid)
    assert (command.status, command.reject_code) == (
        OrderCommand.Status.REJECTED,
        "ORDER_INSTRUMENT_HALTED",
    )
    assert not Trade.objects.exists()
    assert reload(ask).status == Order.Status.CANCELLED


def _instrument_reads(queries: CaptureQueriesContext) -> list[str]:
    table = Instrument._meta.db_table
    return [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].lstrip().upper().startswith("SELECT") and f'FROM "{table}"' in query["sql"]
    ]


def test_acceptance_reads_the_future_only_for_an_option_and_keeps_it(
    call, future, buyer, external_matcher
):
    """Acceptance alone (the matcher left to run later): a futures order reads no instrument
    once its own is kept, so the rule adds no statement to the futures path; an option's first
    order reads its future once, and the next ones read nothing more."""
    place(buyer, future, "buy", 1, "2.40")  # Keeps the future, by symbol.

    with CaptureQueriesContext(connection) as futures_order:
        place(buyer, future, "buy", 1, "2.45")
    with CaptureQueriesContext(connection) as first_option_order:
        place(buyer, call, "buy", 1, PREMIUM)
    with CaptureQueriesContext(connection) as option_order:
        place(buyer, call, "buy", 1, PREMIUM)

    assert _instrument_reads(futures_order) == []
    # The option by symbol, then its future by id.
    assert len(_instrument_reads(first_option_order)) == 2
    assert _instrument_reads(option_order) == []


def test_the_matcher_reads_the_future_only_for_a_batch_with_option_commands(
    call, future, buyer, external_matcher
):
    matcher = Matcher()
    place(buyer, future, "buy", 1, "2.45")
    with CaptureQueriesContext(connection) as futures_batch:
        matcher.process_instrument(future.pk)
    place(buyer, call, "buy", 1, PREMIUM)
    with CaptureQueriesContext(connection) as option_batch:
        matcher.process_instrument(call.pk)

    def halted_reads(queries: CaptureQueriesContext) -> int:
        return sum("'halted'" in query["sql"] for query in queries.captured_queries)

    assert halted_reads(futures_batch) == 0
    assert halted_reads(option_batch) == 1
