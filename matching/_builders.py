"""Fast construction of the frozen event dataclasses.

A frozen dataclass ``__init__`` sets every field through ``object.__setattr__``, which costs
about a microsecond for a nine-field event and dominated the engine's profile. A builder is a
plain slotted class with exactly the same slot layout as its event class: the engine fills a
builder with ordinary attribute stores and then switches the instance's ``__class__`` to the
event class. The result is a genuine, frozen instance of the event class that compares equal to
one built by the normal constructor, at about a fifth of the cost.
"""

from __future__ import annotations

from typing import Any

from matching.model import (
    Accepted,
    Cancelled,
    CancelReason,
    Rejected,
    RejectReason,
    Replaced,
    Side,
    Trade,
)


def builder_class(event_class: type) -> Any:
    """Return a mutable slotted class whose instances may be re-classed as ``event_class``.

    Parameters
    ----------
    event_class : type
        A dataclass declared with ``frozen=True, slots=True`` directly on ``object``.

    Returns
    -------
    type
        A class with the same ``__slots__`` and no other behaviour.
    """
    assert event_class.__bases__ == (object,), "builders need the event to derive from object"
    slots = event_class.__dict__["__slots__"]
    return type(f"_{event_class.__name__}Builder", (), {"__slots__": slots})


AcceptedBuilder: Any = builder_class(Accepted)
RejectedBuilder: Any = builder_class(Rejected)
TradeBuilder: Any = builder_class(Trade)
CancelledBuilder: Any = builder_class(Cancelled)
ReplacedBuilder: Any = builder_class(Replaced)


def make_accepted(
    seq: int, order_id: int, instrument: int, account: int, side: Side, price: int | None, qty: int
) -> Accepted:
    """Build an `Accepted` event without the frozen-dataclass constructor."""
    event = AcceptedBuilder()
    event.seq = seq
    event.order_id = order_id
    event.instrument = instrument
    event.account = account
    event.side = side
    event.price = price
    event.qty = qty
    event.__class__ = Accepted
    result: Accepted = event
    return result


def make_rejected(seq: int, order_id: int, instrument: int, reason: RejectReason) -> Rejected:
    """Build a `Rejected` event without the frozen-dataclass constructor."""
    event = RejectedBuilder()
    event.seq = seq
    event.order_id = order_id
    event.instrument = instrument
    event.reason = reason
    event.__class__ = Rejected
    result: Rejected = event
    return result


def make_trade(
    seq: int,
    instrument: int,
    price: int,
    qty: int,
    maker_order_id: int,
    taker_order_id: int,
    maker_account: int,
    taker_account: int,
    taker_side: Side,
) -> Trade:
    """Build a `Trade` event without the frozen-dataclass constructor."""
    event = TradeBuilder()
    event.seq = seq
    event.instrument = instrument
    event.price = price
    event.qty = qty
    event.maker_order_id = maker_order_id
    event.taker_order_id = taker_order_id
    event.maker_account = maker_account
    event.taker_account = taker_account
    event.taker_side = taker_side
    event.__class__ = Trade
    result: Trade = event
    return result


def make_cancelled(
    seq: int, order_id: int, instrument: int, qty: int, reason: CancelReason
) -> Cancelled:
    """Build a `Cancelled` event without the frozen-dataclass constructor."""
    event = CancelledBuilder()
    event.seq = seq
    event.order_id = order_id
    event.instrument = instrument
    event.qty = qty
    event.reason = reason
    event.__class__ = Cancelled
    result: Cancelled = event
    return result


def make_replaced(
    seq: int, order_id: int, instrument: int, price: int, qty: int, priority_kept: bool
) -> Replaced:
    """Build a `Replaced` event without the frozen-dataclass constructor."""
    event = ReplacedBuilder()
    event.seq = seq
    event.order_id = order_id
    event.instrument = instrument
    event.price = price
    event.qty = qty
    event.priority_kept = priority_kept
    event.__class__ = Replaced
    result: Replaced = event
    return result


def _self_test() -> None:
    """Check once at import that built events equal normally constructed ones."""
    checks = [
        (make_accepted(1, 2, 3, 4, Side.BUY, None, 5), Accepted(1, 2, 3, 4, Side.BUY, None, 5)),
        (
            make_rejected(1, 2, 3, RejectReason.UNKNOWN_ORDER),
            Rejected(1, 2, 3, RejectReason.UNKNOWN_ORDER),
        ),
        (make_trade(1, 2, 3, 4, 5, 6, 7, 8, Side.SELL), Trade(1, 2, 3, 4, 5, 6, 7, 8, Side.SELL)),
        (
            make_cancelled(1, 2, 3, 4, CancelReason.USER),
            Cancelled(1, 2, 3, 4, CancelReason.USER),
        ),
        (make_replaced(1, 2, 3, 4, 5, True), Replaced(1, 2, 3, 4, 5, True)),
    ]
    for built, constructed in checks:
        assert type(built) is type(constructed)
        assert built == constructed
        assert hash(built) == hash(constructed)


_self_test()
