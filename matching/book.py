"""The fast order book of one instrument.

Layout
------
Each side keeps a dict from *key* to price level and a list of keys sorted ascending, so the
best level is always the last key. A bid's key is its price and an ask's key is minus its
price: "better" is "larger key" on both sides, and one matching routine serves both.

A level holds a deque of orders in arrival order. Cancelled orders are removed lazily: their
quantity is set to 0 and they stay in the deque until matching reaches them or the level is
compacted, so a cancel costs O(1) instead of O(level length). Only live orders (quantity > 0)
are in the order index and counted in the level's ``count`` and ``volume``.

Command handlers take the engine's last sequence number and the event list, append events and
return the new last sequence number; the book has no I/O and no clock of its own beyond the
time of the last `Tick`.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from heapq import heappop, heappush
from itertools import pairwise

from matching._builders import (
    AcceptedBuilder,
    TradeBuilder,
    make_cancelled,
    make_rejected,
    make_replaced,
)
from matching.model import (
    Accepted,
    Cancel,
    CancelReason,
    Event,
    NewOrder,
    RejectReason,
    Replace,
    RestingOrder,
    SelfTradePrevention,
    Side,
    Tick,
    TimeInForce,
    Trade,
)

# Enumeration members bound once: the hot path compares them by identity.
_BUY = Side.BUY
_SELL = Side.SELL
_GTD = TimeInForce.GTD
_IOC = TimeInForce.IOC
_FOK = TimeInForce.FOK
_CANCEL_NEWEST = SelfTradePrevention.CANCEL_NEWEST
_CANCEL_OLDEST = SelfTradePrevention.CANCEL_OLDEST
_CANCEL_BOTH = SelfTradePrevention.CANCEL_BOTH
_DECREMENT = SelfTradePrevention.DECREMENT
_INVALID_QUANTITY = RejectReason.INVALID_QUANTITY
_INVALID_PRICE = RejectReason.INVALID_PRICE
_DUPLICATE_ORDER_ID = RejectReason.DUPLICATE_ORDER_ID
_UNKNOWN_ORDER = RejectReason.UNKNOWN_ORDER
_POST_ONLY_MARKET = RejectReason.POST_ONLY_MARKET
_POST_ONLY_TIME_IN_FORCE = RejectReason.POST_ONLY_TIME_IN_FORCE
_POST_ONLY_WOULD_CROSS = RejectReason.POST_ONLY_WOULD_CROSS
_GTD_WITHOUT_EXPIRY = RejectReason.GTD_WITHOUT_EXPIRY
_ALREADY_EXPIRED = RejectReason.ALREADY_EXPIRED
_USER = CancelReason.USER
_IOC_REMAINDER = CancelReason.IOC_REMAINDER
_MARKET_REMAINDER = CancelReason.MARKET_REMAINDER
_FOK_NOT_FILLABLE = CancelReason.FOK_NOT_FILLABLE
_SELF_TRADE = CancelReason.SELF_TRADE
_EXPIRED = CancelReason.EXPIRED
_REPLACED_TO_ZERO = CancelReason.REPLACED_TO_ZERO


class _Order:
    """A live or lazily deleted resting order; dead when ``qty`` is 0."""

    __slots__ = (
        "account",
        "arrival",
        "expires_at",
        "key",
        "order_id",
        "post_only",
        "price",
        "qty",
        "side",
        "stp",
        "stp_group",
        "tif",
    )

    def __init__(
        self,
        order_id: int,
        account: int,
        side: Side,
        price: int,
        key: int,
        qty: int,
        tif: TimeInForce,
        stp: SelfTradePrevention,
        expires_at: int | None,
        post_only: bool,
        arrival: int,
        stp_group: int,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.side = side
        self.price = price
        self.key = key
        self.qty = qty
        self.tif = tif
        self.stp = stp
        self.expires_at = expires_at
        self.post_only = post_only
        self.arrival = arrival
        self.stp_group = stp_group


_new_order = object.__new__


class _Level:
    """All orders at one price on one side, oldest first."""

    __slots__ = ("count", "price", "queue", "volume")

    def __init__(self, price: int) -> None:
        self.price = price
        self.volume = 0
        self.count = 0
        self.queue: deque[_Order] = deque()


class _BookSide:
    """One side of the book: levels by key, and the keys sorted ascending (best last)."""

    __slots__ = ("keys", "levels", "side", "sign")

    def __init__(self, side: Side, sign: int) -> None:
        self.side = side
        self.sign = sign
        self.keys: list[int] = []
        self.levels: dict[int, _Level] = {}


class OrderBook:
    """Price-time priority order book for one instrument.

    Parameters
    ----------
    instrument : int
        The instrument this book trades.
    now : int or None
        Time of the last tick seen by the engine, used to reject GTD orders that have
        already expired.
    """

    # A level's deque is rebuilt without its dead entries once it holds more than this many
    # dead entries beyond its live count; this keeps lazy deletion's memory bounded while
    # making the rebuild cost amortised O(1) per cancel.
    COMPACTION_SLACK_ORDERS = 32

    def __init__(self, instrument: int, now: int | None = None) -> None:
        self.instrument = instrument
        self.now = now
        self._bids = _BookSide(_BUY, 1)
        self._asks = _BookSide(_SELL, -1)
        self._orders: dict[int, _Order] = {}
        # Every order id this book ever accepted: duplicates are rejected even after the
        # original order is gone. It grows with the number of accepted orders (about 60 bytes
        # each) and is forgotten with the book by `Engine.drop`.
        self._seen_ids: set[int] = set()
        # Heap of (expires_at, order_id) for GTD orders; entries of orders that left the
        # book are skipped when popped.
        self._expiries: list[tuple[int, int]] = []
        self._arrivals = 0

    # ----------------------------------------------------------------------------------
    # Commands.

    def submit(self, command: NewOrder, seq: int, events: list[Event]) -> int:
        """Validate, match and possibly rest a new order; return the last sequence number."""
        order_id = command.order_id
        qty = command.qty
        price = command.price
        tif = command.tif
        opposite = self._asks if command.side is _BUY else self._bids
        keys = opposite.keys
        # Every level of the opposite side is acceptable to a market order.
        limit_key = (keys[0] if keys else 0) if price is None else opposite.sign * price
        crosses = bool(keys) and keys[-1] >= limit_key
        instrument = self.instrument
        seq += 1
        # One cheap screen keeps the detailed checks off the common path.
        if (
            qty <= 0
            or order_id in self._seen_ids
            or command.post_only
            or tif is _GTD
            or (price is not None and price <= 0)
        ):
            reason = self._rejection(command, crosses)
            if reason is not None:
                events.append(make_rejected(seq, order_id, instrument, reason))
                return seq
        self._seen_ids.add(order_id)
        side = command.side
        account = command.account
        accepted = AcceptedBuilder()
        accepted.seq = seq
        accepted.order_id = order_id
        accepted.instrument = instrument
        accepted.account = account
        accepted.side = side
        accepted.price = price
        accepted.qty = qty
        accepted.__class__ = Accepted
        events.append(accepted)
        remaining = qty
        if tif is _FOK and not (
            crosses and self._fillable(opposite, command.stp_group, command.stp, qty, limit_key)
        ):
            seq += 1
            events.append(make_cancelled(seq, order_id, instrument, qty, _FOK_NOT_FILLABLE))
            return seq
        if crosses:
            remaining, seq = self._take(
                opposite,
                order_id,
                account,
                command.stp_group,
                side,
                command.stp,
                qty,
                limit_key,
                seq,
                events,
            )
            if not remaining:
                return seq
        if price is None:
            seq += 1
            events.append(make_cancelled(seq, order_id, instrument, remaining, _MARKET_REMAINDER))
        elif tif is _IOC:
            seq += 1
            events.append(make_cancelled(seq, order_id, instrument, remaining, _IOC_REMAINDER))
        else:
            assert tif is not _FOK, "a fillable FOK order is filled in full"
            self._rest(command, remaining, -limit_key)
        return seq

    def _rejection(self, command: NewOrder, crosses: bool) -> RejectReason | None:
        """Why a new order must be rejected, checking in the documented order, or None."""
        price = command.price
        if command.qty <= 0:
            return _INVALID_QUANTITY
        if price is not None and price <= 0:
            return _INVALID_PRICE
        if command.order_id in self._seen_ids:
            return _DUPLICATE_ORDER_ID
        if command.post_only and price is None:
            return _POST_ONLY_MARKET
        if command.post_only and (command.tif is _IOC or command.tif is _FOK):
            return _POST_ONLY_TIME_IN_FORCE
        if command.post_only and crosses:
            return _POST_ONLY_WOULD_CROSS
        if command.tif is _GTD:
            if command.expires_at is None:
                return _GTD_WITHOUT_EXPIRY
            if self.now is not None and command.expires_at <= self.now:
                return _ALREADY_EXPIRED
        return None

    def _rest(self, command: NewOrder, remaining: int, key: int) -> None:
        """Put the unfilled part of a new GTC/GTD limit order at the back of its level.

        The order object is filled attribute by attribute rather than through ``__init__``
        because this runs for most commands.
        """
        order = _new_order(_Order)
        order_id = order.order_id = command.order_id
        order.account = command.account
        side = order.side = command.side
        price = command.price
        assert price is not None, "market orders never rest"
        order.price = price
        order.key = key
        order.qty = remaining
        tif = order.tif = command.tif
        order.stp = command.stp
        order.stp_group = command.stp_group
        expires_at = order.expires_at = command.expires_at
        order.post_only = command.post_only
        book_side = self._bids if side is _BUY else self._asks
        levels = book_side.levels
        level = levels.get(key)
        if level is None:
            level = levels[key] = _Level(price)
            insort(book_side.keys, key)
        arrival = order.arrival = self._arrivals + 1
        self._arrivals = arrival
        level.queue.append(order)
        level.volume += remaining
        level.count += 1
        self._orders[order_id] = order
        if tif is _GTD:
            assert expires_at is not None
            heappush(self._expiries, (expires_at, order_id))

    def cancel(self, command: Cancel, seq: int, events: list[Event]) -> int:
        """Cancel a resting order's whole open quantity; return the last sequence number."""
        order = self._orders.get(command.order_id)
        seq += 1
        if order is None:
            events.append(make_rejected(seq, command.order_id, self.instrument, _UNKNOWN_ORDER))
            return seq
        events.append(make_cancelled(seq, order.order_id, self.instrument, order.qty, _USER))
        self._unlink(order)
        return seq

    def replace(self, command: Replace, seq: int, events: list[Event]) -> int:
        """Change a resting order's price and open quantity; return the last sequence number.

        A post-only order whose new price would cross is rejected and left untouched.
        """
        order_id = command.order_id
        price = command.price
        qty = command.qty
        instrument = self.instrument
        order = self._orders.get(order_id)
        reason = None
        if qty < 0:
            reason = _INVALID_QUANTITY
        elif price is None or price <= 0:
            reason = _INVALID_PRICE
        elif order is None:
            reason = _UNKNOWN_ORDER
        seq += 1
        if reason is not None:
            events.append(make_rejected(seq, order_id, instrument, reason))
            return seq
        assert order is not None and price is not None
        if qty == 0:
            events.append(make_cancelled(seq, order_id, instrument, order.qty, _REPLACED_TO_ZERO))
            self._unlink(order)
            return seq
        if price == order.price and qty <= order.qty:
            # Reducing quantity in place keeps the order's place in the queue.
            level = (self._bids if order.side is _BUY else self._asks).levels[order.key]
            level.volume -= order.qty - qty
            order.qty = qty
            events.append(make_replaced(seq, order_id, instrument, price, qty, True))
            return seq
        return self._move(order, price, qty, seq, events)

    def _move(self, order: _Order, price: int, qty: int, seq: int, events: list[Event]) -> int:
        """Re-enter a resting order at a new price or larger quantity, losing its priority.

        ``seq`` is the number reserved for this replace's first event. Returns the last
        sequence number.
        """
        order_id = order.order_id
        opposite = self._asks if order.side is _BUY else self._bids
        limit_key = opposite.sign * price
        keys = opposite.keys
        crosses = bool(keys) and keys[-1] >= limit_key
        if crosses and order.post_only:
            events.append(make_rejected(seq, order_id, self.instrument, _POST_ONLY_WOULD_CROSS))
            return seq
        events.append(make_replaced(seq, order_id, self.instrument, price, qty, False))
        self._unlink(order)
        remaining = qty
        if crosses:
            remaining, seq = self._take(
                opposite,
                order_id,
                order.account,
                order.stp_group,
                order.side,
                order.stp,
                qty,
                limit_key,
                seq,
                events,
            )
        if remaining:
            # A new object: the old one stays in its level's deque as a dead entry. The expiry
            # heap already holds this order's (unchanged) expiry.
            replacement = _Order(
                order_id,
                order.account,
                order.side,
                price,
                -limit_key,
                remaining,
                order.tif,
                order.stp,
                order.expires_at,
                order.post_only,
                0,
                order.stp_group,
            )
            self._insert(replacement)
        return seq

    def tick(self, command: Tick, seq: int, events: list[Event]) -> int:
        """Handle a tick addressed to this book; return the last sequence number."""
        return self.expire(command.now, seq, events)

    def expire(self, now: int, seq: int, events: list[Event]) -> int:
        """Cancel GTD orders with ``expires_at <= now``, earliest expiry (then order id) first.

        Returns the last sequence number.
        """
        if self.now is None or now > self.now:
            self.now = now
        expiries = self._expiries
        orders = self._orders
        instrument = self.instrument
        # Each iteration pops one heap entry, so the loop ends.
        while expiries and expiries[0][0] <= now:
            _expires_at, order_id = heappop(expiries)
            order = orders.get(order_id)
            if order is None:
                continue
            seq += 1
            events.append(make_cancelled(seq, order_id, instrument, order.qty, _EXPIRED))
            self._unlink(order)
        return seq

    def restore(self, resting: RestingOrder) -> None:
        """Append one resting order at the back of its level, without matching or events."""
        assert resting.instrument == self.instrument
        assert resting.order_id not in self._seen_ids, "restored order ids must be unique"
        assert resting.qty > 0 and resting.price > 0
        assert resting.tif is not _IOC and resting.tif is not _FOK, "only GTC/GTD orders rest"
        if resting.tif is _GTD:
            assert resting.expires_at is not None
            heappush(self._expiries, (resting.expires_at, resting.order_id))
        book_side = self._bids if resting.side is _BUY else self._asks
        self._seen_ids.add(resting.order_id)
        order = _Order(
            resting.order_id,
            resting.account,
            resting.side,
            resting.price,
            book_side.sign * resting.price,
            resting.qty,
            resting.tif,
            resting.stp,
            resting.expires_at,
            resting.post_only,
            0,
            resting.stp_group,
        )
        self._insert(order)

    # ----------------------------------------------------------------------------------
    # Matching internals.

    def _insert(self, order: _Order) -> None:
        """Put a live order at the back of its level and into the index."""
        book_side = self._bids if order.side is _BUY else self._asks
        key = order.key
        levels = book_side.levels
        level = levels.get(key)
        if level is None:
            level = levels[key] = _Level(order.price)
            insort(book_side.keys, key)
        self._arrivals += 1
        order.arrival = self._arrivals
        level.queue.append(order)
        level.volume += order.qty
        level.count += 1
        self._orders[order.order_id] = order

    def _unlink(self, order: _Order) -> None:
        """Remove a live order from the index and (lazily) from its level."""
        book_side = self._bids if order.side is _BUY else self._asks
        key = order.key
        level = book_side.levels[key]
        level.volume -= order.qty
        level.count -= 1
        order.qty = 0
        del self._orders[order.order_id]
        if not level.count:
            del book_side.levels[key]
            keys = book_side.keys
            if keys[-1] == key:
                keys.pop()
            else:
                del keys[bisect_left(keys, key)]
        elif len(level.queue) > 2 * level.count + self.COMPACTION_SLACK_ORDERS:
            level.queue = deque([queued for queued in level.queue if queued.qty])

    def _fillable(
        self,
        opposite: _BookSide,
        stp_group: int,
        stp: SelfTradePrevention,
        qty: int,
        limit_key: int,
    ) -> bool:
        """Whether a FOK order would trade its full quantity, walking the book as `_take`.

        Only other self-trade prevention groups' quantity counts. Meeting an order of its own
        group ends the walk unless the mode is CANCEL_OLDEST (which cancels that order and
        keeps matching), so a FOK order never trades partially and never causes self-trade
        side effects unless it executes in full.
        """
        needed = qty
        keys = opposite.keys
        levels = opposite.levels
        skip_own = stp is _CANCEL_OLDEST
        for position in range(len(keys) - 1, -1, -1):
            key = keys[position]
            if key < limit_key:
                return False
            for maker in levels[key].queue:
                maker_qty = maker.qty
                if not maker_qty:
                    continue
                if maker.stp_group == stp_group:
                    if skip_own:
                        continue
                    return False
                if maker_qty >= needed:
                    return True
                needed -= maker_qty
        return False

    def _take(
        self,
        opposite: _BookSide,
        order_id: int,
        account: int,
        stp_group: int,
        side: Side,
        stp: SelfTradePrevention,
        remaining: int,
        limit_key: int,
        seq: int,
        events: list[Event],
    ) -> tuple[int, int]:
        """Match an incoming order against ``opposite`` while its levels are acceptable.

        A resting order of the taker's ``stp_group`` is never traded with: the taker's ``stp``
        mode applies instead. Returns the remaining quantity and the last sequence number. The
        caller has checked that the best opposite level is acceptable.
        """
        keys = opposite.keys
        levels = opposite.levels
        index = self._orders
        instrument = self.instrument
        append = events.append
        new_trade = TradeBuilder
        trade_class = Trade
        # Each outer iteration removes a level or returns; each inner iteration removes a
        # queue entry, fills the taker or returns, so both loops end.
        while True:
            key = keys[-1]
            level = levels[key]
            queue = level.queue
            price = level.price
            while remaining:
                maker = queue[0]
                maker_qty = maker.qty
                if not maker_qty:
                    queue.popleft()
                    continue
                if maker.stp_group == stp_group:
                    remaining, seq = self._prevent_self_trade(
                        level, maker, order_id, stp, remaining, seq, events
                    )
                    if not level.count:
                        break
                    continue
                fill = remaining if remaining < maker_qty else maker_qty
                seq += 1
                trade = new_trade()
                trade.seq = seq
                trade.instrument = instrument
                trade.price = price
                trade.qty = fill
                trade.maker_order_id = maker.order_id
                trade.taker_order_id = order_id
                trade.maker_account = maker.account
                trade.taker_account = account
                trade.taker_side = side
                trade.__class__ = trade_class
                append(trade)
                level.volume -= fill
                remaining -= fill
                if fill < maker_qty:
                    maker.qty = maker_qty - fill
                    break
                maker.qty = 0
                queue.popleft()
                del index[maker.order_id]
                level.count -= 1
                if not level.count:
                    break
            if not level.count:
                del levels[key]
                keys.pop()
            if not remaining or not keys or keys[-1] < limit_key:
                return remaining, seq

    def _prevent_self_trade(
        self,
        level: _Level,
        maker: _Order,
        taker_order_id: int,
        stp: SelfTradePrevention,
        remaining: int,
        seq: int,
        events: list[Event],
    ) -> tuple[int, int]:
        """Apply the taker's self-trade prevention mode against ``maker`` (at its level's front).

        Cancelled events are emitted resting order first, then taker. Returns the taker's
        remaining quantity and the last sequence number.
        """
        instrument = self.instrument
        if stp is _CANCEL_NEWEST:
            seq += 1
            events.append(make_cancelled(seq, taker_order_id, instrument, remaining, _SELF_TRADE))
            return 0, seq
        maker_qty = maker.qty
        removed = min(remaining, maker_qty) if stp is _DECREMENT else maker_qty
        seq += 1
        events.append(make_cancelled(seq, maker.order_id, instrument, removed, _SELF_TRADE))
        level.volume -= removed
        if removed == maker_qty:
            maker.qty = 0
            level.queue.popleft()
            del self._orders[maker.order_id]
            level.count -= 1
        else:
            maker.qty = maker_qty - removed
        if stp is _CANCEL_OLDEST:
            return remaining, seq
        taker_removed = remaining if stp is _CANCEL_BOTH else removed
        seq += 1
        events.append(make_cancelled(seq, taker_order_id, instrument, taker_removed, _SELF_TRADE))
        return remaining - taker_removed, seq

    # ----------------------------------------------------------------------------------
    # Queries.

    def best_bid(self) -> tuple[int, int] | None:
        """Best bid as (price, total quantity), or None if there are no bids."""
        return self._best(self._bids)

    def best_ask(self) -> tuple[int, int] | None:
        """Best ask as (price, total quantity), or None if there are no asks."""
        return self._best(self._asks)

    @staticmethod
    def _best(book_side: _BookSide) -> tuple[int, int] | None:
        if not book_side.keys:
            return None
        level = book_side.levels[book_side.keys[-1]]
        return (level.price, level.volume)

    def depth(self, levels: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """The best ``levels`` levels per side as (price, total quantity, order count).

        Returns
        -------
        tuple of (bids, asks)
            Each list is ordered best first.
        """
        assert levels >= 0
        return (self._depth(self._bids, levels), self._depth(self._asks, levels))

    @staticmethod
    def _depth(book_side: _BookSide, levels: int) -> list[tuple[int, int, int]]:
        keys = book_side.keys
        result = []
        for key in reversed(keys[max(0, len(keys) - levels) :]):
            level = book_side.levels[key]
            result.append((level.price, level.volume, level.count))
        return result

    def orders(self) -> list[RestingOrder]:
        """Resting orders in priority order: bids best first, then asks best first, FIFO
        within a level."""
        result = []
        for book_side in (self._bids, self._asks):
            for key in reversed(book_side.keys):
                for order in book_side.levels[key].queue:
                    if order.qty:
                        result.append(self._snapshot(order))
        return result

    def _snapshot(self, order: _Order) -> RestingOrder:
        return RestingOrder(
            order.order_id,
            self.instrument,
            order.account,
            order.side,
            order.price,
            order.qty,
            order.tif,
            order.stp,
            order.expires_at,
            order.post_only,
            order.stp_group,
        )

    def next_expiry(self) -> int | None:
        """The earliest GTD expiry the book has not ticked past, or None: when it next needs a
        `Tick`. Its order may have left the book since (expiries are dropped lazily), so a
        tick then may expire nothing; it moves this on to the next one."""
        expiries = self._expiries
        return expiries[0][0] if expiries else None

    def __len__(self) -> int:
        """Number of resting orders."""
        return len(self._orders)

    # ----------------------------------------------------------------------------------
    # Invariants.

    def _check(self) -> None:
        """Assert every structural invariant of the book (slow; for tests)."""
        live_seen = 0
        for book_side in (self._bids, self._asks):
            live_seen += self._check_side(book_side)
        assert live_seen == len(self._orders), "index holds orders missing from the levels"
        if self._bids.keys and self._asks.keys:
            best_bid = self._bids.levels[self._bids.keys[-1]].price
            best_ask = self._asks.levels[self._asks.keys[-1]].price
            assert best_bid < best_ask, f"crossed book: {best_bid} >= {best_ask}"
        assert self._orders.keys() <= self._seen_ids
        pending = set(self._expiries)
        for order in self._orders.values():
            if order.tif is _GTD:
                assert order.expires_at is not None
                assert (order.expires_at, order.order_id) in pending, "GTD order not in heap"
                assert self.now is None or order.expires_at > self.now, "expired order rests"
            else:
                assert order.tif is not _IOC and order.tif is not _FOK

    def _check_side(self, book_side: _BookSide) -> int:
        """Assert one side's invariants; return its number of live orders."""
        keys = book_side.keys
        assert all(low < high for low, high in pairwise(keys)), "unsorted"
        assert set(keys) == set(book_side.levels), "keys and levels disagree"
        live = 0
        for key in keys:
            level = book_side.levels[key]
            assert key == book_side.sign * level.price
            live_orders = [order for order in level.queue if order.qty]
            assert level.count == len(live_orders) > 0, "level order count is wrong"
            assert level.volume == sum(order.qty for order in live_orders), "volume is wrong"
            arrivals = [order.arrival for order in live_orders]
            assert arrivals == sorted(set(arrivals)), "level is not FIFO"
            for order in level.queue:
                indexed = self._orders.get(order.order_id)
                if order.qty:
                    assert order.qty > 0
                    assert indexed is order, "index does not point at the live order"
                    assert order.side is book_side.side and order.price == level.price
                    assert order.key == key
                else:
                    assert indexed is not order, "a dead order is still indexed"
            live += len(live_orders)
        return live
