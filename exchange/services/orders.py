"""Order services: accept (validate and commit as NEW), cancel and replace.

Accepting an order commits the order row with status NEW together with its NEW command and the
ledger holds of its collateral (``exchange.services.collateral``); an order that cannot be
collateralized is rejected with a ``RISK_*`` code and leaves only its rejection record. The
committed command is what the matcher executes. In the inline mode the matcher then runs in this
process; in the external mode a ``run_matcher`` shard is woken by NOTIFY at commit.
"""

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet, Subquery, TextChoices
from django.utils import timezone

import matching
from exchange import calendar
from exchange.errors import OrderRejectCode, OrderRejected, RiskErrorCode
from exchange.matcher import outcomes, wake
from exchange.models import (
    LIVE_STATUSES,
    Account,
    CancelReason,
    Instrument,
    MarginCall,
    Order,
    OrderCommand,
    OrderRejection,
    Organization,
    ReservedCapacity,
    Side,
)
from exchange.recent import Recent
from exchange.selectors import marks as marks_selector
from exchange.selectors import orders as orders_selector
from exchange.selectors import positions as positions_selector
from exchange.selectors.capacity import block_holdings
from exchange.services import collateral
from exchange.units import price_to_ticks, quantity_to_lots
from ledger.errors import LedgerError, LedgerErrorCode
from statements import Select, insert_row

CLIENT_ORDER_ID_LENGTH_MAX = 64
ORDER_WAIT_SECONDS_MAX = 10.0
# Orders one ``orders_submit`` call (one API request) may place.
BATCH_ORDERS_MAX = 20
# Orders one API request may cancel by id.
BATCH_CANCELS_MAX = 100
INSTRUMENT_BY_SYMBOL = Select([Instrument], "{t0}", "WHERE {t0}.symbol = %s")
INSTRUMENT_BY_ID = Select([Instrument], "{t0}", "WHERE {t0}.id = %s")
ORDERS_BY_IDS = Select([Order], "{t0}", "WHERE {t0}.id IN ({values})")
# Instruments read for orders, by symbol.
INSTRUMENTS_RECENT: Recent[str, Instrument] = Recent("EXCHANGE_REFERENCE_CACHE_SECONDS")
# The futures options are written on, by id, read for orders on the options: an option trades
# only while its future is not halted. Forgotten, as the instruments are, when this process
# saves an instrument (a halt or a resume); another process's within the setting's seconds.
UNDERLYINGS_RECENT: Recent[int, Instrument] = Recent("EXCHANGE_REFERENCE_CACHE_SECONDS")
# Futures' marks, by id, the anchors of their price limits (None kept too: no mark yet): a trade
# moves one, and reaches the limits of every process within the setting's seconds.
MARKS_RECENT: Recent[int, tuple[Decimal | None]] = Recent("EXCHANGE_REFERENCE_CACHE_SECONDS")


@dataclass(frozen=True)
class OrganizationFlags:
    """What the order path reads of an organization (``_organization_flags``)."""

    is_operator: bool
    position_limit_exempt: bool


# What the order path reads of an organization, by id, for its accounts' orders: whether it
# is the exchange operator (its kind does not change once created; sign-up never makes an
# operator) and whether staff exempted it from position limits. Forgotten when this process
# saves an organization (the admin); another process's change within the setting's seconds.
ORGANIZATIONS_RECENT: Recent[int, OrganizationFlags] = Recent("EXCHANGE_REFERENCE_CACHE_SECONDS")


@dataclass(frozen=True)
class OrderRequest:
    """What a client asked for; compared field by field when a client order id is repeated."""

    instrument: str
    side: str
    type: str
    quantity: int
    price: Decimal | None
    time_in_force: str
    post_only: bool
    self_trade_prevention: str
    expires_at: datetime | None

    def digest(self) -> str:
        """A fingerprint of what was asked, stored on the order: a retry with the same client
        order id is compared with the request, not with the order as later replaced."""
        price = format(self.price.normalize(), "f") if self.price is not None else ""
        expires_at = self.expires_at.isoformat() if self.expires_at is not None else ""
        fields = [
            self.instrument,
            self.side,
            self.type,
            str(self.quantity),
            price,
            self.time_in_force,
            str(self.post_only),
            self.self_trade_prevention,
            expires_at,
        ]
        return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        return {
            key: str(value) if value is not None else None for key, value in asdict(self).items()
        }


def _check_choice(
    value: str, choices: type[TextChoices], code: OrderRejectCode, field: str
) -> None:
    if value not in choices.values:
        raise OrderRejected(
            code, f"{value!r} is not one of {', '.join(choices.values)}.", field=field
        )


def _underlying_of(option: Instrument) -> Instrument | None:
    """The future ``option`` is written on, as this process read it at most
    ``EXCHANGE_REFERENCE_CACHE_SECONDS`` ago (the matcher checks its status again)."""
    underlying_id = option.underlying_id
    if underlying_id is None:
        return None

    def read() -> Instrument | None:
        found = INSTRUMENT_BY_ID.rows([underlying_id])
        return cast(Instrument, found[0][0]) if found else None

    return UNDERLYINGS_RECENT.get(underlying_id, read)


def _check_instrument_tradable(instrument: Instrument) -> None:
    """Refuses an order on an instrument that does not trade: halted, expired, past the close
    of its last trading day, or an option whose future is halted (its fair value and its
    exercise hang on a price in doubt). Only an option reads anything more: its future, kept
    for a few seconds (``_underlying_of``)."""
    if instrument.status == Instrument.Status.HALTED:
        raise OrderRejected(
            OrderRejectCode.INSTRUMENT_HALTED,
            f"Trading in {instrument.symbol} is halted.",
            field="instrument",
        )
    if instrument.status == Instrument.Status.EXPIRED:
        raise OrderRejected(
            OrderRejectCode.INSTRUMENT_EXPIRED,
            f"{instrument.symbol} no longer trades.",
            field="instrument",
        )
    ends_at = calendar.trading_ends_at(instrument.last_trading_day)
    if timezone.now() >= ends_at:
        raise OrderRejected(
            OrderRejectCode.INSTRUMENT_EXPIRED,
            f"{instrument.symbol} no longer trades: trading ended at the close of its last "
            f"trading day, {ends_at:%Y-%m-%d %H:%M} UTC.",
            field="instrument",
        )
    if instrument.kind == Instrument.Kind.OPTION:
        underlying = _underlying_of(instrument)
        if underlying is not None and underlying.status == Instrument.Status.HALTED:
            raise OrderRejected(
                OrderRejectCode.INSTRUMENT_HALTED,
                f"Trading in {instrument.symbol} is halted: its underlying future "
                f"{underlying.symbol} is halted. Orders are refused until it resumes.",
                field="instrument",
            )


def check_price(instrument: Instrument, price: Decimal, *, field: str = "price") -> None:
    """A limit price: positive, on the tick, inside the instrument's band."""
    ticks = price_to_ticks(price, instrument.tick_size, field=field)
    if ticks <= 0:
        raise OrderRejected(OrderRejectCode.INVALID_PRICE, "Price must be positive.", field=field)
    if price > instrument.price_max:
        raise OrderRejected(
            OrderRejectCode.PRICE_OUT_OF_BAND,
            f"Price {price} is above the band maximum of"
            f" {instrument.price_max.normalize():f} $/GPU-hr.",
            field=field,
        )


def price_limits(instrument: Instrument) -> tuple[Decimal, Decimal] | None:
    """The lowest sell and highest buy price a future accepts now: its mark (the newer of its
    latest settlement price and its last trade) less and plus ``EXCHANGE_PRICE_LIMIT`` of it,
    on the tick, inwards. None for an option or a resale listing, a future with no mark yet
    (nothing traded or settled: no anchor), or limits turned off (0)."""
    fraction = Decimal(settings.EXCHANGE_PRICE_LIMIT)
    if instrument.kind != Instrument.Kind.FUTURE or fraction <= 0:
        return None
    kept = MARKS_RECENT.get(instrument.pk, lambda: (marks_selector.mark_price(instrument),))
    mark = kept[0] if kept is not None else None
    if mark is None:
        return None
    tick = instrument.tick_size
    low = (mark * (1 - fraction) / tick).to_integral_value(ROUND_CEILING) * tick
    high = (mark * (1 + fraction) / tick).to_integral_value(ROUND_FLOOR) * tick
    return max(low, tick), high


def check_price_limit(
    instrument: Instrument, side: str, price: Decimal, *, field: str = "price"
) -> None:
    """A future's buy above its highest, or sell below its lowest, price limit
    (``price_limits``) is refused: an order keyed a digit off would otherwise sweep the book
    (a sell at 0.25 instead of 2.50 trades with every bid down to it). A buy below or a sell
    above the limits trades with nobody who did not ask for that price, and may rest."""
    limits = price_limits(instrument)
    if limits is None:
        return
    low, high = limits
    if side == Side.BUY and price > high:
        bound, word = high, "above"
    elif side == Side.SELL and price < low:
        bound, word = low, "below"
    else:
        return
    percent = (Decimal(settings.EXCHANGE_PRICE_LIMIT) * 100).normalize()
    raise OrderRejected(
        OrderRejectCode.PRICE_OUTSIDE_LIMIT,
        f"A {side} at {price.normalize():f} is {word} the price limit of "
        f"{bound.normalize():f} $/GPU-hr ({percent:f}% from the mark): the limits move with "
        "the mark, the newer of the latest settlement price and the last trade.",
        field=field,
    )


def check_quantity(
    instrument: Instrument, quantity: int, *, field: str = "quantity", zero_allowed: bool = False
) -> None:
    if (
        not isinstance(quantity, int)
        or isinstance(quantity, bool)
        or quantity < (0 if zero_allowed else 1)
    ):
        raise OrderRejected(
            OrderRejectCode.INVALID_QUANTITY,
            "Quantity must be a positive whole number of contracts.",
            field=field,
        )
    if quantity > instrument.quantity_max:
        raise OrderRejected(
            OrderRejectCode.QUANTITY_TOO_LARGE,
            f"Quantity {quantity} is above the maximum of {instrument.quantity_max} contracts.",
            field=field,
        )
    quantity_to_lots(quantity, instrument.lot_size, field=field)


def _organization_flags(account: Account) -> OrganizationFlags:
    """What the order path needs of the account's organization, as this process read it at
    most ``EXCHANGE_REFERENCE_CACHE_SECONDS`` ago: one query per organization that long."""
    organization_id = account.organization_id

    def read() -> OrganizationFlags | None:
        found = (
            Organization.objects.filter(pk=organization_id)
            .values_list("kind", "position_limit_exempt")
            .first()
        )
        if found is None:
            return None
        kind, exempt = found
        return OrganizationFlags(kind == Organization.Kind.EXCHANGE, exempt)

    flags = ORGANIZATIONS_RECENT.get(organization_id, read)
    assert flags is not None, f"account {account.pk} has no organization"
    return flags


def _is_operator(account: Account) -> bool:
    """Whether the account is the exchange operator's own (``Organization.Kind.EXCHANGE``)."""
    return _organization_flags(account).is_operator


def _future_of(instrument: Instrument) -> Instrument | None:
    """The future whose position limit orders on ``instrument`` count against: itself, or an
    option's future (kept per process, ``_underlying_of``); None for a resale listing."""
    if instrument.kind == Instrument.Kind.OPTION:
        return _underlying_of(instrument)
    return instrument if instrument.kind == Instrument.Kind.FUTURE else None


def position_limit(instrument: Instrument) -> int | None:
    """The position limit that orders on ``instrument`` count against, contracts, or None
    when none applies: a future's own ``position_limit``, else ``EXCHANGE_POSITION_LIMIT``
    (0 in either: no limit); an option's is its future's, the option counted with it; a
    resale listing has none (a block's GPUs are held, not bet on: ``check_block_held``).
    Reads nothing but an option's future, kept per process."""
    future = _future_of(instrument)
    if future is None:
        return None
    own = future.position_limit
    limit = own if own is not None else settings.EXCHANGE_POSITION_LIMIT
    return int(limit) if limit else None


def exposure_side(instrument: Instrument, side: str) -> str:
    """The side of its future's exposure an order on ``instrument`` adds to (``Side.BUY``:
    long): a buy of the future or of a call, or a sell of a put, is long; the others short."""
    if instrument.option_type == Instrument.OptionType.PUT:
        return Side.SELL if side == Side.BUY else Side.BUY
    return side


def _limit_standing(
    account: Account,
    instrument: Instrument,
    side: str,
    replacing: Order | None,
    *,
    lock: bool = False,
) -> tuple[int, Instrument, str, positions_selector.Exposure, int] | None:
    """The limit an order on ``instrument`` of ``side`` counts against, its future, the side
    of the exposure it adds to, the organization's exposure and its net toward that side; None
    when no limit applies (none set, or the organization is exempt: nothing read).

    ``lock``: read under the organization's row lock, taken first (in the transaction that
    writes the order or the replace), so that its orders on any of its accounts count one
    after another: read without it, two orders accepted at once each counted without the
    other and together could pass the limit. ``NO KEY UPDATE``: it waits for no other
    transaction's foreign key to the organization."""
    limit = position_limit(instrument)
    if limit is None or _organization_flags(account).position_limit_exempt:
        return None
    future = _future_of(instrument)
    assert future is not None  # It has a limit.
    if lock:
        list(
            Organization.objects.select_for_update(no_key=True)
            .filter(pk=account.organization_id)
            .values_list("pk", flat=True)
        )
    long_or_short = exposure_side(instrument, side)
    exposure = positions_selector.organization_exposure(
        organization_id=account.organization_id,
        future_id=future.pk,
        side=long_or_short,
        excluding_order_id=replacing.pk if replacing is not None else None,
    )
    toward = exposure.net if long_or_short == Side.BUY else -exposure.net
    return limit, future, long_or_short, exposure, toward


def position_limit_room(account: Account, instrument: Instrument, side: str) -> int | None:
    """How many contracts an order of ``side`` on ``instrument`` may have and pass
    ``check_position_limit`` now: the limit less the organization's worst case without it
    (at least 0); None when no limit applies."""
    standing = _limit_standing(account, instrument, side, None)
    if standing is None:
        return None
    limit, _, _, exposure, toward = standing
    return max(limit - toward - exposure.resting, 0)


def check_position_limit(
    account: Account,
    instrument: Instrument,
    side: str,
    quantity: int,
    *,
    replacing: Order | None = None,
    lock: bool = False,
) -> None:
    """Refuse (``RISK_POSITION_LIMIT``) an order that could take ``account``'s organization,
    all its accounts together, beyond the position limit of the future it trades
    (``position_limit``), in the worst case: its net exposure to the future and its options
    (``exposure_side``), plus its live orders on the order's side of it, plus ``quantity``.
    An order that, with the organization's other orders on its side, only reduces its
    exposure is never refused (its worst case is at most flat), even above the limit.

    ``replacing``: the order a replace gives ``quantity`` as its new open quantity, left out
    of the live ones. An organization staff exempted, or an instrument with no limit, reads
    nothing; otherwise one statement (``positions.organization_exposure``), after the
    organization's row lock with ``lock`` (acceptance and replaces: ``_limit_standing``)."""
    standing = _limit_standing(account, instrument, side, replacing, lock=lock)
    if standing is None:
        return
    limit, future, long_or_short, exposure, toward = standing
    worst = toward + exposure.resting + quantity
    if worst <= limit:
        return
    word = "long" if long_or_short == Side.BUY else "short"
    others = "other " if replacing is not None else ""
    raise OrderRejected(
        OrderRejectCode.POSITION_LIMIT,
        f"The organization could be {worst} contracts {word} in {future.symbol} with its "
        f"options, above its position limit of {limit} (net {exposure.net:+d}, "
        f"{exposure.resting} in its {others}live orders on this side, {quantity} in this one). "
        "Reducing orders are accepted; staff may grant an exemption.",
        field="quantity",
    )


def _validate(
    account: Account, instrument: Instrument, request: OrderRequest, client_order_id: str | None
) -> None:
    if account.status != Account.Status.ACTIVE:
        raise OrderRejected(
            OrderRejectCode.ACCOUNT_INACTIVE,
            f"Account {account} is {account.status}.",
            field="account",
        )
    if _is_operator(account):
        raise OrderRejected(
            OrderRejectCode.ACCOUNT_IS_OPERATOR,
            f"Account {account} is the exchange operator's: the operator runs the market and "
            "trades in none of it (as it holds no GPU-hours).",
            field="account",
        )
    if client_order_id is not None and not 1 <= len(client_order_id) <= CLIENT_ORDER_ID_LENGTH_MAX:
        raise OrderRejected(
            OrderRejectCode.CLIENT_ORDER_ID_INVALID,
            f"A client order id has 1 to {CLIENT_ORDER_ID_LENGTH_MAX} characters.",
            field="client_order_id",
        )
    _check_choice(request.side, Side, OrderRejectCode.INVALID_SIDE, "side")
    _check_choice(request.type, Order.Type, OrderRejectCode.INVALID_TYPE, "type")
    _check_choice(
        request.time_in_force,
        Order.TimeInForce,
        OrderRejectCode.INVALID_TIME_IN_FORCE,
        "time_in_force",
    )
    _check_choice(
        request.self_trade_prevention,
        Order.SelfTradePrevention,
        OrderRejectCode.INVALID_SELF_TRADE_PREVENTION,
        "self_trade_prevention",
    )
    _check_instrument_tradable(instrument)
    check_quantity(instrument, request.quantity)
    if request.type == Order.Type.LIMIT:
        if request.price is None:
            raise OrderRejected(
                OrderRejectCode.PRICE_REQUIRED, "A limit order needs a price.", field="price"
            )
        check_price(instrument, request.price)
        check_price_limit(instrument, request.side, request.price)
    else:
        if request.price is not None:
            raise OrderRejected(
                OrderRejectCode.PRICE_NOT_ALLOWED, "A market order has no price.", field="price"
            )
        if request.post_only:
            raise OrderRejected(
                OrderRejectCode.POST_ONLY_MARKET,
                "A market order cannot be post-only.",
                field="post_only",
            )
        if request.time_in_force not in (Order.TimeInForce.IOC, Order.TimeInForce.FOK):
            raise OrderRejected(
                OrderRejectCode.INVALID_TIME_IN_FORCE,
                "A market order is IOC or FOK.",
                field="time_in_force",
            )
    if request.post_only and request.time_in_force in (
        Order.TimeInForce.IOC,
        Order.TimeInForce.FOK,
    ):
        raise OrderRejected(
            OrderRejectCode.POST_ONLY_TIME_IN_FORCE,
            "A post-only order rests in the book: it cannot be IOC or FOK, which never rest.",
            field="time_in_force",
        )
    if request.expires_at is not None and (
        not isinstance(request.expires_at, datetime) or request.expires_at.tzinfo is None
    ):
        raise OrderRejected(
            OrderRejectCode.EXPIRY_INVALID,
            "The expiry must be a date and time with a time zone.",
            field="expires_at",
        )
    if request.time_in_force == Order.TimeInForce.GTD:
        if request.expires_at is None:
            raise OrderRejected(
                OrderRejectCode.EXPIRY_REQUIRED,
                "A GTD order needs an expiry time.",
                field="expires_at",
            )
        if request.expires_at <= timezone.now():
            raise OrderRejected(
                OrderRejectCode.EXPIRY_IN_PAST, "The expiry time has passed.", field="expires_at"
            )
    elif request.expires_at is not None:
        raise OrderRejected(
            OrderRejectCode.EXPIRY_NOT_ALLOWED,
            "Only GTD orders take an expiry time.",
            field="expires_at",
        )


def _record_rejection(
    *,
    account: Account,
    instrument: Instrument | None,
    request: OrderRequest,
    client_order_id: str | None,
    error: OrderRejected,
    placed_by: User | None,
) -> None:
    with transaction.atomic():
        OrderRejection.objects.create(
            account=account,
            instrument=instrument,
            instrument_symbol=request.instrument[:64],
            client_order_id=(client_order_id or None) and client_order_id[:64],
            code=error.code,
            field=error.field,
            message=error.message[:300],
            request=request.as_json(),
            placed_by=placed_by if placed_by is not None and placed_by.is_authenticated else None,
        )


def _existing_for_client_order_id(
    account: Account, client_order_id: str, request: OrderRequest
) -> Order | None:
    existing = (
        Order.objects.select_related("instrument")
        .filter(account=account, client_order_id=client_order_id)
        .first()
    )
    if existing is None:
        return None
    if existing.request_digest != request.digest():
        raise OrderRejected(
            OrderRejectCode.CLIENT_ORDER_ID_CONFLICT,
            f"Client order id {client_order_id!r} was used for a different order (#{existing.pk}).",
            field="client_order_id",
        )
    return existing


@dataclass(frozen=True)
class Placement:
    """What ``order_submit`` did: ``created`` is False when a repeated client order id returned
    the order placed before."""

    order: Order
    created: bool


def order_place(
    *,
    account: Account,
    instrument: str | Instrument,
    side: str,
    quantity: int,
    price: Decimal | None = None,
    type: str = Order.Type.LIMIT,
    time_in_force: str = Order.TimeInForce.GTC,
    post_only: bool = False,
    self_trade_prevention: str = Order.SelfTradePrevention.CANCEL_NEWEST,
    expires_at: datetime | None = None,
    client_order_id: str | None = None,
    placed_by: User | None = None,
    liquidation: bool = False,
    account_check: Callable[[], None] | None = None,
) -> Order:
    """Accept an order and hand it to the matcher; return it as the matcher left it.

    ``liquidation`` is for ``risk_cycle.account_liquidate`` only: a staff order closing a
    position, without margin or fees.

    ``account_check``: a further check of the caller's, run in the acceptance transaction
    under the account's row lock, before the order's row is written; it refuses the order by
    raising (nothing is written, and no rejection recorded). ``pools.pool_offer`` counts what
    the pool holds free there, so that two actions on its contracts count one after the other.

    An order refused at the door raises ``OrderRejected`` (a named code and field) after
    recording the rejection; nothing else is written. A repeated ``client_order_id`` with the
    same content returns the original order; with different content it is refused.
    """
    return order_submit(
        account=account,
        instrument=instrument,
        side=side,
        quantity=quantity,
        price=price,
        type=type,
        time_in_force=time_in_force,
        post_only=post_only,
        self_trade_prevention=self_trade_prevention,
        expires_at=expires_at,
        client_order_id=client_order_id,
        placed_by=placed_by,
        liquidation=liquidation,
        account_check=account_check,
    ).order


def order_submit(
    *,
    account: Account,
    instrument: str | Instrument,
    side: str,
    quantity: int,
    price: Decimal | None = None,
    type: str = Order.Type.LIMIT,
    time_in_force: str = Order.TimeInForce.GTC,
    post_only: bool = False,
    self_trade_prevention: str = Order.SelfTradePrevention.CANCEL_NEWEST,
    expires_at: datetime | None = None,
    client_order_id: str | None = None,
    placed_by: User | None = None,
    liquidation: bool = False,
    wait_seconds: float = 0.0,
    account_check: Callable[[], None] | None = None,
) -> Placement:
    """``order_place``, also saying whether this call created the order: the API answers a
    repeated client order id (a retry) differently from a new order. Decided here rather than
    by looking for the client order id before the call, which two concurrent retries would
    both find missing.

    ``wait_seconds``: with external matchers, wait up to this long for the matcher to process
    the order, so the answer says what happened to it (fills, resting, rejected); an order
    still ``new`` after that is accepted and will be matched.

    ``account_check``: as ``order_place``'s.
    """
    symbol = instrument.symbol if isinstance(instrument, Instrument) else str(instrument)
    request = OrderRequest(
        symbol,
        side,
        type,
        quantity,
        price,
        time_in_force,
        post_only,
        self_trade_prevention,
        expires_at,
    )
    resolved = _instrument_by_symbol(symbol)
    try:
        if client_order_id is not None:
            existing = _existing_for_client_order_id(account, client_order_id, request)
            if existing is not None:
                return Placement(existing, created=False)
        _validate_known(account, resolved, request, client_order_id)
        assert resolved is not None
        try:
            order = _order_accept(
                account,
                resolved,
                request,
                client_order_id,
                placed_by,
                liquidation=liquidation,
                account_check=account_check,
            )
        except IntegrityError:
            # Another request with this client order id committed first: answer as a repeat
            # would, or refuse (and record) a conflict as the check above would have.
            existing = (
                _existing_for_client_order_id(account, client_order_id, request)
                if client_order_id
                else None
            )
            if existing is None:
                raise
            return Placement(existing, created=False)
    except OrderRejected as error:  # Input or risk: nothing of the order was written.
        _record_rejection(
            account=account,
            instrument=resolved,
            request=request,
            client_order_id=client_order_id,
            error=error,
            placed_by=placed_by,
        )
        raise
    matched = wake.after_commit(resolved.pk, order.pk)
    if matched is not None:
        return Placement(matched, created=True)
    if settings.EXCHANGE_MATCHER_MODE == "inline":
        order = _reread(order)  # Another process matched it: read what it wrote.
    elif wait_seconds > 0:
        order = _await_matched(order, wait_seconds)
    return Placement(order, created=True)


def _await_matched(order: Order, wait_seconds: float) -> Order:
    """The order once an external matcher has processed it (or as it is after the wait).

    The matcher's batch notifies the ids it wrote at commit (``exchange.matcher.outcomes``);
    the order is then read once.
    """
    _await(order, min(wait_seconds, ORDER_WAIT_SECONDS_MAX))
    return _reread(order)


def _await(awaited: Order | OrderCommand, wait_seconds: float) -> None:
    """Return once an external matcher has processed ``awaited`` (a new order, or a command
    such as a replace) or ``wait_seconds`` have passed.

    Either way the matcher's batch notifies the order's id at commit; ``awaited``'s own row is
    read where the notification cannot tell (``outcomes.await_processed``): an order is
    unprocessed while ``new``, a command while ``pending``. A command's order was heard of
    before (its placement, its fills), so its id heard says nothing of the command: the
    command's row is read at the start and after each notification of the order.
    """
    rows: QuerySet[Any]
    unprocessed: str
    if isinstance(awaited, Order):
        rows = Order.objects.filter(pk=awaited.pk)
        unprocessed, order_id = Order.Status.NEW, awaited.pk
    else:
        rows = OrderCommand.objects.filter(pk=awaited.pk)
        unprocessed, order_id = OrderCommand.Status.PENDING, awaited.order_id

    def is_unprocessed() -> bool:
        return rows.values_list("status", flat=True).first() == unprocessed

    outcomes.await_processed(
        order_id, wait_seconds, is_unprocessed, command=not isinstance(awaited, Order)
    )


def orders_submit(
    *,
    account: Account,
    orders: Sequence[Mapping[str, Any]],
    placed_by: User | None = None,
    wait_seconds: float = 0.0,
) -> list[Placement | OrderRejected]:
    """Place several orders, each as ``order_submit`` places one, in the given order.

    Each order is accepted or refused on its own, in its own transaction: one refused (its
    ``OrderRejected`` takes its place in the result) does not stop those after it, and an
    order placed stays placed whatever happens to the next. So the orders of a batch are
    matched in the order given, each against the book as the ones before left it. A repeated
    client order id is a repeat here as in ``order_submit``, also within the batch.

    ``wait_seconds``: with external matchers, the wait for the matcher's outcome is shared by
    the whole batch (``orders``' keys are ``order_submit``'s order fields).
    """
    if len(orders) > BATCH_ORDERS_MAX:
        raise OrderRejected(
            OrderRejectCode.BATCH_TOO_LARGE,
            f"At most {BATCH_ORDERS_MAX} orders per batch; {len(orders)} given.",
            field="orders",
        )
    waits = settings.EXCHANGE_MATCHER_MODE != "inline" and wait_seconds > 0
    if waits:
        outcomes.listen()  # Before the first commit: no outcome can come before it listens.
    results: list[Placement | OrderRejected] = []
    for fields in orders:
        try:
            results.append(order_submit(account=account, placed_by=placed_by, **fields))
        except OrderRejected as error:
            results.append(error)
    placed = [result.order for result in results if isinstance(result, Placement)]
    if not placed or not waits:
        return results
    _await_all([order for order in placed if order.status == Order.Status.NEW], wait_seconds)
    fresh = _reread_many(placed)
    return [
        Placement(fresh[result.order.pk], result.created)
        if isinstance(result, Placement)
        else result
        for result in results
    ]


def _reread(order: Order) -> Order:
    """The order's row as it is now, keeping the instrument already read (which the matcher
    does not change): one query where ``refresh_from_db`` and the answer would take two."""
    return _reread_many([order])[order.pk]


def _reread_many(orders: Sequence[Order]) -> dict[int, Order]:
    """``_reread`` for several orders, in one query: each order's row by its id."""
    fresh = {
        cast(Order, row).pk: cast(Order, row)
        for (row,) in ORDERS_BY_IDS.rows_in(sorted({order.pk for order in orders}))
    }
    for order in orders:
        if Order.instrument.field.is_cached(order):
            fresh[order.pk].instrument = order.instrument
    return fresh


def _instrument_by_symbol(symbol: str) -> Instrument | None:
    """The instrument as this process read it at most ``EXCHANGE_REFERENCE_CACHE_SECONDS``
    ago (``exchange.recent``): the matcher checks its status again under the row's lock."""

    def read() -> Instrument | None:
        found = INSTRUMENT_BY_SYMBOL.rows([symbol])
        return cast(Instrument, found[0][0]) if found else None

    return INSTRUMENTS_RECENT.get(symbol, read)


def _validate_known(
    account: Account,
    instrument: Instrument | None,
    request: OrderRequest,
    client_order_id: str | None,
) -> None:
    """``_validate``, after refusing an instrument that does not exist."""
    if instrument is None:
        raise OrderRejected(
            OrderRejectCode.UNKNOWN_INSTRUMENT,
            f"No instrument {request.instrument!r}.",
            field="instrument",
        )
    _validate(account, instrument, request, client_order_id)


def order_dry_run(
    *,
    account: Account,
    instrument: str,
    side: str,
    quantity: int,
    price: Decimal | None = None,
    type: str = Order.Type.LIMIT,
    time_in_force: str = Order.TimeInForce.GTC,
    post_only: bool = False,
    self_trade_prevention: str = Order.SelfTradePrevention.CANCEL_NEWEST,
    expires_at: datetime | None = None,
    client_order_id: str | None = None,
) -> collateral.Preview:
    """What ``order_place`` would hold for this order, writing nothing (not even a rejection).

    Runs the checks of ``order_place`` in its order: a client order id used for a different
    order, the instrument, the request's rules, the market order's reference price, the margin
    call's reduce-only rule, the position limit (``check_position_limit``), what a resale
    sell's organization holds of the block (``check_block_held``, without its lock), then the
    collateral against what the account has
    available. Each
    refusal raises the ``OrderRejected`` that placing the order would raise. The collateral may
    differ from a placement's a moment later: the book, settlement prices and balances move.
    """
    request = OrderRequest(
        instrument,
        side,
        type,
        quantity,
        price,
        time_in_force,
        post_only,
        self_trade_prevention,
        expires_at,
    )
    resolved = _instrument_by_symbol(instrument)
    if client_order_id is not None:
        # A repeat of the same request would return the original order; either way the
        # preview describes the request as given.
        _existing_for_client_order_id(account, client_order_id, request)
    _validate_known(account, resolved, request, client_order_id)
    assert resolved is not None
    limit = request.price
    protection = None
    if limit is None:
        protection = limit = collateral.protection_price(resolved, side)
    reducing = _check_reduce_only(account, resolved, request)
    if not reducing:
        check_position_limit(account, resolved, side, quantity)
    check_block_held(account, resolved, side, quantity, lock=False)
    terms = collateral.terms_for(resolved, side, limit, reducing=reducing)
    return collateral.collateral_preview(
        account, resolved, side, limit, quantity, terms, protection_price=protection
    )


def _order_accept(
    account: Account,
    instrument: Instrument,
    request: OrderRequest,
    client_order_id: str | None,
    placed_by: User | None,
    *,
    liquidation: bool = False,
    account_check: Callable[[], None] | None = None,
) -> Order:
    """Commit the order with its collateral holds, or raise the risk rejection.

    The order's INSERT also queues its NEW command (the trigger of migration 0003); the holds
    follow in the same transaction, so the matcher never sees an order without collateral.
    """
    user = placed_by if placed_by is not None and placed_by.is_authenticated else None
    require_own_transaction()
    price = request.price
    protection = None
    if price is None:
        protection = price = collateral.protection_price(instrument, request.side)
    reducing = liquidation or _check_reduce_only(account, instrument, request)
    terms = collateral.terms_for(
        instrument,
        request.side,
        price,
        reducing=reducing,
        liquidation=liquidation,
    )
    needs: list[collateral.Need] = []
    try:
        order = _order_insert_collateralized(
            account,
            instrument,
            request,
            client_order_id,
            user,
            price,
            protection,
            terms,
            needs,
            reducing=reducing,
            liquidation=liquidation,
            account_check=account_check,
        )
    except LedgerError as error:  # Rolled back: the order and its holds are gone.
        raise collateral.shortfall(needs, error) from error
    return order


def _order_insert_collateralized(
    account: Account,
    instrument: Instrument,
    request: OrderRequest,
    client_order_id: str | None,
    user: User | None,
    price: Decimal,
    protection: Decimal | None,
    terms: collateral.Terms,
    needs: list[collateral.Need],
    *,
    reducing: bool,
    liquidation: bool,
    account_check: Callable[[], None] | None,
) -> Order:
    with transaction.atomic(durable=True):
        if reducing or account_check is not None:
            # Counted again under the account's row lock: two reducing orders (a customer's
            # under a call, or two staff liquidations at once) accepted together would each
            # count without the other and together close more than the position, opening one
            # on the other side with no margin held for it. Likewise the caller's own count.
            # NO KEY UPDATE: it waits for no other transaction's foreign key to the account
            # (another order's, checked at its commit, after it has locked the ledger).
            Account.objects.select_for_update(no_key=True).filter(pk=account.pk).first()
        if reducing and not liquidation:
            _check_margin_call_open(account)
        if reducing:
            _check_reduces(account, instrument, request, liquidation=liquidation)
        if account_check is not None:
            account_check()
        if not reducing:
            # A reducing order (under a margin call, or a liquidation) only closes a position.
            check_position_limit(account, instrument, request.side, request.quantity, lock=True)
        check_block_held(account, instrument, request.side, request.quantity)
        order = _order_row_insert(
            account,
            instrument,
            request,
            client_order_id,
            user,
            protection,
            terms,
            reduce_only=reducing,
        )
        needs += collateral.needs_of_order(
            order, instrument, request.quantity, price, terms.margin_per_contract
        )
        collateral.holds_place(order, needs, f"order:{order.pk}")
    return order


def _order_row_insert(
    account: Account,
    instrument: Instrument,
    request: OrderRequest,
    client_order_id: str | None,
    user: User | None,
    protection: Decimal | None,
    terms: collateral.Terms,
    *,
    reduce_only: bool,
) -> Order:
    return cast(
        Order,
        insert_row(
            Order(
                account=account,
                instrument=instrument,
                client_order_id=client_order_id,
                side=request.side,
                type=request.type,
                time_in_force=request.time_in_force,
                post_only=request.post_only,
                self_trade_prevention=request.self_trade_prevention,
                price=request.price,
                quantity=request.quantity,
                expires_at=request.expires_at,
                protection_price=protection,
                margin_per_contract=terms.margin_per_contract,
                maker_fee_rate=terms.maker_fee_rate,
                taker_fee_rate=terms.taker_fee_rate,
                reduce_only=reduce_only,
                status=Order.Status.NEW,
                placed_by=user,
                request_digest=request.digest(),
            )
        ),
    )


def check_block_held(
    account: Account,
    instrument: Instrument,
    side: str,
    quantity: int,
    *,
    replacing: Order | None = None,
    lock: bool = True,
) -> None:
    """A resale sell offers GPUs of one reserved block: refuse it (``RISK_BLOCK_NOT_HELD``)
    beyond what ``account``'s organization holds of that block and does not offer already
    (``capacity.block_holdings``). ``replacing``: the sell order a replace gives ``quantity``
    as its new open quantity, left out of what is offered already. Anything else passes.

    The ledger hold of the order's GPU-hours does not do this: entitlements are generic per
    SKU x region x month, so GPU-hours of any block (or bought on any listing) would cover a
    sell on any block's listing of the same months, offering GPUs the block does not have.

    ``lock``: take the block's reservation row lock first (``resale_list`` takes it too), in
    the caller's transaction. Two sells of one organization accepted at once would otherwise
    each count without the other and together offer more than it holds. With the lock every
    acceptance or replace of a sell on the block waits for the one before to commit; the count
    is then a statement after the lock, which on PostgreSQL (read committed) sees what that one
    committed. (On SQLite, IMMEDIATE transactions already put writers one after another.) The
    lock is taken before the order's ledger holds, whose account locks come after it everywhere.
    Fills need not take it: a fill moves contracts from offered to sold, and cancels only free
    some. A dry run (``lock=False``) only reads.
    """
    if instrument.kind != Instrument.Kind.RESALE or side != Side.SELL:
        return
    assert instrument.reservation_id is not None  # A resale instrument lists one block.
    reservations = ReservedCapacity.objects.filter(pk=instrument.reservation_id)
    if lock:
        reservations = reservations.select_for_update()
    reservation = reservations.get()
    organization_id = account.organization_id
    holding = block_holdings(
        reservation, organization_id=organization_id, excluding_order=replacing
    )[organization_id]
    if quantity <= holding.free:
        return
    others = "other " if replacing is not None else ""
    sells = Order.objects.filter(
        instrument=instrument, side=Side.SELL, account__organization_id=organization_id
    )
    if replacing is not None:
        sells = sells.exclude(pk=replacing.pk)
    expired = orders_selector.past_expiry_note(
        orders_selector.past_expiry_quantity(sells, timezone.now())
    )
    raise OrderRejected(
        OrderRejectCode.BLOCK_NOT_HELD,
        f"The account's organization holds {holding.held} contracts (GPUs) of block "
        f"#{reservation.pk} ({reservation.cluster}) and offers {holding.offered} in its "
        f"{others}live sell orders of {instrument.symbol}{expired}: it may offer "
        f"{max(holding.free, 0)} more, not {quantity}.",
        field="quantity",
    )


def _check_reduce_only(account: Account, instrument: Instrument, request: OrderRequest) -> bool:
    """An account under a margin call may only reduce its positions: True when it is under
    one and the order does (it then takes no margin and pays no fee); ``RISK_REDUCE_ONLY`` when
    it does not. A sell of resale capacity stays open to it, with its fee (False).

    An order reduces when it is on the side opposite the position and, with the account's
    other resting orders on that side, closes no more than the position.
    """
    if not _has_open_margin_call(account):
        return False
    if instrument.kind == Instrument.Kind.RESALE:
        if request.side == Side.SELL:
            # Selling capacity raises cash. It closes no position, takes no margin and pays its
            # fee out of the proceeds: accepted, with its fee, as without a call.
            return False
        raise OrderRejected(
            OrderRejectCode.REDUCE_ONLY,
            f"Account {account} has an open margin call: it may only reduce its positions.",
            field="side",
        )
    _check_reduces(account, instrument, request)
    return True


def _check_reduces(
    account: Account, instrument: Instrument, request: OrderRequest, *, liquidation: bool = False
) -> None:
    """``RISK_REDUCE_ONLY`` unless the order reduces the account's position (see
    ``_check_reduce_only``); liquidation orders are held to it too."""
    position = positions_selector.contracts_in(account, instrument)
    closing_side = Side.SELL if position > 0 else Side.BUY
    # Orders whose cancel is queued do not count: the liquidation's own, queued just before
    # its closing orders, left every one of them refused with matchers of their own until
    # 2026-12-07; a customer's cancel then a new offer, the same.
    resting = orders_selector.live_quantity(
        account.pk, instrument.pk, closing_side, cancelling_excluded=True
    )
    if position == 0 or request.side != closing_side or request.quantity + resting > abs(position):
        why = "is being liquidated" if liquidation else "has an open margin call"
        closing = Order.objects.filter(account=account, instrument=instrument, side=closing_side)
        expired = orders_selector.past_expiry_note(
            orders_selector.past_expiry_quantity(closing, timezone.now()) if resting else 0
        )
        raise OrderRejected(
            OrderRejectCode.REDUCE_ONLY,
            f"Account {account} {why}: it may only reduce its positions "
            f"({position} contracts of {instrument.symbol}, {resting} already being "
            f"closed{expired}).",
            field="quantity",
        )


def _check_margin_call_open(account: Account) -> None:
    """``RISK_MARGIN_CALL_ENDED`` unless the account is still under the margin call that makes
    the order reducing (no margin, no fee), read in the acceptance's transaction and locked to
    its commit. A cure takes the call's row lock, so it waits for this order to commit, and its
    cancel of the reducing orders (after it commits) finds this one; read before the
    transaction, a cure that committed in between, its cancel run, left the order working on
    those terms with no call (until 2026-12-07)."""
    calls = MarginCall.objects.select_for_update(no_key=True).filter(
        account=account, status=MarginCall.Status.OPEN
    )
    if calls.first() is None:
        raise OrderRejected(
            OrderRejectCode.MARGIN_CALL_ENDED,
            f"Account {account}'s margin call ended while the order was accepted as reducing "
            "its positions (without margin or fee): place it again, as an ordinary order.",
            field="account",
        )


def _has_open_margin_call(account: Account) -> bool:
    """Read, unless the account was read with it (``participants.account_main``)."""
    known = getattr(account, "has_open_margin_call", None)
    if known is not None:
        return bool(known)
    return MarginCall.objects.filter(account=account, status=MarginCall.Status.OPEN).exists()


def require_own_transaction() -> None:
    """The rule of ``atomic(durable=True)`` for a service that commits with one statement.

    An order or command counts as accepted only once committed, so these services must not run
    inside a caller's transaction (Django's test-case transactions excepted, as for durable).
    """
    blocks = connection.atomic_blocks
    if blocks and not getattr(blocks[-1], "_from_testcase", False):
        raise RuntimeError("order services commit on their own; call them outside transactions")


def _check_live(order: Order) -> None:
    if order.status not in LIVE_STATUSES:
        raise OrderRejected(
            OrderRejectCode.NOT_LIVE, f"Order #{order.pk} is {order.status}.", field="order"
        )


def order_cancel(
    *,
    order: Order,
    requested_by: User | None = None,
    reason: str = CancelReason.USER,
    wait_seconds: float = 0.0,
) -> Order:
    """Ask the matcher to cancel what is left of ``order``; return it as the matcher left it.
    ``reason`` (a ``CancelReason``) becomes the order's ``done_reason`` if the cancel ends it.

    A cancel the matcher refuses (the order ended meanwhile, filled say) raises
    ``OrderRejected`` (``ORDER_NOT_LIVE``). The inline matcher decides at once; with external
    matchers, ``wait_seconds`` is how long to wait for its decision: a cancel still unprocessed
    after that is returned with the order as it is and ``command_pending`` set."""
    _check_live(order)
    command = _command_submit(order, OrderCommand.Kind.CANCEL, requested_by, cancel_reason=reason)
    _await_all([command], wait_seconds)
    fresh, refused = _command_outcome(order, command)
    if refused is not None:
        raise _command_refused(fresh, refused)
    return fresh


def _command_outcome(order: Order, command: OrderCommand) -> tuple[Order, str | None]:
    """``order`` as it is now, with ``command_pending`` set if ``command`` still waits for a
    matcher, and the code the matcher refused ``command`` with (None if it did not).

    One statement reads both, so they agree even while an external matcher commits: read one
    after the other, a command seen unprocessed could then be refused, and its order read as if
    the command had been accepted."""
    commands = OrderCommand.objects.filter(pk=command.pk)
    fresh = cast(
        Any,
        Order.objects.select_related("instrument")
        .annotate(
            command_status=Subquery(commands.values("status")[:1]),
            command_reject_code=Subquery(commands.values("reject_code")[:1]),
        )
        .get(pk=order.pk),
    )
    fresh.command_pending = fresh.command_status == OrderCommand.Status.PENDING
    refused = fresh.command_status == OrderCommand.Status.REJECTED
    return cast(Order, fresh), fresh.command_reject_code if refused else None


def orders_cancel(
    *,
    orders: Iterable[Order],
    reason: str,
    requested_by: User | None = None,
    wait_seconds: float = 0.0,
) -> int:
    """Ask the matcher to cancel every live order of ``orders`` (cancel-all, the cycle's
    expiries, liquidation): one transaction for all the commands, then one matcher run per
    instrument. ``reason`` (a ``CancelReason``) says who or what asked, for the orders'
    ``done_reason``. Returns how many cancels were asked for; the matcher refuses those whose
    order finished meanwhile (``ORDER_NOT_LIVE`` on the command). ``wait_seconds``: with
    external matchers, how long to wait for them to process the cancels (one wait for all)."""
    _check_cancel_reason(reason)
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    require_own_transaction()
    live = [order for order in orders if order.status in LIVE_STATUSES]
    _await_all(_cancel_commands_submit(live, reason, user), wait_seconds)
    return len(live)


def _await_all(awaited: Sequence[Order | OrderCommand], wait_seconds: float) -> None:
    """With external matchers, wait until each of ``awaited`` (new orders, or commands) is
    processed, or ``wait_seconds`` (at most ``ORDER_WAIT_SECONDS_MAX``) have passed for them
    all. The inline matcher has processed them already."""
    if not awaited or settings.EXCHANGE_MATCHER_MODE == "inline" or wait_seconds <= 0:
        return
    deadline = time.monotonic() + min(wait_seconds, ORDER_WAIT_SECONDS_MAX)
    for one in awaited:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        _await(one, left)


def _cancel_commands_submit(
    live: Sequence[Order], reason: str, user: User | None
) -> list[OrderCommand]:
    """One cancel command per order of ``live``, in one transaction, then one inline matcher
    run per instrument; the commands, in ``live``'s order."""
    if not live:
        return []
    with transaction.atomic(durable=True):
        commands = cancel_commands_insert(orders=live, reason=reason, requested_by=user)
    cancel_commands_match(commands)
    return commands


def cancel_commands_insert(
    *, orders: Iterable[Order], reason: str, requested_by: User | None
) -> list[OrderCommand]:
    """One cancel command per live order of ``orders``, in the caller's transaction, which must
    be open: for a service whose cancels must commit with its other writes or not at all
    (``risk_cycle.account_liquidate``). The caller passes them to ``cancel_commands_match`` once
    that transaction has committed (external matchers are woken by the commit itself)."""
    _check_cancel_reason(reason)
    assert connection.in_atomic_block, "the caller's transaction holds the commands"
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    return OrderCommand.objects.bulk_create(
        OrderCommand(
            kind=OrderCommand.Kind.CANCEL,
            order=order,
            instrument_id=order.instrument_id,
            cancel_reason=reason,
            requested_by=user,
        )
        for order in orders
        if order.status in LIVE_STATUSES
    )


def cancel_commands_match(commands: Sequence[OrderCommand]) -> None:
    """After the commit of ``commands``: the inline matcher runs each of their instruments once
    (external matchers were woken by the commit)."""
    require_own_transaction()
    if settings.EXCHANGE_MATCHER_MODE != "inline":
        return
    from exchange.matcher import inline

    for instrument_id in sorted({command.instrument_id for command in commands}):
        inline.process_instrument(instrument_id)


def orders_cancel_each(
    *,
    account: Account,
    order_ids: Sequence[int] | None = None,
    client_order_ids: Sequence[str] | None = None,
    requested_by: User | None = None,
    wait_seconds: float = 0.0,
) -> list[tuple[int | None, Order | OrderRejected | None]]:
    """Cancel each of the account's orders named in ``order_ids``, or placed with
    ``client_order_ids`` (one of the two; a batch, each once), as ``order_cancel`` would one by
    one, with one transaction for all the commands (``orders_cancel``).

    Per name, in order, the order's id (None when none of the account's orders has it) with:
    the order as the matcher left it; the ``ORDER_NOT_LIVE`` refusal of one no longer live,
    seen ended or ended before the matcher reached its cancel; or None for a name that is none
    of the account's orders. ``wait_seconds``: with external matchers, one wait shared by the
    batch's cancels, as ``order_cancel``'s for one; an order whose cancel is still unprocessed
    after it is answered as it is, with ``command_pending`` set.
    """
    if (order_ids is None) == (client_order_ids is None):
        raise ValueError("Name the orders by order_ids or by client_order_ids, one of them.")
    orders: list[Order | None]
    if order_ids is not None:
        by_id = orders_selector.orders_by_ids(account, order_ids)
        orders = [by_id.get(order_id) for order_id in order_ids]
    else:
        assert client_order_ids is not None
        by_client_id = orders_selector.orders_by_client_order_ids(account, client_order_ids)
        orders = [by_client_id.get(client_id) for client_id in client_order_ids]
    results: list[Order | OrderRejected | None] = []
    for order in orders:
        try:
            if order is not None:
                _check_live(order)
        except OrderRejected as error:
            results.append(error)
        else:
            results.append(order)
    live = [result for result in results if isinstance(result, Order)]
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    require_own_transaction()
    commands = _cancel_commands_submit(live, CancelReason.USER, user)
    _await_all(commands, wait_seconds)
    # The commands before the orders: a command read processed has its order's outcome
    # written (a command read pending may be processed by the time its order is read).
    outcome = {
        order_id: (status, reject_code)
        for order_id, status, reject_code in OrderCommand.objects.filter(
            pk__in=[command.pk for command in commands]
        ).values_list("order_id", "status", "reject_code")
    }
    fresh = _reread_many(live) if live else {}
    answers: dict[int, Order | OrderRejected] = {}
    for order in live:
        status, reject_code = outcome[order.pk]
        answer = fresh[order.pk]
        answer.command_pending = status == OrderCommand.Status.PENDING
        if status == OrderCommand.Status.REJECTED:
            answers[order.pk] = _command_refused(answer, reject_code)
            continue
        answers[order.pk] = answer
    return [
        (
            order.pk if order is not None else None,
            answers[result.pk] if isinstance(result, Order) else result,
        )
        for order, result in zip(orders, results, strict=True)
    ]


def order_replace(
    *,
    order: Order,
    price: Decimal,
    quantity: int,
    requested_by: User | None = None,
    wait_seconds: float = 0.0,
) -> Order:
    """Change a live limit order's price and open quantity (0 cancels it).

    The same price with the same or a smaller quantity keeps the order's place in the queue;
    any other change sends it to the back, matched like a new arrival. A replace to 0 is a
    cancel: like ``order_cancel`` it goes through on an instrument halted or expired, where
    any other replace is refused, and the price it names is not looked at.

    Under a margin call an order's quantity may only go down, and an ordinary order placed
    before the call keeps its price (``RISK_REDUCE_ONLY``: ``_check_replace_under_margin_call``);
    a reducing order once the call has ended may only be cancelled (``RISK_MARGIN_CALL_ENDED``).

    A replace the matcher refuses (a post-only order that would trade, an order whose time in
    force has passed, ...) raises ``OrderRejected`` with the matcher's code, the order left as
    the matcher left it. The inline matcher decides at once; with external matchers,
    ``wait_seconds`` is how long to wait for its decision: a replace still unprocessed after
    that is accepted, and the order is returned as it is, with ``command_pending`` set.
    """
    _check_live(order)
    if order.type != Order.Type.LIMIT:
        raise OrderRejected(
            OrderRejectCode.MARKET_ORDER_NOT_REPLACEABLE,
            "Only limit orders can be replaced.",
            field="order",
        )
    instrument = order.instrument
    if OrderCommand.replace_cancels(quantity):
        # A cancel: the price it names is not looked at (the order keeps its own), as DELETE
        # names none.
        assert order.price is not None  # A limit order.
        price = order.price
    else:
        _check_instrument_tradable(instrument)
        check_price(instrument, price)
        check_price_limit(instrument, order.side, price)
    check_quantity(instrument, quantity, zero_allowed=True)
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    require_own_transaction()
    margin = collateral.margin_per_contract(instrument, order.side, price)
    under_call = MarginCall.objects.filter(
        account_id=order.account_id, status=MarginCall.Status.OPEN
    ).exists()
    if order.reduce_only and not under_call and not OrderCommand.replace_cancels(quantity):
        raise margin_call_ended(order)
    if under_call:
        if not OrderCommand.replace_cancels(quantity):
            _check_replace_under_margin_call(order, instrument, price, quantity)
        margin = order.margin_per_contract
    # More than the order still has open could take the organization further: counted, in
    # the replace's transaction, with its new open quantity in place of the order's own.
    limit_check = not under_call and quantity > order.open_quantity
    needs: list[collateral.Need] = []
    try:
        command = _replace_command_insert(
            order, price, quantity, margin, user, needs, limit_check=limit_check
        )
    except LedgerError as error:  # Rolled back: neither the command nor its holds exist.
        raise collateral.shortfall(needs, error) from error
    wake.after_commit(order.instrument_id, order.pk)
    _await_all([command], wait_seconds)
    fresh, refused = _command_outcome(order, command)
    if refused is not None:
        raise _command_refused(fresh, refused)
    return fresh


def _check_replace_under_margin_call(
    order: Order, instrument: Instrument, price: Decimal, quantity: int
) -> None:
    """``RISK_REDUCE_ONLY`` for a replace that would add risk to an account under a margin
    call (``Order.margin_call_replace_refusal``): one raising the order's open quantity, or
    moving an ordinary order placed before the call to a new price."""
    field = order.margin_call_replace_refusal(
        price=price, quantity=quantity, resale=instrument.kind == Instrument.Kind.RESALE
    )
    if field == "quantity":
        raise OrderRejected(
            OrderRejectCode.REDUCE_ONLY,
            "The account has an open margin call: an order's quantity may only go down.",
            field="quantity",
        )
    if field == "price":
        raise OrderRejected(
            OrderRejectCode.REDUCE_ONLY,
            f"The account has an open margin call: order #{order.pk}, placed before it, may "
            "only be cancelled or lowered at its price; cancel it and place an order that "
            "reduces the account's positions.",
            field="price",
        )


def margin_call_ended(order: Order) -> OrderRejected:
    """``RISK_MARGIN_CALL_ENDED``: a reducing order replaced with no margin call open.

    It holds no margin and pays no fee for being placed under a call, and the cure cancels it
    (``risk_cycle._reducing_orders_cancel_on_commit``). Replaced afterwards, it would keep
    those terms at a new price, an ordinary order of the account's in all but its fee; so only
    its cancel goes through (a replace to 0 too), and a new order trades on ordinary terms."""
    return OrderRejected(
        OrderRejectCode.MARGIN_CALL_ENDED,
        f"Order #{order.pk} was placed to reduce a position under a margin call, without margin "
        "or fee, and the call has ended: it may only be cancelled (place an ordinary order).",
        field="order",
    )


COMMAND_REFUSALS = {  # What a refusal code means for the client, and its field.
    str(matching.RejectReason.POST_ONLY_WOULD_CROSS): (
        "a post-only order would trade at this price",
        "price",
    ),
    str(matching.RejectReason.ALREADY_EXPIRED): ("the order's time in force has passed", ""),
    # A replace accepted on the order's holds finds them lowered by fills before the matcher
    # reaches it, and the account has not the difference: the order keeps its terms.
    str(OrderRejectCode.INSUFFICIENT_FUNDS): (
        "fills since it was accepted lowered what the order held, and the account's available "
        "cash does not cover the rest of the new quantity's collateral; the order keeps its "
        "price and quantity",
        "quantity",
    ),
    str(OrderRejectCode.INSUFFICIENT_ENTITLEMENT): (
        "fills since it was accepted lowered the GPU-hours the order held, and the account has "
        "not the rest available; the order keeps its price and quantity",
        "quantity",
    ),
    str(OrderRejectCode.REDUCE_ONLY): (
        "under the account's margin call it would no longer only reduce the position; the "
        "order keeps its price and quantity",
        "quantity",
    ),
    str(OrderRejectCode.INSTRUMENT_HALTED): (
        "the instrument was halted before the matcher reached the command",
        "order",
    ),
    str(OrderRejectCode.INSTRUMENT_EXPIRED): (
        "the instrument stopped trading before the matcher reached the command",
        "order",
    ),
}


def _command_refused(order: Order, code: str) -> OrderRejected:
    """The matcher's refusal (``code``) of a cancel or replace of ``order``, as the matcher left
    it. An order that ended before the matcher reached the command (a GTD order whose time
    passed, expired just before it; one filled meanwhile) is refused as a command of an order
    seen ended is: ``ORDER_NOT_LIVE``, whatever refused the command itself (for a replace, the
    collateral check once the expiry released the order's holds)."""
    if order.status not in LIVE_STATUSES:
        return OrderRejected(
            OrderRejectCode.NOT_LIVE,
            f"Order #{order.pk} is {order.status}: the matcher refused the command ({code}).",
            field="order",
        )
    why, field = COMMAND_REFUSALS.get(code, ("", "order"))
    return OrderRejected(
        _reject_code(code),
        f"The matcher refused the command ({code}){': ' + why if why else ''}.",
        field=field,
    )


def _reject_code(code: str) -> StrEnum:
    """The code a command was rejected with, as the enumeration it comes from: the engine's,
    the matcher's order checks, or the collateral check's (risk or ledger)."""
    for codes in (matching.RejectReason, OrderRejectCode, RiskErrorCode, LedgerErrorCode):
        try:
            return codes(code)
        except ValueError:
            continue
    raise ValueError(f"the matcher rejected a command with an unknown code {code!r}")


def _replace_command_insert(
    order: Order,
    price: Decimal,
    quantity: int,
    margin: int,
    user: User | None,
    needs: list[collateral.Need],
    *,
    limit_check: bool,
) -> OrderCommand:
    with transaction.atomic(durable=True):
        instrument = order.instrument
        if limit_check:
            check_position_limit(
                order.account, instrument, order.side, quantity, replacing=order, lock=True
            )
        if instrument.kind == Instrument.Kind.RESALE and not OrderCommand.replace_cancels(quantity):
            # The new open quantity, whether it raises the order or not: ``order`` may be stale,
            # its fills since then sold contracts of the block.
            check_block_held(order.account, instrument, order.side, quantity, replacing=order)
        command = OrderCommand.objects.create(
            kind=OrderCommand.Kind.REPLACE,
            order=order,
            instrument_id=order.instrument_id,
            price=price,
            quantity=quantity,
            margin_per_contract=margin,
            requested_by=user,
        )
        # More collateral than the order still holds: hold the difference, inactive until the
        # matcher applies the replace, when it joins the order's holds (or is released if the
        # matcher refuses it). Until 2026-12-07 the whole new requirement was held afresh beside
        # the order's own holds, so raising an order needed its collateral twice over: an
        # account holding 16 GPUs of a block and offering 8 could not raise its offer to 16.
        needs += collateral.needs_short(
            order, collateral.needs_of_order(order, order.instrument, quantity, price, margin)
        )
        if needs:
            collateral.holds_place(order, needs, f"command:{command.pk}", command=command)
    return command


def _check_cancel_reason(reason: str) -> None:
    if reason not in CancelReason.values:
        raise ValueError(f"{reason!r} is not a CancelReason.")


def _command_submit(
    order: Order, kind: str, requested_by: User | None, *, cancel_reason: str = ""
) -> OrderCommand:
    if kind == OrderCommand.Kind.CANCEL:
        _check_cancel_reason(cancel_reason)
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    require_own_transaction()
    command = OrderCommand.objects.create(  # One autocommit INSERT: committed when it returns.
        kind=kind,
        order=order,
        instrument_id=order.instrument_id,
        cancel_reason=cancel_reason,
        requested_by=user,
    )
    wake.after_commit(order.instrument_id, order.pk)
    return command
