"""Value types of the matching engine: enumerations, commands, events and resting orders.

Every command and event is a frozen, slotted dataclass so that values can be compared, hashed
and shared between threads without copying. Prices are integers in ticks and quantities are
integers in lots; the engine never uses floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    """Side of an order."""

    BUY = "buy"
    SELL = "sell"


class TimeInForce(StrEnum):
    """How long an order may stay in the book.

    GTC rests until cancelled, GTD rests until ``expires_at`` (see `Tick`), IOC trades what it
    can on arrival and cancels the rest, FOK trades its full quantity on arrival or nothing.
    """

    GTC = "gtc"
    GTD = "gtd"
    IOC = "ioc"
    FOK = "fok"


class SelfTradePrevention(StrEnum):
    """What happens when an incoming order meets a resting order of the same self-trade
    prevention group (``stp_group``: by default the account; the exchange passes the account's
    organization, so two accounts of one firm never trade with each other).

    The incoming (taker) order's mode decides. CANCEL_NEWEST cancels the taker's remainder,
    CANCEL_OLDEST cancels the resting order and keeps matching, CANCEL_BOTH cancels both, and
    DECREMENT reduces both by the smaller of their quantities without a trade.
    """

    CANCEL_NEWEST = "cancel_newest"
    CANCEL_OLDEST = "cancel_oldest"
    CANCEL_BOTH = "cancel_both"
    DECREMENT = "decrement"


class RejectReason(StrEnum):
    """Why a command was rejected; a rejected command leaves the engine unchanged."""

    INVALID_QUANTITY = "MATCHING_INVALID_QUANTITY"
    INVALID_PRICE = "MATCHING_INVALID_PRICE"
    DUPLICATE_ORDER_ID = "MATCHING_DUPLICATE_ORDER_ID"
    UNKNOWN_ORDER = "MATCHING_UNKNOWN_ORDER"
    POST_ONLY_MARKET = "MATCHING_POST_ONLY_MARKET"
    # A post-only order must rest; IOC and FOK orders never do.
    POST_ONLY_TIME_IN_FORCE = "MATCHING_POST_ONLY_TIME_IN_FORCE"
    POST_ONLY_WOULD_CROSS = "MATCHING_POST_ONLY_WOULD_CROSS"
    GTD_WITHOUT_EXPIRY = "MATCHING_GTD_WITHOUT_EXPIRY"
    ALREADY_EXPIRED = "MATCHING_ALREADY_EXPIRED"


class CancelReason(StrEnum):
    """Why quantity was removed from an order."""

    USER = "user"
    IOC_REMAINDER = "ioc_remainder"
    MARKET_REMAINDER = "market_remainder"
    FOK_NOT_FILLABLE = "fok_not_fillable"
    SELF_TRADE = "self_trade"
    EXPIRED = "expired"
    REPLACED_TO_ZERO = "replaced_to_zero"


def _default_stp_group(command: Any) -> None:
    """Give an order without a self-trade prevention group its account as the group.

    Resolved once, at construction, so that the engine compares one integer field on its hot
    path. ``dataclasses.replace`` of the account alone therefore keeps the old group: pass
    ``stp_group`` too.
    """
    if command.stp_group is None:
        object.__setattr__(command, "stp_group", command.account)


def _coerce_enum(command: Any, name: str, enum_class: type[StrEnum]) -> None:
    """Turn a plain string field into its enumeration member.

    The engine compares enumeration members by identity on its hot path, so a caller that
    passes the stored string (for example ``"buy"`` read from the database) gets it converted
    once here, at construction time.
    """
    value = getattr(command, name)
    if type(value) is not enum_class:
        object.__setattr__(command, name, enum_class(value))


# Commands.


@dataclass(frozen=True, slots=True)
class NewOrder:
    """Submit a new order.

    Parameters
    ----------
    order_id : int
        Identifier chosen by the caller, unique per instrument for the engine's lifetime.
    instrument : int
        Book the order goes to.
    account : int
        Owner: named in the order's events (`Accepted`, `Trade`).
    side : Side
        Buy or sell.
    qty : int
        Quantity in lots, must be positive.
    price : int or None
        Limit price in ticks (positive), or None for a market order.
    tif : TimeInForce
        Time in force.
    post_only : bool
        Reject instead of trading on arrival.
    stp : SelfTradePrevention
        Self-trade prevention mode used when this order takes liquidity.
    expires_at : int or None
        Expiry time for GTD orders, in the same unit as `Tick.now`; ignored for other tifs.
    stp_group : int, optional
        Self-trade prevention group: the order never trades with a resting order of the same
        group (``stp`` decides what happens instead). Left out, the account itself; the
        exchange passes the account's organization.
    """

    order_id: int
    instrument: int
    account: int
    side: Side
    qty: int
    price: int | None
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    expires_at: int | None = None
    # Left out (None), the account: ``__post_init__`` puts it there, so the field is typed as
    # what every constructed order holds.
    stp_group: int = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        _default_stp_group(self)
        _coerce_enum(self, "side", Side)
        _coerce_enum(self, "tif", TimeInForce)
        _coerce_enum(self, "stp", SelfTradePrevention)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the whole open quantity of a resting order."""

    order_id: int
    instrument: int


@dataclass(frozen=True, slots=True)
class Replace:
    """Change the price and open quantity of a resting order.

    Same price and a quantity not above the current one keeps time priority; any other change
    loses it and the order is matched like a new arrival. A quantity of 0 cancels the order.
    """

    order_id: int
    instrument: int
    price: int | None
    qty: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Advance the clock: cancel resting GTD orders whose ``expires_at <= now``.

    With ``instrument`` None every book is ticked, otherwise only that one.
    """

    now: int
    instrument: int | None = None


Command = NewOrder | Cancel | Replace | Tick


# Events. Every event carries ``seq``, an engine-wide strictly increasing number.


@dataclass(frozen=True, slots=True)
class Accepted:
    """A new order passed validation; emitted before any of its trades."""

    seq: int
    order_id: int
    instrument: int
    account: int
    side: Side
    price: int | None
    qty: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A command was refused; nothing else changed."""

    seq: int
    order_id: int
    instrument: int
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class Trade:
    """A fill between a resting (maker) order and an incoming (taker) order, at the maker's
    price."""

    seq: int
    instrument: int
    price: int
    qty: int
    maker_order_id: int
    taker_order_id: int
    maker_account: int
    taker_account: int
    taker_side: Side


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Quantity ``qty`` was removed from an order; the order leaves the book when its open
    quantity reaches 0."""

    seq: int
    order_id: int
    instrument: int
    qty: int
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class Replaced:
    """A resting order now has ``price`` and open quantity ``qty``."""

    seq: int
    order_id: int
    instrument: int
    price: int
    qty: int
    priority_kept: bool


Event = Accepted | Rejected | Trade | Cancelled | Replaced


@dataclass(frozen=True, slots=True)
class RestingOrder:
    """A snapshot of an order resting in a book; also the input of `Engine.restore`.

    ``stp_group`` is the order's self-trade prevention group, as in `NewOrder` (left out: the
    account).
    """

    order_id: int
    instrument: int
    account: int
    side: Side
    price: int
    qty: int
    tif: TimeInForce
    stp: SelfTradePrevention
    expires_at: int | None
    post_only: bool = False
    # As `NewOrder.stp_group`: left out (None), the account.
    stp_group: int = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        _default_stp_group(self)
        _coerce_enum(self, "side", Side)
        _coerce_enum(self, "tif", TimeInForce)
        _coerce_enum(self, "stp", SelfTradePrevention)
