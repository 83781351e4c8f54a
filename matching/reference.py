"""A slow, obviously correct reference engine with the same API and events as `Engine`.

Each book is a plain list of resting orders. Every question about priority is answered by
sorting that list, and every lookup is a linear scan. It exists only so that tests can compare
the fast engine's event streams with it; nothing in it is tuned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from matching.model import (
    Accepted,
    Cancel,
    Cancelled,
    CancelReason,
    Command,
    Event,
    NewOrder,
    Rejected,
    RejectReason,
    Replace,
    Replaced,
    RestingOrder,
    SelfTradePrevention,
    Side,
    Tick,
    TimeInForce,
    Trade,
)


@dataclass
class _ReferenceOrder:
    """A resting order; ``arrival`` orders the time priority within a price."""

    order_id: int
    account: int
    side: Side
    price: int
    qty: int
    tif: TimeInForce
    stp: SelfTradePrevention
    expires_at: int | None
    post_only: bool
    arrival: int
    stp_group: int


class _Sequence:
    """The engine-wide event counter shared by all reference books."""

    def __init__(self, last: int) -> None:
        self.last = last

    def next(self) -> int:
        self.last += 1
        return self.last


class ReferenceBook:
    """One instrument's book as an unsorted list of resting orders."""

    def __init__(self, instrument: int, sequence: _Sequence, now: int | None) -> None:
        self.instrument = instrument
        self.now = now
        self._sequence = sequence
        self._resting: list[_ReferenceOrder] = []
        self._seen_ids: set[int] = set()
        self._arrivals = 0

    # ----------------------------------------------------------------------------------
    # Priority helpers.

    @staticmethod
    def _priority(order: _ReferenceOrder) -> tuple[int, int, int]:
        if order.side == Side.BUY:
            return (0, -order.price, order.arrival)
        return (1, order.price, order.arrival)

    def _in_priority_order(self) -> list[_ReferenceOrder]:
        return sorted(self._resting, key=self._priority)

    def _acceptable_makers(self, side: Side, limit: int | None) -> list[_ReferenceOrder]:
        """Opposite-side orders a taker with limit price ``limit`` may trade with, best
        first."""
        makers = [order for order in self._in_priority_order() if order.side != side]
        if limit is None:
            return makers
        if side == Side.BUY:
            return [order for order in makers if order.price <= limit]
        return [order for order in makers if order.price >= limit]

    def _find(self, order_id: int) -> _ReferenceOrder | None:
        for order in self._resting:
            if order.order_id == order_id:
                return order
        return None

    def _remove(self, order: _ReferenceOrder) -> None:
        self._resting = [other for other in self._resting if other is not order]

    def _add(self, order: _ReferenceOrder) -> None:
        self._arrivals += 1
        order.arrival = self._arrivals
        self._resting.append(order)

    # ----------------------------------------------------------------------------------
    # Events.

    def _reject(self, order_id: int, reason: RejectReason) -> Event:
        return Rejected(self._sequence.next(), order_id, self.instrument, reason)

    def _cancelled(self, order_id: int, qty: int, reason: CancelReason) -> Event:
        return Cancelled(self._sequence.next(), order_id, self.instrument, qty, reason)

    # ----------------------------------------------------------------------------------
    # Commands.

    def submit(self, command: NewOrder) -> list[Event]:
        """Handle a new order."""
        makers = self._acceptable_makers(command.side, command.price)
        if command.qty <= 0:
            return [self._reject(command.order_id, RejectReason.INVALID_QUANTITY)]
        if command.price is not None and command.price <= 0:
            return [self._reject(command.order_id, RejectReason.INVALID_PRICE)]
        if command.order_id in self._seen_ids:
            return [self._reject(command.order_id, RejectReason.DUPLICATE_ORDER_ID)]
        if command.post_only and command.price is None:
            return [self._reject(command.order_id, RejectReason.POST_ONLY_MARKET)]
        if command.post_only and command.tif in (TimeInForce.IOC, TimeInForce.FOK):
            return [self._reject(command.order_id, RejectReason.POST_ONLY_TIME_IN_FORCE)]
        if command.post_only and makers:
            return [self._reject(command.order_id, RejectReason.POST_ONLY_WOULD_CROSS)]
        if command.tif == TimeInForce.GTD:
            if command.expires_at is None:
                return [self._reject(command.order_id, RejectReason.GTD_WITHOUT_EXPIRY)]
            if self.now is not None and command.expires_at <= self.now:
                return [self._reject(command.order_id, RejectReason.ALREADY_EXPIRED)]
        self._seen_ids.add(command.order_id)
        events: list[Event] = [
            Accepted(
                self._sequence.next(),
                command.order_id,
                self.instrument,
                command.account,
                command.side,
                command.price,
                command.qty,
            )
        ]
        if command.tif == TimeInForce.FOK and not self._fok_fillable(command, makers):
            events.append(
                self._cancelled(command.order_id, command.qty, CancelReason.FOK_NOT_FILLABLE)
            )
            return events
        remaining = self._match(
            command.order_id,
            command.account,
            command.stp_group,
            command.side,
            command.stp,
            command.qty,
            makers,
            events,
        )
        if remaining == 0:
            return events
        if command.price is None:
            events.append(
                self._cancelled(command.order_id, remaining, CancelReason.MARKET_REMAINDER)
            )
        elif command.tif == TimeInForce.IOC:
            events.append(self._cancelled(command.order_id, remaining, CancelReason.IOC_REMAINDER))
        else:
            self._add(
                _ReferenceOrder(
                    command.order_id,
                    command.account,
                    command.side,
                    command.price,
                    remaining,
                    command.tif,
                    command.stp,
                    command.expires_at,
                    command.post_only,
                    0,
                    command.stp_group,
                )
            )
        return events

    @staticmethod
    def _fok_fillable(command: NewOrder, makers: list[_ReferenceOrder]) -> bool:
        """Other groups' quantity reachable before an order of the taker's own self-trade
        prevention group stops it (such orders are skipped under CANCEL_OLDEST, which would
        cancel them)."""
        reachable = 0
        for maker in makers:
            if maker.stp_group == command.stp_group:
                if command.stp == SelfTradePrevention.CANCEL_OLDEST:
                    continue
                break
            reachable += maker.qty
        return reachable >= command.qty

    def _match(
        self,
        order_id: int,
        account: int,
        stp_group: int,
        side: Side,
        stp: SelfTradePrevention,
        qty: int,
        makers: list[_ReferenceOrder],
        events: list[Event],
    ) -> int:
        """Trade against ``makers`` in order, never with one of the taker's ``stp_group``;
        return the taker's remaining quantity."""
        remaining = qty
        for maker in makers:
            if remaining == 0:
                break
            if maker.stp_group != stp_group:
                fill = min(remaining, maker.qty)
                events.append(
                    Trade(
                        self._sequence.next(),
                        self.instrument,
                        maker.price,
                        fill,
                        maker.order_id,
                        order_id,
                        maker.account,
                        account,
                        side,
                    )
                )
                maker.qty -= fill
                remaining -= fill
            elif stp == SelfTradePrevention.CANCEL_NEWEST:
                events.append(self._cancelled(order_id, remaining, CancelReason.SELF_TRADE))
                remaining = 0
            elif stp == SelfTradePrevention.CANCEL_OLDEST:
                events.append(self._cancelled(maker.order_id, maker.qty, CancelReason.SELF_TRADE))
                maker.qty = 0
            elif stp == SelfTradePrevention.CANCEL_BOTH:
                events.append(self._cancelled(maker.order_id, maker.qty, CancelReason.SELF_TRADE))
                events.append(self._cancelled(order_id, remaining, CancelReason.SELF_TRADE))
                maker.qty = 0
                remaining = 0
            else:
                decrement = min(remaining, maker.qty)
                events.append(self._cancelled(maker.order_id, decrement, CancelReason.SELF_TRADE))
                events.append(self._cancelled(order_id, decrement, CancelReason.SELF_TRADE))
                maker.qty -= decrement
                remaining -= decrement
            if maker.qty == 0:
                self._remove(maker)
        return remaining

    def cancel(self, command: Cancel) -> list[Event]:
        """Handle a cancel."""
        order = self._find(command.order_id)
        if order is None:
            return [self._reject(command.order_id, RejectReason.UNKNOWN_ORDER)]
        self._remove(order)
        return [self._cancelled(order.order_id, order.qty, CancelReason.USER)]

    def replace(self, command: Replace) -> list[Event]:
        """Handle a replace."""
        order = self._find(command.order_id)
        if command.qty < 0:
            return [self._reject(command.order_id, RejectReason.INVALID_QUANTITY)]
        if command.price is None or command.price <= 0:
            return [self._reject(command.order_id, RejectReason.INVALID_PRICE)]
        if order is None:
            return [self._reject(command.order_id, RejectReason.UNKNOWN_ORDER)]
        if command.qty == 0:
            self._remove(order)
            return [self._cancelled(order.order_id, order.qty, CancelReason.REPLACED_TO_ZERO)]
        if command.price == order.price and command.qty <= order.qty:
            order.qty = command.qty
            return [
                Replaced(
                    self._sequence.next(),
                    order.order_id,
                    self.instrument,
                    order.price,
                    order.qty,
                    True,
                )
            ]
        makers = self._acceptable_makers(order.side, command.price)
        if order.post_only and makers:
            return [self._reject(command.order_id, RejectReason.POST_ONLY_WOULD_CROSS)]
        events: list[Event] = [
            Replaced(
                self._sequence.next(),
                order.order_id,
                self.instrument,
                command.price,
                command.qty,
                False,
            )
        ]
        self._remove(order)
        remaining = self._match(
            order.order_id,
            order.account,
            order.stp_group,
            order.side,
            order.stp,
            command.qty,
            makers,
            events,
        )
        if remaining:
            order.price = command.price
            order.qty = remaining
            self._add(order)
        return events

    def expire(self, now: int) -> list[Event]:
        """Handle a tick for this book."""
        self.now = now if self.now is None else max(self.now, now)
        expired = [
            order
            for order in self._resting
            if order.tif == TimeInForce.GTD and order.expires_at is not None
            if order.expires_at <= now
        ]
        expired.sort(key=lambda order: (order.expires_at, order.order_id))
        events: list[Event] = []
        for order in expired:
            self._remove(order)
            events.append(self._cancelled(order.order_id, order.qty, CancelReason.EXPIRED))
        return events

    def restore(self, resting: RestingOrder) -> None:
        """Append a resting order behind the others at its price."""
        assert resting.order_id not in self._seen_ids
        self._seen_ids.add(resting.order_id)
        self._add(
            _ReferenceOrder(
                resting.order_id,
                resting.account,
                resting.side,
                resting.price,
                resting.qty,
                resting.tif,
                resting.stp,
                resting.expires_at,
                resting.post_only,
                0,
                resting.stp_group,
            )
        )

    # ----------------------------------------------------------------------------------
    # Queries.

    def _side(self, side: Side) -> list[_ReferenceOrder]:
        return [order for order in self._in_priority_order() if order.side == side]

    def _levels(self, side: Side) -> list[tuple[int, int, int]]:
        levels: list[tuple[int, int, int]] = []
        for order in self._side(side):
            if levels and levels[-1][0] == order.price:
                price, qty, count = levels[-1]
                levels[-1] = (price, qty + order.qty, count + 1)
            else:
                levels.append((order.price, order.qty, 1))
        return levels

    def best_bid(self) -> tuple[int, int] | None:
        """Best bid as (price, total quantity), or None."""
        levels = self._levels(Side.BUY)
        return (levels[0][0], levels[0][1]) if levels else None

    def best_ask(self) -> tuple[int, int] | None:
        """Best ask as (price, total quantity), or None."""
        levels = self._levels(Side.SELL)
        return (levels[0][0], levels[0][1]) if levels else None

    def depth(self, levels: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """The best ``levels`` levels per side as (price, total quantity, order count)."""
        return (self._levels(Side.BUY)[:levels], self._levels(Side.SELL)[:levels])

    def orders(self) -> list[RestingOrder]:
        """Resting orders in priority order."""
        return [
            RestingOrder(
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
            for order in self._in_priority_order()
        ]

    def __len__(self) -> int:
        return len(self._resting)

    def _check(self) -> None:
        """Assert the reference book's few invariants."""
        bids = self._levels(Side.BUY)
        asks = self._levels(Side.SELL)
        assert not bids or not asks or bids[0][0] < asks[0][0], "crossed book"
        assert all(order.qty > 0 for order in self._resting)
        assert len({order.order_id for order in self._resting}) == len(self._resting)


class ReferenceEngine:
    """Reference counterpart of `Engine`, with the same public API."""

    def __init__(self, start_seq: int = 0) -> None:
        self._sequence = _Sequence(start_seq)
        self._books: dict[int, ReferenceBook] = {}
        self._now: int | None = None

    @property
    def seq(self) -> int:
        """Sequence number of the last event issued."""
        return self._sequence.last

    def process(self, command: Command) -> list[Event]:
        """Apply one command and return its events."""
        if isinstance(command, Tick):
            return self._tick(command)
        book = self._books.get(command.instrument)
        if book is None:
            if not isinstance(command, NewOrder):
                book = ReferenceBook(command.instrument, self._sequence, self._now)
            else:
                book = self.book(command.instrument)
        if isinstance(command, NewOrder):
            return book.submit(command)
        if isinstance(command, Cancel):
            return book.cancel(command)
        return book.replace(command)

    def _tick(self, command: Tick) -> list[Event]:
        if command.instrument is not None:
            book = self._books.get(command.instrument)
            return [] if book is None else book.expire(command.now)
        self._now = command.now if self._now is None else max(self._now, command.now)
        events: list[Event] = []
        for instrument in sorted(self._books):
            events.extend(self._books[instrument].expire(command.now))
        return events

    def book(self, instrument: int) -> ReferenceBook:
        """The book of ``instrument``, created empty if needed."""
        if instrument not in self._books:
            self._books[instrument] = ReferenceBook(instrument, self._sequence, self._now)
        return self._books[instrument]

    def instruments(self) -> list[int]:
        """Ids of the instruments that have a book, ascending."""
        return sorted(self._books)

    def drop(self, instrument: int) -> None:
        """Forget one book."""
        self._books.pop(instrument, None)

    def restore(self, orders: Iterable[RestingOrder]) -> None:
        """Load resting orders without matching or events."""
        for resting in orders:
            self.book(resting.instrument).restore(resting)
        for instrument in self.instruments():
            self._books[instrument]._check()
