"""Turn the engine's events for one instrument into rows: order changes, transitions, trades.

An ``EventApplier`` collects everything one matcher transaction writes for one instrument;
``flush_together`` writes what the appliers of a transaction collected in a few bulk
statements. Every event advances the instrument's sequence by one; trades and transitions carry
that sequence, and an order's queue priority is the sequence at which it took its place.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.db import connection
from django.utils import timezone

import matching
from exchange.matcher.settlement import Settlement, settlements_flush
from exchange.matcher.wake import DONE_CHANNEL, done_payloads
from exchange.models import (
    RESTING_STATUSES,
    CancelReason,
    Instrument,
    Order,
    OrderCommand,
    OrderTransition,
    Side,
    Trade,
)
from exchange.units import lots_to_quantity, ticks_to_price
from statements import insert_rows, pipelined, update_rows

# The one table of allowed order status changes. A replace records a same-status transition.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Order.Status.NEW: frozenset({Order.Status.OPEN, Order.Status.REJECTED}),
    Order.Status.OPEN: frozenset(
        {
            Order.Status.OPEN,
            Order.Status.PARTIALLY_FILLED,
            Order.Status.FILLED,
            Order.Status.CANCELLED,
            Order.Status.EXPIRED,
        }
    ),
    Order.Status.PARTIALLY_FILLED: frozenset(
        {
            Order.Status.PARTIALLY_FILLED,
            Order.Status.FILLED,
            Order.Status.CANCELLED,
            Order.Status.EXPIRED,
        }
    ),
    Order.Status.FILLED: frozenset(),
    Order.Status.CANCELLED: frozenset(),
    Order.Status.EXPIRED: frozenset(),
    Order.Status.REJECTED: frozenset(),
}

ORDER_FIELDS_WRITTEN = [
    "status",
    "reject_code",
    "done_reason",
    "quantity",
    "price",
    "filled_quantity",
    "cancelled_quantity",
    "filled_notional",
    "priority_sequence",
    "margin_per_contract",
    "updated_at",
]


class EventApplier:
    def __init__(
        self,
        instrument: Instrument,
        orders: dict[int, Order],
        now: datetime | None = None,
        settlement: Settlement | None = None,
    ) -> None:
        self.instrument = instrument
        self.sequence = instrument.sequence
        self.now = now or timezone.now()
        self.orders = orders
        self.dirty_orders: dict[int, Order] = {}
        self.transitions: list[OrderTransition] = []
        self.trades: list[Trade] = []
        self.commands: list[OrderCommand] = []
        self.settlement = settlement or Settlement(instrument)
        self.settlement.begin(instrument)
        self.settlement.load(set(orders))

    def transition(self, order: Order, to_status: str, reason: str) -> None:
        """Apply one status change from the transition table and record it."""
        assert to_status in ALLOWED_TRANSITIONS[order.status], (
            f"{order.status} -> {to_status} for #{order.pk}"
        )
        self.transitions.append(
            OrderTransition(
                order=order,
                from_status=order.status,
                to_status=to_status,
                reason=reason,
                sequence=self.sequence,
            )
        )
        order.status = to_status
        self._touch(order)
        if not ALLOWED_TRANSITIONS[to_status]:  # Left the book for good: release collateral.
            order.done_reason = reason
            self.settlement.close(order)

    def _touch(self, order: Order) -> None:
        order.updated_at = self.now
        self.dirty_orders[order.pk] = order

    def _settle_after_fill_or_cancel(self, order: Order, reason: str, removed_status: str) -> None:
        if order.open_quantity == 0:
            target = Order.Status.FILLED if reason == "filled" else removed_status
        elif order.filled_quantity:
            target = Order.Status.PARTIALLY_FILLED
        else:
            target = Order.Status.OPEN
        if target != order.status:
            self.transition(order, target, reason)
        else:
            self._touch(order)

    def missing_order_ids(self, events: list[matching.Event]) -> set[int]:
        wanted = set()
        for event in events:
            if type(event) is matching.Trade:
                wanted.add(event.maker_order_id)
            elif type(event) is matching.Cancelled:
                wanted.add(event.order_id)
        return wanted - self.orders.keys()

    def apply(self, command: OrderCommand, events: list[matching.Event]) -> None:
        """Apply the events one command produced; mark the command done or rejected."""
        command.status = OrderCommand.Status.DONE
        for event in events:
            self.sequence += 1
            handler = self._handlers[type(event)]
            handler(self, command, event)
        command.processed_at = self.now
        self.commands.append(command)

    def apply_tick(self, events: list[matching.Event]) -> None:
        for event in events:
            self.sequence += 1
            assert type(event) is matching.Cancelled
            self._on_cancelled(None, event)

    def apply_reduce_only_cut(self, event: matching.Cancelled) -> None:
        """Apply the cut of a resting reducing order (the matcher's ``_reduce_only_enforce``):
        ``event`` is the engine's cancel or lowering replace, recast as the quantity removed.
        An order cut to nothing ends ``reduce_only_exceeded``; one still working records the
        cut as a transition that keeps its status."""
        self.sequence += 1
        order = self.orders[event.order_id]
        order.cancelled_quantity += lots_to_quantity(event.qty, self.instrument.lot_size)
        reason = CancelReason.REDUCE_ONLY_EXCEEDED
        if order.open_quantity:
            self.settlement.trim(order)  # A reducing option buy holds its premium: less now.
            self.transition(order, order.status, reason)
        else:
            self.transition(order, Order.Status.CANCELLED, reason)

    def _on_accepted(self, command: OrderCommand, event: matching.Accepted) -> None:
        order = self.orders[event.order_id]
        order.priority_sequence = self.sequence
        self.transition(order, Order.Status.OPEN, "accepted")

    def _on_rejected(self, command: OrderCommand, event: matching.Rejected) -> None:
        command.status = OrderCommand.Status.REJECTED
        command.reject_code = str(event.reason)
        if command.kind == OrderCommand.Kind.REPLACE:
            self.settlement.replace_refused(command)
            # Its top-up (``Settlement._top_up``, held before the engine saw it) is for terms
            # the order did not take: the order holds what its own terms need, no more.
            order = self.orders.get(event.order_id)
            if order is not None and order.status in RESTING_STATUSES:
                self.settlement.trim(order)
        if command.kind == OrderCommand.Kind.NEW:
            order = self.orders[event.order_id]
            order.reject_code = str(event.reason)
            self.transition(order, Order.Status.REJECTED, str(event.reason))

    def _on_trade(self, command: OrderCommand, event: matching.Trade) -> None:
        instrument = self.instrument
        price = ticks_to_price(event.price, instrument.tick_size)
        quantity = lots_to_quantity(event.qty, instrument.lot_size)
        maker = self.orders[event.maker_order_id]
        taker = self.orders[event.taker_order_id]
        buyer, seller = (taker, maker) if str(event.taker_side) == Side.BUY else (maker, taker)
        buyer_fee, seller_fee = self.settlement.trade(
            self.sequence, price, quantity, buyer, seller, maker
        )
        self.trades.append(
            Trade(
                instrument=instrument,
                sequence=self.sequence,
                price=price,
                quantity=quantity,
                maker_order=maker,
                taker_order=taker,
                taker_side=str(event.taker_side),
                buyer_account_id=buyer.account_id,
                seller_account_id=seller.account_id,
                executed_at=self.now,
                buyer_fee=buyer_fee,
                seller_fee=seller_fee,
            )
        )
        for order in (maker, taker):
            order.filled_quantity += quantity
            order.filled_notional += price * quantity
            self._settle_after_fill_or_cancel(order, "filled", Order.Status.FILLED)
            if order.open_quantity:  # Its fill may have taken less than the fill's share held.
                self.settlement.trim(order)

    def _on_cancelled(self, command: OrderCommand | None, event: matching.Cancelled) -> None:
        order = self.orders[event.order_id]
        order.cancelled_quantity += lots_to_quantity(event.qty, self.instrument.lot_size)
        reason = str(event.reason)
        if event.reason == matching.CancelReason.IOC_REMAINDER and order.type == Order.Type.MARKET:
            # The engine saw a market order as IOC at its protection price (see the runtime).
            reason = str(matching.CancelReason.MARKET_REMAINDER)
        elif event.reason == matching.CancelReason.USER and command is not None:
            # The engine knows only that a cancel command asked; the command says who or what.
            reason = command.cancel_reason or CancelReason.USER
        removed_status = (
            Order.Status.EXPIRED
            if event.reason == matching.CancelReason.EXPIRED
            else Order.Status.CANCELLED
        )
        self._settle_after_fill_or_cancel(order, reason, removed_status)
        if order.open_quantity:  # Part of it cancelled (self-trade decrement): it needs less.
            self.settlement.trim(order)

    def _on_replaced(self, command: OrderCommand, event: matching.Replaced) -> None:
        order = self.orders[event.order_id]
        order.price = ticks_to_price(event.price, self.instrument.tick_size)
        order.quantity = (
            order.filled_quantity
            + order.cancelled_quantity
            + lots_to_quantity(event.qty, self.instrument.lot_size)
        )
        if not event.priority_kept:
            order.priority_sequence = self.sequence
        self.settlement.replaced(order, command)
        self.settlement.trim(order)  # A lower quantity or price needs less than it held.
        self.transition(
            order, order.status, "replaced" if event.priority_kept else "replaced_lost_priority"
        )

    # Each handler takes the event of its key's type.
    _handlers: ClassVar[
        dict[type[matching.Event], Callable[["EventApplier", OrderCommand, Any], None]]
    ] = {
        matching.Accepted: _on_accepted,
        matching.Rejected: _on_rejected,
        matching.Trade: _on_trade,
        matching.Cancelled: _on_cancelled,
        matching.Replaced: _on_replaced,
    }

    def flush(self) -> None:
        """Write everything collected (``flush_together`` for this one instrument)."""
        flush_together([self])

    def _write_rows(self) -> None:
        update_rows(Order, self.dirty_orders.values(), ORDER_FIELDS_WRITTEN)
        insert_rows(Trade, self.trades)
        insert_rows(OrderTransition, self.transitions)
        update_rows(OrderCommand, self.commands, ["status", "reject_code", "processed_at"])
        if self.sequence != self.instrument.sequence:
            self.instrument.sequence = self.sequence
            update_rows(Instrument, [self.instrument], ["sequence"])


def flush_together(appliers: list[EventApplier]) -> None:
    """Write what the appliers of one matcher transaction collected, in a fixed order, and
    tell the web processes waiting for these orders (at commit).

    The rows of every instrument go in one pipelined round trip; the ledger's postings, which
    read results back, follow in one ``entries_post`` for all of them.
    """
    with pipelined():
        for applier in appliers:
            applier._write_rows()
        _notify_done({order_id for applier in appliers for order_id in applier.orders})
    settlements_flush([applier.settlement for applier in appliers])


def _notify_done(order_ids: set[int]) -> None:
    """``pg_notify`` the ids of the orders written, for web processes waiting on external
    matchers (``exchange.matcher.outcomes``); delivered when the transaction commits."""
    if (
        not order_ids
        or connection.vendor != "postgresql"
        or settings.EXCHANGE_MATCHER_MODE != "external"
    ):
        return
    with connection.cursor() as cursor:
        for payload in done_payloads(sorted(order_ids)):
            cursor.execute("SELECT pg_notify(%s, %s)", [DONE_CHANNEL, payload])
