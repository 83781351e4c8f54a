"""Hypothesis property tests on small, collision-prone command sequences."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching import (
    Accepted,
    Cancel,
    Cancelled,
    CancelReason,
    Command,
    Engine,
    NewOrder,
    Rejected,
    Replace,
    Replaced,
    SelfTradePrevention,
    Side,
    Tick,
    TimeInForce,
    Trade,
)
from matching.reference import ReferenceEngine

INSTRUMENTS = st.sampled_from([1, 2])
# Few ids, prices and accounts so that duplicates, unknown orders, crossings and self-trades
# are common.
ORDER_IDS = st.integers(min_value=1, max_value=12)
PRICES = st.one_of(st.none(), st.integers(min_value=-1, max_value=8))
QUANTITIES = st.integers(min_value=-1, max_value=6)

new_orders = st.builds(
    NewOrder,
    order_id=ORDER_IDS,
    instrument=INSTRUMENTS,
    account=st.integers(min_value=1, max_value=3),
    side=st.sampled_from(list(Side)),
    qty=QUANTITIES,
    price=PRICES,
    tif=st.sampled_from(list(TimeInForce)),
    post_only=st.booleans(),
    stp=st.sampled_from(list(SelfTradePrevention)),
    expires_at=st.one_of(st.none(), st.integers(min_value=0, max_value=10)),
    # Left out (the account) or one of two firms' groups, so that self-trade prevention meets
    # orders of other accounts of the taker's group, and accounts trade across groups.
    stp_group=st.one_of(st.none(), st.sampled_from([101, 102])),
)
commands: st.SearchStrategy[Command] = st.one_of(
    new_orders,
    new_orders,
    new_orders,
    st.builds(Cancel, order_id=ORDER_IDS, instrument=INSTRUMENTS),
    st.builds(Replace, order_id=ORDER_IDS, instrument=INSTRUMENTS, price=PRICES, qty=QUANTITIES),
    st.builds(
        Tick,
        now=st.integers(min_value=0, max_value=12),
        instrument=st.one_of(st.none(), INSTRUMENTS),
    ),
)

PROPERTY_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(st.lists(commands, max_size=60))
def test_fast_and_reference_engines_agree(sequence: list[Command]) -> None:
    # Given any command sequence, when both engines process it, then they emit the same events
    fast, reference = Engine(), ReferenceEngine()
    for command in sequence:
        assert fast.process(command) == reference.process(command)
        for instrument in fast.instruments():
            assert fast.book(instrument).orders() == reference.book(instrument).orders()


@PROPERTY_SETTINGS
@given(st.lists(commands, max_size=60))
def test_book_is_never_crossed_and_stays_consistent(sequence: list[Command]) -> None:
    engine = Engine()
    for command in sequence:
        engine.process(command)
        for instrument in engine.instruments():
            book = engine.book(instrument)
            book._check()
            best_bid, best_ask = book.best_bid(), book.best_ask()
            assert best_bid is None or best_ask is None or best_bid[0] < best_ask[0]


@PROPERTY_SETTINGS
@given(st.lists(commands, max_size=60))
def test_quantity_is_conserved(sequence: list[Command]) -> None:
    # Each order's open quantity, followed through the events alone, must equal what rests:
    # accepted (or replaced) quantity = filled + cancelled + resting.
    engine = Engine()
    open_qty: dict[tuple[int, int], int] = {}
    for command in sequence:
        for event in engine.process(command):
            if isinstance(event, Accepted | Replaced):
                open_qty[event.instrument, event.order_id] = event.qty
            elif isinstance(event, Trade):
                open_qty[event.instrument, event.maker_order_id] -= event.qty
                open_qty[event.instrument, event.taker_order_id] -= event.qty
            elif isinstance(event, Cancelled):
                open_qty[event.instrument, event.order_id] -= event.qty
        assert all(qty >= 0 for qty in open_qty.values())
        resting = {
            (order.instrument, order.order_id): order.qty
            for instrument in engine.instruments()
            for order in engine.book(instrument).orders()
        }
        assert resting == {key: qty for key, qty in open_qty.items() if qty > 0}


@PROPERTY_SETTINGS
@given(st.lists(commands, max_size=60))
def test_per_command_guarantees(sequence: list[Command]) -> None:
    engine = Engine()
    for command in sequence:
        before = {i: engine.book(i).orders() for i in engine.instruments()}
        groups = {order.order_id: order.stp_group for orders in before.values() for order in orders}
        previous_seq = engine.seq
        events = engine.process(command)
        # Sequence numbers are consecutive
        assert [event.seq for event in events] == list(
            range(previous_seq + 1, previous_seq + 1 + len(events))
        )
        # A rejection is the only event and changes nothing
        if any(isinstance(event, Rejected) for event in events):
            assert len(events) == 1
            assert {i: engine.book(i).orders() for i in before} == before
        if not isinstance(command, NewOrder) or not isinstance(events[0], Accepted):
            continue
        book_ids = {order.order_id for order in engine.book(command.instrument).orders()}
        trades = [event for event in events if isinstance(event, Trade)]
        # Only GTC/GTD limit orders may rest
        if command.price is None or command.tif in (TimeInForce.IOC, TimeInForce.FOK):
            assert command.order_id not in book_ids
        # A FOK order trades its full quantity or does nothing at all
        if command.tif is TimeInForce.FOK:
            filled = sum(trade.qty for trade in trades)
            if filled == 0:
                assert events[1:] == [
                    Cancelled(
                        events[0].seq + 1,
                        command.order_id,
                        command.instrument,
                        command.qty,
                        CancelReason.FOK_NOT_FILLABLE,
                    )
                ]
            else:
                assert filled == command.qty
        # Trades respect the taker's limit and never pair two orders of one self-trade
        # prevention group (nor so an account with itself, unless it is in two groups)
        for trade in trades:
            assert groups[trade.maker_order_id] != command.stp_group
            if command.price is not None:
                if command.side is Side.BUY:
                    assert trade.price <= command.price
                else:
                    assert trade.price >= command.price
