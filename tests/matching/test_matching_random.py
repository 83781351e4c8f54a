"""Seeded random tests: invariant stress on the fast engine, comparison with the reference
engine, and restore from a snapshot."""

from __future__ import annotations

import dataclasses

import pytest

from matching import Cancel, Engine, Event, NewOrder, Side, Tick, Trade
from matching.reference import ReferenceEngine
from matching.streams import TEST_PROFILE, CommandStream, StreamProfile, generate

# A profile with few prices and many orders per price, where self-trade prevention and
# lazily deleted queue entries are frequent.
DENSE_PROFILE = dataclasses.replace(
    TEST_PROFILE,
    instruments=(5,),
    accounts=2,
    max_live_orders=120,
    max_offset_ticks=3,
    crossing_limit_percent=25,
)

# A profile with a fixed mid and deep price levels (hundreds of orders each), where cancels
# leave many lazily deleted entries and level compaction happens.
DEEP_PROFILE = dataclasses.replace(
    TEST_PROFILE,
    instruments=(9,),
    accounts=6,
    mid_move_percent=0,
    max_live_orders=400,
    max_offset_ticks=3,
    crossing_limit_percent=3,
    cancel_weight=20,
    marketable_weight=4,
    replace_weight=6,
    tick_weight=1,
    tif_weights=(80, 5, 5, 10),
)


def assert_consecutive(events: list[Event], previous_seq: int) -> int:
    """Assert the events are numbered previous_seq + 1, + 2, ...; return the last number."""
    assert [event.seq for event in events] == list(
        range(previous_seq + 1, previous_seq + 1 + len(events))
    )
    return previous_seq + len(events)


@pytest.mark.parametrize(
    ("profile", "seed", "count"),
    [(TEST_PROFILE, 11, 20_000), (DENSE_PROFILE, 12, 10_000), (DEEP_PROFILE, 13, 10_000)],
    ids=["three-instruments", "dense", "deep"],
)
def test_stress_fast_engine_keeps_its_invariants(
    profile: StreamProfile, seed: int, count: int
) -> None:
    # Given a seeded stream of every kind of command over several instruments and accounts
    stream = CommandStream(profile, seed)
    engine = Engine()
    seq = 0
    trades = 0
    for _ in range(count):
        # When each command is processed
        events = engine.process(stream.next_command())
        stream.observe(events)
        # Then the events are numbered consecutively and every book is consistent
        seq = assert_consecutive(events, seq)
        assert engine.seq == seq
        for instrument in engine.instruments():
            engine.book(instrument)._check()
        # And no trade is between two accounts of one self-trade prevention group
        for event in events:
            if isinstance(event, Trade):
                trades += 1
                maker_group = stream.stp_group(event.maker_account)
                assert maker_group != stream.stp_group(event.taker_account), event
    # And the stream did reach a non-trivial state
    assert sum(len(engine.book(instrument)) for instrument in engine.instruments()) > 0
    assert trades > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("profile", "seed", "count"),
    [(TEST_PROFILE, 1, 100_000), (DENSE_PROFILE, 2, 30_000), (DEEP_PROFILE, 3, 30_000)],
    ids=["three-instruments", "dense", "deep"],
)
def test_fast_engine_matches_reference_engine(
    profile: StreamProfile, seed: int, count: int
) -> None:
    # Given the same seeded stream fed to both engines
    stream = CommandStream(profile, seed)
    fast, reference = Engine(), ReferenceEngine()
    checkpoint_every = 2_000
    for position in range(count):
        command = stream.next_command()
        # When each command is processed
        fast_events = fast.process(command)
        # Then both engines emit exactly the same events
        assert fast_events == reference.process(command), f"command {position}: {command}"
        stream.observe(fast_events)
        # And at checkpoints their books are identical
        if position % checkpoint_every == 0 or position == count - 1:
            assert fast.instruments() == reference.instruments()
            for instrument in fast.instruments():
                fast_book, reference_book = fast.book(instrument), reference.book(instrument)
                assert fast_book.orders() == reference_book.orders()
                assert fast_book.depth(10) == reference_book.depth(10)
                assert fast_book.best_bid() == reference_book.best_bid()
                assert fast_book.best_ask() == reference_book.best_ask()
    assert fast.seq == reference.seq


@pytest.mark.parametrize("engine_class", [Engine, ReferenceEngine], ids=["fast", "reference"])
def test_restored_engine_continues_identically(
    engine_class: type[Engine] | type[ReferenceEngine],
) -> None:
    # Given an engine that processed a random stream
    profile = dataclasses.replace(TEST_PROFILE, invalid_weight=0)
    stream = CommandStream(profile, 21)
    original = engine_class()
    for _ in range(5_000):
        stream.observe(original.process(stream.next_command()))
    # When a new engine continuing its numbering restores the resting orders
    snapshot = [
        order
        for instrument in original.instruments()
        for order in original.book(instrument).orders()
    ]
    assert snapshot, "the stream should leave resting orders"
    restored = engine_class(start_seq=original.seq)
    restored.restore(snapshot)
    # And both are told the current time (the restored engine has not seen a tick yet)
    clock = Tick(stream.now)
    assert restored.process(clock) == original.process(clock)
    # Then the same further commands give identical events
    for position in range(5_000):
        command = stream.next_command()
        events = original.process(command)
        assert restored.process(command) == events, f"command {position}: {command}"
        stream.observe(events)


def test_test_streams_put_several_accounts_in_one_stp_group() -> None:
    # The exchange's groups are organizations, several accounts each: the streams' groups
    # must join accounts too, or the comparisons above would not exercise that.
    for profile in (TEST_PROFILE, DEEP_PROFILE):
        stream = CommandStream(profile, 1)
        groups = [stream.stp_group(account) for account in range(1, profile.accounts + 1)]
        assert len(set(groups)) < len(groups)
        assert not set(groups) & set(range(1, profile.accounts + 1))


def test_generated_streams_are_deterministic() -> None:
    assert generate(TEST_PROFILE, 2_000, 5) == generate(TEST_PROFILE, 2_000, 5)
    assert generate(TEST_PROFILE, 2_000, 5) != generate(TEST_PROFILE, 2_000, 6)


def test_lazily_deleted_entries_are_compacted() -> None:
    # Given one price level with many orders
    engine = Engine()
    count = 200
    for order_id in range(1, count + 1):
        engine.process(NewOrder(order_id, 1, 1, Side.BUY, 1, 100))
    # When most of them are cancelled (from the front, where matching never reaches them)
    for order_id in range(1, count - 10 + 1):
        engine.process(Cancel(order_id, 1))
        engine.book(1)._check()
    # Then the level's queue was rebuilt rather than keeping every dead entry
    level = engine.book(1)._bids.levels[100]
    assert level.count == 10
    assert len(level.queue) <= 2 * level.count + engine.book(1).COMPACTION_SLACK_ORDERS
    assert [order.order_id for order in engine.book(1).orders()] == list(range(191, 201))
