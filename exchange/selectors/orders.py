"""An account's orders and fills, as the API and pages show them.

A fill is one side of a trade seen from the order that took part in it: the order's side, the
trade's price and quantity, whether the order was the maker (it rested in the book) or the
taker, and the fee it paid: its order's maker or taker rate (fixed at acceptance) after the block
tier the fill reached, as the settlement stored it on the trade (``collateral.fill_fee_micros``).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import cast

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Sum

from exchange.models import (
    LIVE_STATUSES,
    RESTING_STATUSES,
    Account,
    CancelAllTimer,
    Order,
    OrderCommand,
    OrderTransition,
    Side,
    Trade,
)
from exchange.services.ledger_accounts import micros_to_usd
from statements import Select

STATUS_LIVE = "live"  # A status filter meaning any of LIVE_STATUSES.
STATUS_DONE = "done"  # A status filter meaning any other: the orders that ended.
# Ids are 64-bit integers in the database; a larger one from a URL finds nothing rather than
# overflowing the driver.
ID_MAX = 2**63 - 1
LIQUIDITY_MAKER = "maker"
LIQUIDITY_TAKER = "taker"
# Market orders and these times in force cancel what they cannot fill at once.
IMMEDIATE_TIMES_IN_FORCE = (Order.TimeInForce.IOC, Order.TimeInForce.FOK)


def live_quantity(
    account_id: int, instrument_id: int, side: str, *, cancelling_excluded: bool = False
) -> int:
    """Contracts the account's live orders on ``side`` of the instrument may still trade.

    ``cancelling_excluded``: less the orders whose cancel is queued for the matcher (a cancel
    command, or a replace to 0, still pending). The matcher runs that cancel before any command
    of the instrument queued after it, so those orders trade nothing a later order could
    count on; a fill one gets before its cancel is reached is checked by the matcher, which
    holds a reducing order to the position when it trades (``Matcher._reduce_only_enforce``)."""
    orders = Order.objects.filter(
        account_id=account_id, instrument_id=instrument_id, side=side, status__in=LIVE_STATUSES
    )
    if cancelling_excluded:
        cancels = OrderCommand.objects.filter(
            Q(kind=OrderCommand.Kind.CANCEL) | Q(kind=OrderCommand.Kind.REPLACE, quantity=0),
            order_id=OuterRef("pk"),
            status=OrderCommand.Status.PENDING,
        )
        orders = orders.exclude(Exists(cancels))
    total: int = orders.aggregate(
        open=Sum(F("quantity") - F("filled_quantity") - F("cancelled_quantity"), default=0)
    )["open"]
    return total


def past_expiry_quantity(orders: QuerySet[Order], now: datetime) -> int:
    """Of ``orders``, the contracts still open in live GTD orders whose time has come
    (``Order.past_expiry``): out of the book already, and ended by the matcher's sweep within
    about a second. The checks that count live orders (a resale sell's block, reduce-only, a
    pool's contracts) still count them until then, since a matching batch that began before
    their expiry may fill them until it commits; their refusals say how many, so the caller
    knows to try again in a moment."""
    total: int = orders.filter(status__in=LIVE_STATUSES, expires_at__lte=now).aggregate(
        open=Sum(F("quantity") - F("filled_quantity") - F("cancelled_quantity"), default=0)
    )["open"]
    return total


def past_expiry_note(quantity: int) -> str:
    """The refusal's note on ``past_expiry_quantity``: empty when there are none."""
    if not quantity:
        return ""
    return (
        f" ({quantity} of them in good-till-date orders whose time has come, which the "
        "matcher ends within about a second: try again then)"
    )


@dataclass(frozen=True)
class Fill:
    trade_sequence: int
    order_id: int
    instrument: str  # The symbol.
    side: str
    price: Decimal
    quantity: int
    fee: Decimal  # USD.
    liquidity: str  # LIQUIDITY_MAKER or LIQUIDITY_TAKER.
    executed_at: datetime


@dataclass(frozen=True)
class Outcome:
    """An order just placed: what it is, how it filled, what rests and what was dropped."""

    order: Order
    fills: list[Fill]
    resting_quantity: int  # Open contracts in the book (0 while the matcher has not run).
    market_remainder: int  # Contracts of a market, IOC or FOK order cancelled unfilled.


def expired_unswept(order: Order, now: datetime) -> bool:
    """A resting GTD order whose time has come by ``now`` (``expires_at`` itself included), not
    yet swept. Nothing more of it trades: the book and quotes leave it out
    (``selectors.market.resting_orders``) and every matching batch that begins from its time
    on expires it before running any command; only a batch that began before it (whose trades
    are at that earlier time) may still fill it as it commits. The matcher's sweep writes it
    ``expired`` within about a second; the API reports it so from its time (``Order.past_expiry``
    is the pages' same rule, which also counts a new order, rejected rather than expired)."""
    return (
        order.expires_at is not None
        and order.status in RESTING_STATUSES
        and order.expires_at <= now
    )


def _expired_unswept(now: datetime) -> Q:
    """``expired_unswept`` as a query."""
    return Q(status__in=RESTING_STATUSES, expires_at__lte=now)


def orders_of(
    account: Account,
    *,
    status: str | None = None,
    instrument: str | None = None,
    side: str | None = None,
    client_order_id: str | None = None,
    updated_since: datetime | None = None,
    now: datetime | None = None,
) -> QuerySet[Order]:
    """The account's orders, filtered by status (or ``STATUS_LIVE``, ``STATUS_DONE``),
    instrument symbol, side, client order id (one order at most) and last change at or after
    ``updated_since``; newest first.

    With ``now``, the filters read a resting GTD order whose time has come (``expired_unswept``)
    as the API reports it: expired (so done, not live), changed at its ``expires_at``. Without
    it, as its row stands: the services that act on live orders (the cancel-all-after switch)
    and the pages."""
    orders = Order.objects.filter(account=account).select_related("instrument")
    if client_order_id is not None:
        orders = orders.filter(client_order_id=client_order_id)
    if status:
        orders = _of_status(orders, status, now)
    if instrument:
        orders = orders.filter(instrument__symbol=instrument)
    if side:
        orders = orders.filter(side=side)
    if updated_since is not None:
        changed = Q(updated_at__gte=updated_since)
        if now is not None:
            changed |= _expired_unswept(now) & Q(expires_at__gte=updated_since)
        orders = orders.filter(changed)
    return orders.order_by("-id")


def _of_status(orders: QuerySet[Order], status: str, now: datetime | None) -> QuerySet[Order]:
    if now is None:
        if status == STATUS_LIVE:
            return orders.filter(status__in=LIVE_STATUSES)
        if status == STATUS_DONE:
            return orders.exclude(status__in=LIVE_STATUSES)
        return orders.filter(status=status)
    unswept = _expired_unswept(now)
    if status == STATUS_LIVE:
        return orders.filter(status__in=LIVE_STATUSES).exclude(unswept)
    if status == STATUS_DONE:
        return orders.filter(~Q(status__in=LIVE_STATUSES) | unswept)
    if status == Order.Status.EXPIRED:
        return orders.filter(Q(status=status) | unswept)
    return orders.filter(status=status).exclude(unswept)


def orders_ended_lately(account: Account, *, instrument: str = "") -> QuerySet[Order]:
    """The account's orders that ended (filled, cancelled, expired, rejected), optionally in
    one instrument, the latest to end first: an old order cancelled now comes before a newer
    one that filled yesterday. An ended order does not change again, so its ``updated_at`` is
    when it ended; the ``order_ended`` index serves this order, slice it to bound the rows."""
    orders = orders_of(account, status=STATUS_DONE, instrument=instrument)
    return orders.order_by("-updated_at", "-id")


def cancel_all_timer_of(account: Account) -> CancelAllTimer | None:
    """The account's armed cancel-all-after switch, if any."""
    return CancelAllTimer.objects.filter(account=account).first()


def order_of(account: Account, order_id: int) -> Order | None:
    """One of the account's orders; None for another account's order or no order at all."""
    if not 0 < order_id <= ID_MAX:
        return None
    return orders_of(account).filter(pk=order_id).first()


def transitions_of(order: Order) -> QuerySet[OrderTransition]:
    """What the matcher did to ``order``: its status changes and replaces, newest first."""
    return OrderTransition.objects.filter(order=order).order_by("-id")


def orders_by_client_order_ids(
    account: Account, client_order_ids: Iterable[str]
) -> dict[str, Order]:
    """The account's orders placed with one of ``client_order_ids``, by client order id."""
    orders = orders_of(account).filter(client_order_id__in=list(client_order_ids))
    return {cast(str, order.client_order_id): order for order in orders}


def orders_by_ids(account: Account, order_ids: Iterable[int]) -> dict[int, Order]:
    """The account's orders among ``order_ids``, by id: another account's, or an id no order
    has, is missing."""
    wanted = [order_id for order_id in order_ids if 0 < order_id <= ID_MAX]
    return {order.pk: order for order in orders_of(account).filter(pk__in=wanted)}


def trades_of(
    account: Account,
    *,
    instrument: str | None = None,
    order_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Trade]:
    """The trades the account took part in (by instrument symbol, of one of its own orders,
    executed at or after ``since`` and before ``until``); newest first. ``fills_in`` turns
    them into the account's fills. ``order_id`` matches only the account's own order: the
    other side of a trade is another organization's, and its id is not the caller's to use."""
    trades = Trade.objects.filter(Q(buyer_account=account) | Q(seller_account=account))
    if since is not None:
        trades = trades.filter(executed_at__gte=since)
    if until is not None:
        trades = trades.filter(executed_at__lt=until)
    if instrument:
        trades = trades.filter(instrument__symbol=instrument)
    if order_id is not None:
        trades = trades.filter(
            Q(maker_order_id=order_id, maker_order__account=account)
            | Q(taker_order_id=order_id, taker_order__account=account)
        )
    return trades.select_related("instrument", "maker_order", "taker_order").order_by("-id")


def fills_in(
    trades: Iterable[Trade], account: Account, *, order_id: int | None = None
) -> list[Fill]:
    """The account's fills in ``trades``: one per trade and order of the account in it (of
    its order ``order_id`` alone when given: a trade between two of its own orders has a
    fill for each)."""
    return [
        fill_of_trade(trade, order)
        for trade in trades
        for order in (trade.maker_order, trade.taker_order)
        if order.account_id == account.pk and (order_id is None or order.pk == order_id)
    ]


# The placement answer's fills: a prepared raw statement, as the ORM compiled this query
# afresh on every filled placement. The orders and their instrument are the caller's.
TRADES_OF_ORDERS = Select(
    [Trade],
    "{t0}",
    "WHERE {t0}.maker_order_id IN ({values}) OR {t0}.taker_order_id IN ({values}) ORDER BY {t0}.id",
)


def order_outcome(order: Order) -> Outcome:
    """An order with its fills so far, oldest first (no query when it has none)."""
    return order_outcomes([order])[0]


def order_outcomes(orders: Sequence[Order]) -> list[Outcome]:
    """``order_outcome`` of each order, with one query for the fills of all."""
    filled = {order.pk: order for order in orders if order.filled_quantity}
    fills: dict[int, list[Fill]] = {order_id: [] for order_id in filled}
    if filled:
        ids = sorted(filled)
        for (row,) in TRADES_OF_ORDERS.sized(len(ids)).rows(ids + ids):
            trade = cast(Trade, row)
            for order_id in (trade.maker_order_id, trade.taker_order_id):
                if order_id in filled:
                    fills[order_id].append(_fill_of(trade, filled[order_id]))
    return [_outcome(order, fills.get(order.pk, [])) for order in orders]


def _fill_of(trade: Trade, order: Order) -> Fill:
    trade.instrument = order.instrument
    return fill_of_trade(trade, order)


def _outcome(order: Order, fills: list[Fill]) -> Outcome:
    immediate = order.type == Order.Type.MARKET or order.time_in_force in IMMEDIATE_TIMES_IN_FORCE
    return Outcome(
        order=order,
        fills=fills,
        resting_quantity=order.open_quantity if order.status in RESTING_STATUSES else 0,
        market_remainder=order.cancelled_quantity if immediate else 0,
    )


def fill_of_trade(trade: Trade, order: Order) -> Fill:
    """One side of ``trade``, ``order``'s, with its fee; reads nothing (``trade.instrument``
    must be loaded)."""
    instrument = trade.instrument
    maker = trade.maker_order_id == order.pk
    fee = trade.buyer_fee if order.side == Side.BUY else trade.seller_fee
    return Fill(
        trade_sequence=trade.sequence,
        order_id=order.pk,
        instrument=instrument.symbol,
        side=order.side,
        price=trade.price,
        quantity=trade.quantity,
        fee=micros_to_usd(fee),
        liquidity=LIQUIDITY_MAKER if maker else LIQUIDITY_TAKER,
        executed_at=trade.executed_at,
    )
