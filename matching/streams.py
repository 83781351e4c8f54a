"""Seeded random command streams for the benchmark and the tests.

`CommandStream` produces one command at a time and learns which orders are still resting from
the events it is shown (`CommandStream.observe`), so that its cancels and replaces target live
orders. `generate` runs a scratch engine alongside to build a whole stream up front.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from matching.engine import Engine
from matching.model import (
    Accepted,
    Cancel,
    Cancelled,
    Command,
    Event,
    NewOrder,
    Replace,
    Replaced,
    SelfTradePrevention,
    Side,
    Tick,
    TimeInForce,
    Trade,
)


@dataclass(frozen=True, slots=True)
class StreamProfile:
    """Shape of a random stream. Weights are relative; percentages are out of 100."""

    instruments: tuple[int, ...] = (1,)
    accounts: int = 100
    # Self-trade prevention groups the accounts fall into (as an exchange groups accounts by
    # organization): account ``a`` is in group ``STP_GROUP_BASE + a % stp_groups``, numbers
    # that no account has, so an engine comparing an account with a group shows. 0: each
    # account is its own group (the engine's default).
    stp_groups: int = 0
    limit_weight: int = 60
    cancel_weight: int = 30
    marketable_weight: int = 10
    replace_weight: int = 0
    tick_weight: int = 0
    invalid_weight: int = 0
    # Share of the marketable orders that are market orders (the rest are IOC limits).
    market_percent: int = 30
    # Share of the limit orders priced through the mid, so that most of them trade.
    crossing_limit_percent: int = 10
    post_only_percent: int = 0
    # Relative weights of GTC, GTD, IOC and FOK among the limit orders.
    tif_weights: tuple[int, int, int, int] = (1, 0, 0, 0)
    stp_modes: tuple[SelfTradePrevention, ...] = (SelfTradePrevention.CANCEL_NEWEST,)
    # Resting orders per instrument above which a limit order turns into a cancel.
    max_live_orders: int = 2000
    # Chance that the mid moves one tick (up or down, equally) at each limit order.
    mid_move_percent: int = 50
    start_mid_ticks: int = 10_000
    min_mid_ticks: int = 100
    max_offset_ticks: int = 40
    max_qty_lots: int = 100
    max_expiry_ticks: int = 40
    max_tick_step: int = 8


STP_GROUP_BASE = 1_000_000

BENCH_PROFILE = StreamProfile()

TEST_PROFILE = StreamProfile(
    instruments=(1, 2, 3),
    accounts=4,
    # Accounts 1 and 4 share a group, 2 and 3 have one each.
    stp_groups=3,
    limit_weight=55,
    cancel_weight=15,
    marketable_weight=10,
    replace_weight=12,
    tick_weight=4,
    invalid_weight=4,
    post_only_percent=10,
    tif_weights=(50, 25, 10, 15),
    stp_modes=tuple(SelfTradePrevention),
    max_live_orders=40,
    start_mid_ticks=200,
    min_mid_ticks=30,
    max_offset_ticks=12,
    max_qty_lots=20,
    max_expiry_ticks=30,
)


@dataclass
class _Live:
    """What the stream knows about one resting order."""

    side: Side
    price: int
    qty: int


@dataclass
class _InstrumentState:
    mid: int
    live_ids: list[int] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)
    orders: dict[int, _Live] = field(default_factory=dict)

    def add(self, order_id: int, live: _Live) -> None:
        self.positions[order_id] = len(self.live_ids)
        self.live_ids.append(order_id)
        self.orders[order_id] = live

    def remove(self, order_id: int) -> None:
        # Swap-remove keeps random choice O(1).
        position = self.positions.pop(order_id)
        last = self.live_ids.pop()
        if last != order_id:
            self.live_ids[position] = last
            self.positions[last] = position
        del self.orders[order_id]


class CommandStream:
    """An endless, seeded stream of commands; call `observe` with each command's events.

    Parameters
    ----------
    profile : StreamProfile
    seed : int
    """

    def __init__(self, profile: StreamProfile, seed: int) -> None:
        self.profile = profile
        self.now = 0
        self._random = random.Random(seed)
        self._next_order_id = 1
        self._states = {
            instrument: _InstrumentState(profile.start_mid_ticks)
            for instrument in profile.instruments
        }
        self._kinds = ("limit", "cancel", "marketable", "replace", "tick", "invalid")
        self._kind_weights = (
            profile.limit_weight,
            profile.cancel_weight,
            profile.marketable_weight,
            profile.replace_weight,
            profile.tick_weight,
            profile.invalid_weight,
        )

    def stp_group(self, account: int) -> int:
        """The self-trade prevention group of ``account``."""
        groups = self.profile.stp_groups
        return STP_GROUP_BASE + account % groups if groups else account

    def live_orders(self, instrument: int) -> int:
        """How many orders of ``instrument`` the stream believes are resting."""
        return len(self._states[instrument].live_ids)

    def next_command(self) -> Command:
        """Draw the next command."""
        rng = self._random
        kind = rng.choices(self._kinds, self._kind_weights)[0]
        instrument = rng.choice(self.profile.instruments)
        state = self._states[instrument]
        if kind == "limit" and len(state.live_ids) >= self.profile.max_live_orders:
            kind = "cancel"
        if kind in ("cancel", "replace") and not state.live_ids:
            kind = "limit"
        if kind == "limit":
            return self._limit(instrument, state)
        if kind == "cancel":
            return Cancel(rng.choice(state.live_ids), instrument)
        if kind == "marketable":
            return self._marketable(instrument, state)
        if kind == "replace":
            return self._replace(instrument, state)
        if kind == "tick":
            self.now += 1 + rng.randrange(self.profile.max_tick_step)
            return Tick(self.now, instrument if rng.randrange(3) == 0 else None)
        return self._invalid(instrument, state)

    def observe(self, events: list[Event]) -> None:
        """Update the stream's view of the live orders from one command's events."""
        for event in events:
            if isinstance(event, Trade):
                self._reduce(event.instrument, event.maker_order_id, event.qty)
                self._reduce(event.instrument, event.taker_order_id, event.qty)
            elif isinstance(event, Cancelled):
                self._reduce(event.instrument, event.order_id, event.qty)
            elif isinstance(event, Accepted):
                price = 0 if event.price is None else event.price
                live = _Live(event.side, price, event.qty)
                self._states[event.instrument].add(event.order_id, live)
            elif isinstance(event, Replaced):
                order = self._states[event.instrument].orders[event.order_id]
                order.price = event.price
                order.qty = event.qty

    def _reduce(self, instrument: int, order_id: int, qty: int) -> None:
        state = self._states[instrument]
        order = state.orders[order_id]
        order.qty -= qty
        assert order.qty >= 0, "events removed more than the order's quantity"
        if order.qty == 0:
            state.remove(order_id)

    # ----------------------------------------------------------------------------------
    # Command makers.

    def _new_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id - 1

    def _walk(self, state: _InstrumentState) -> int:
        """Move the mid one step of a random walk and return it."""
        if self._random.randrange(100) < self.profile.mid_move_percent:
            if self._random.randrange(2):
                state.mid += 1
            elif state.mid > self.profile.min_mid_ticks:
                state.mid -= 1
        return state.mid

    def _offset(self, limit: int) -> int:
        """A random offset in [0, limit), more often small than large."""
        return self._random.randrange(1 + self._random.randrange(limit))

    def _qty(self) -> int:
        return 1 + self._offset(self.profile.max_qty_lots)

    def _limit(self, instrument: int, state: _InstrumentState) -> NewOrder:
        rng = self._random
        profile = self.profile
        mid = self._walk(state)
        side = Side.BUY if rng.randrange(2) else Side.SELL
        direction = 1 if side is Side.BUY else -1
        if rng.randrange(100) < profile.crossing_limit_percent:
            price = mid + direction * self._offset(profile.max_offset_ticks // 4 + 1)
        else:
            price = mid - direction * (1 + self._offset(profile.max_offset_ticks))
        tif = rng.choices(tuple(TimeInForce), profile.tif_weights)[0]
        expires_at = None
        if tif is TimeInForce.GTD:
            expires_at = self.now - 2 + rng.randrange(profile.max_expiry_ticks)
        account = 1 + rng.randrange(profile.accounts)
        return NewOrder(
            self._new_id(),
            instrument,
            account,
            side,
            self._qty(),
            max(1, price),
            tif,
            rng.randrange(100) < profile.post_only_percent,
            rng.choice(profile.stp_modes),
            expires_at,
            self.stp_group(account),
        )

    def _marketable(self, instrument: int, state: _InstrumentState) -> NewOrder:
        rng = self._random
        profile = self.profile
        side = Side.BUY if rng.randrange(2) else Side.SELL
        direction = 1 if side is Side.BUY else -1
        price: int | None = None
        if rng.randrange(100) >= profile.market_percent:
            price = max(1, state.mid + direction * (1 + self._offset(profile.max_offset_ticks)))
        tif = TimeInForce.FOK if profile.tif_weights[3] and rng.randrange(4) == 0 else None
        account = 1 + rng.randrange(profile.accounts)
        return NewOrder(
            self._new_id(),
            instrument,
            account,
            side,
            self._qty(),
            price,
            tif or TimeInForce.IOC,
            False,
            rng.choice(profile.stp_modes),
            None,
            self.stp_group(account),
        )

    def _replace(self, instrument: int, state: _InstrumentState) -> Replace:
        rng = self._random
        order_id = rng.choice(state.live_ids)
        order = state.orders[order_id]
        choice = rng.randrange(10)
        if choice < 3:
            # Same price, smaller or equal quantity: keeps priority.
            return Replace(order_id, instrument, order.price, 1 + rng.randrange(order.qty))
        if choice < 4:
            return Replace(order_id, instrument, order.price, order.qty + 1 + self._qty())
        if choice < 5:
            return Replace(order_id, instrument, order.price, 0)
        direction = 1 if order.side is Side.BUY else -1
        if choice < 7:
            # Move towards (and sometimes through) the other side.
            price = order.price + direction * (1 + self._offset(self.profile.max_offset_ticks))
        else:
            price = order.price - direction * (1 + self._offset(self.profile.max_offset_ticks))
        return Replace(order_id, instrument, max(1, price), self._qty())

    def _invalid(self, instrument: int, state: _InstrumentState) -> Command:
        rng = self._random
        choice = rng.randrange(9)
        side = Side.BUY if rng.randrange(2) else Side.SELL
        account = 1 + rng.randrange(self.profile.accounts)
        group = self.stp_group(account)
        old_id = 1 + rng.randrange(self._next_order_id)
        mid = state.mid
        if choice == 0:
            return NewOrder(
                self._new_id(), instrument, account, side, -rng.randrange(2), mid, stp_group=group
            )
        if choice == 1:
            return NewOrder(
                self._new_id(), instrument, account, side, 5, -rng.randrange(2), stp_group=group
            )
        if choice == 2:
            return NewOrder(old_id, instrument, account, side, self._qty(), mid, stp_group=group)
        if choice == 3:
            return NewOrder(
                self._new_id(), instrument, account, side, 5, None, post_only=True, stp_group=group
            )
        if choice == 4:
            return NewOrder(
                self._new_id(), instrument, account, side, 5, mid, TimeInForce.GTD, stp_group=group
            )
        if choice == 5:
            return Cancel(old_id, instrument)
        if choice == 6:
            return Replace(old_id, instrument, None if rng.randrange(2) else mid, self._qty())
        if choice == 7:
            return Replace(old_id, instrument, mid, -1)
        # A missing book: the command must not create one.
        return Cancel(old_id, max(self.profile.instruments) + 1 + rng.randrange(2))


def generate(profile: StreamProfile, count: int, seed: int) -> list[Command]:
    """Build ``count`` commands up front, running a scratch engine to follow live orders.

    Parameters
    ----------
    profile : StreamProfile
    count : int
    seed : int

    Returns
    -------
    list of Command
        A deterministic function of the arguments.
    """
    stream = CommandStream(profile, seed)
    engine = Engine()
    commands: list[Command] = []
    for _ in range(count):
        command = stream.next_command()
        commands.append(command)
        stream.observe(engine.process(command))
    return commands
