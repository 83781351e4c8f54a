"""Collateral and fees: what an order sets aside before the book sees it, and what fills take.

An order is collateralized when it is accepted: ledger holds for everything its fills can take,
placed in the transaction that accepts it. A fill then consumes part of those holds and never
more, so settling a trade can never be refused by the ledger and never stalls a book.

What each order holds, for its open quantity ``Q`` at its price ``P`` (a market order's
protection price), an instrument of ``H`` GPU-hours per contract:

========================  =====================================================================
future, either side       ``Q x (margin per contract + fee per contract)``, cash
option buyer              ``Q x (P x H + fee per contract)``: the premium and the fee, cash
option seller (writer)    ``Q x (margin per contract + fee per contract)``, cash
resale buyer              ``Q x (P x H + fee on P x H)``: the full price and the fee, cash
resale seller             ``Q x hours of each month`` of its GPU-hour entitlements, per month
========================  =====================================================================

Margin: scenario margin of one contract (``exchange.services.margin``: for a future, the price
scan range of ``P x H``; for a written option, its worst scenario loss on the underlying's
reference price). The margin per contract is fixed when
the order is accepted (and by a replace), like an exchange's per-contract margin, so it does not
move with the fill price: a seller filled above its price takes no more than it held. Only
opening contracts take margin; closing ones release the position's margin pro rata.

Fees (``EXCHANGE_FEES``, fixed on the order at acceptance): futures and options pay a fixed
amount per contract; resale pays a fraction of the notional, rounded up to the next
micro-dollar for each fill. Rounding never favours the payer: a positive fee never rounds to
zero. The hold covers the fee at the larger of the maker and taker rates, per contract: since
``ceil(k x f) <= k x ceil(f)``, the rounded fees of any split into fills fit in it. A fill
that takes its order to a block tier (``EXCHANGE_FEE_BLOCK_TIERS``: 100 contracts filled, 500)
pays that tier's share of the rates (``fill_fee_micros``), less than the hold covers; the fee
each fill paid is stored on its trade.

Prices: a buyer fills at or below its price, so the premium or price it held covers any fill.
A seller of resale pays its fee out of the proceeds, so it holds no cash.

A dry run (``collateral_preview``) computes the same amounts (``amounts_for``) and checks them
against what the account has available, reading only.
"""

from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Max, Min
from django.utils import timezone

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import (
    Account,
    Instrument,
    Order,
    OrderCommand,
    OrderHold,
    Side,
)
from exchange.selectors.market import resting_orders
from exchange.services.capacity import hours_by_month
from exchange.services.ledger_accounts import (
    MICROS_PER_USD,
    USD_CODE,
    USD_SCALE,
    cash_account_code,
    cash_account_reference,
    entitlement,
    entitlement_account,
    entitlement_account_code,
    entitlement_code,
    entitlement_name,
    ledger_refusal_text,
    micros_to_usd,
    usd_text,
)
from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account as LedgerAccount
from ledger.models import Hold
from ledger.services import AMOUNT_MAX, HoldSpec, holds_create
from statements import insert_rows

FEE_BASIS_CONTRACT = "contract"
FEE_BASIS_NOTIONAL = "notional"
FEE_BASIS: dict[str, str] = {
    Instrument.Kind.FUTURE: FEE_BASIS_CONTRACT,
    Instrument.Kind.OPTION: FEE_BASIS_CONTRACT,
    Instrument.Kind.RESALE: FEE_BASIS_NOTIONAL,
}


def ceil_micros(amount: Decimal) -> int:
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class FeeRates:
    maker: Decimal
    taker: Decimal

    @property
    def highest(self) -> Decimal:
        return max(self.maker, self.taker)


def fee_rates(kind: str) -> FeeRates:
    """The schedule's rates for an instrument kind, checked: the rules above rely on them."""
    try:
        rates = FeeRates(
            Decimal(settings.EXCHANGE_FEES[kind]["maker"]),
            Decimal(settings.EXCHANGE_FEES[kind]["taker"]),
        )
    except (KeyError, TypeError) as error:
        message = f"EXCHANGE_FEES has no maker and taker rate for {kind}"
        raise ImproperlyConfigured(message) from error
    for rate in (rates.maker, rates.taker):
        if rate < 0:
            raise ImproperlyConfigured("Fees are not negative (no rebates).")
        if FEE_BASIS[kind] == FEE_BASIS_CONTRACT and (rate * MICROS_PER_USD) % 1:
            raise ImproperlyConfigured(f"{kind} fees are whole micro-dollars per contract.")
        if FEE_BASIS[kind] == FEE_BASIS_NOTIONAL and rate >= 1:
            raise ImproperlyConfigured(f"{kind} fees are a fraction of the notional below 1.")
    return rates


def fee_micros(kind: str, rate: Decimal, quantity: int, notional_micros: int) -> int:
    """The fee of one fill, in micro-USD: per contract, or rounded up on the notional."""
    if FEE_BASIS[kind] == FEE_BASIS_CONTRACT:
        return int(rate * MICROS_PER_USD) * quantity
    return ceil_micros(rate * notional_micros)


def notional_micros(price: Decimal, quantity: int, gpu_hours_per_contract: int) -> int:
    """Price ($/GPU-hr, at most 6 decimals) x contracts x GPU-hours, exact in micro-USD."""
    micros = price * quantity * gpu_hours_per_contract * MICROS_PER_USD
    assert micros == micros.to_integral_value(), micros
    return int(micros)


def margin_per_contract(instrument: Instrument, side: str, price: Decimal) -> int:
    """Initial margin for one opening contract, in micro-USD (``exchange.services.margin``)."""
    from exchange.services.margin import order_margin_per_contract

    return order_margin_per_contract(instrument, side, price)


def protection_price(instrument: Instrument, side: str) -> Decimal:
    """The worst price a market order may fill at: the best opposite price in the market now
    (as the book shows it: a GTD order whose time has come is out of it, though the matcher
    has yet to sweep it), moved ``EXCHANGE_MARKET_PROTECTION`` against the order, on the tick
    and inside the band."""
    opposite = Side.SELL if side == Side.BUY else Side.BUY
    resting = resting_orders(timezone.now()).filter(instrument=instrument, side=opposite)
    best: Decimal | None = resting.aggregate(
        best=Min("price") if side == Side.BUY else Max("price")
    )["best"]
    if best is None:
        raise OrderRejected(
            OrderRejectCode.NO_REFERENCE_PRICE,
            f"No {opposite} orders rest in {instrument.symbol}: a market order has nothing to "
            "fill against. Place a limit order.",
            field="type",
        )
    band = Decimal(settings.EXCHANGE_MARKET_PROTECTION)
    tick = instrument.tick_size
    if side == Side.BUY:
        ticks = (best * (1 + band) / tick).to_integral_value(rounding=ROUND_CEILING)
        return min(ticks * tick, instrument.price_max)
    ticks = (best * (1 - band) / tick).to_integral_value(rounding=ROUND_FLOOR)
    return max(ticks * tick, tick)


@dataclass(frozen=True)
class Terms:
    """An order's collateral terms, stored on it at acceptance."""

    margin_per_contract: int
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal


def block_fee_share(filled: int) -> Decimal:
    """The share of the schedule's fees a fill pays once its order has filled ``filled``
    contracts, this fill included: the block tiers of ``EXCHANGE_FEE_BLOCK_TIERS``. The tier
    follows what the order has bought or sold, not the size it asked for, so an order cannot
    earn a rate by asking for more than it takes (a pool's combined order earns the big
    buyer's tier, that none of its members would alone, once it has filled that much)."""
    share = Decimal(1)
    for minimum, tier_share in sorted(settings.EXCHANGE_FEE_BLOCK_TIERS):
        if filled >= minimum:
            share = Decimal(tier_share)
    return share


def tiered_rate(kind: str, rate: Decimal, share: Decimal) -> Decimal:
    """``rate`` after a block tier's ``share``. Per-contract fees stay whole micro-dollars
    (rounded down, in the customer's favour)."""
    if share == 1:
        return rate
    if FEE_BASIS[kind] == FEE_BASIS_CONTRACT:
        return (rate * share).quantize(Decimal(1).scaleb(-USD_SCALE), rounding=ROUND_FLOOR)
    return rate * share


def fill_fee_micros(
    kind: str, order: Order, maker: bool, quantity: int, notional_micros: int
) -> int:
    """The fee ``order`` (of an instrument of ``kind``) pays on a fill of ``quantity`` contracts:
    its maker or taker rate,
    after the block tier the order reaches with this fill (its filled quantity before it, plus
    ``quantity``). Never more than the fee at that rate, which the order's hold covers. An order
    accepted when the tier came from its size (``Order.fee_rates_tiered``) has it in its rates
    already, and pays them as they are."""
    rate = order.maker_fee_rate if maker else order.taker_fee_rate
    if not order.fee_rates_tiered:
        share = block_fee_share(order.filled_quantity + quantity)
        rate = tiered_rate(kind, rate, share)
    return fee_micros(kind, rate, quantity, notional_micros)


def terms_for(
    instrument: Instrument,
    side: str,
    price: Decimal,
    *,
    reducing: bool = False,
    liquidation: bool = False,
) -> Terms:
    """``reducing``: the order only closes contracts of an account under a margin call;
    ``liquidation``: staff close an account's position. Either takes no margin and pays no fee:
    an account in a margin call has no free cash to hold a fee with, and closing is what the
    exchange asks of it. The rates are the schedule's: each fill's block tier comes off them
    (``fill_fee_micros``)."""
    if liquidation or reducing:
        return Terms(0, Decimal(0), Decimal(0))
    rates = fee_rates(instrument.kind)
    return Terms(margin_per_contract(instrument, side, price), rates.maker, rates.taker)


@dataclass(frozen=True)
class Need:
    """Collateral to hold: ``amount`` on one side of a ledger account."""

    account: LedgerAccount
    side: str
    amount: int
    code: OrderRejectCode  # The rejection when it cannot be held.
    what: str  # For people: "USD" or an entitlement's name.


def entitlement_months(instrument: Instrument) -> list[tuple[date, int]]:
    """A resale contract's GPU-hours in each month of its term, from the listing's start
    (``Instrument.resale_starts_at``) to the end of the block's: 1 GPU for every hour."""
    reservation = instrument.reservation
    assert reservation is not None
    return [
        (part.month, part.hours)
        for part in hours_by_month(instrument.resale_starts_at, reservation.ends_at)
        if part.hours
    ]


@dataclass(frozen=True)
class Amount:
    """Collateral of one asset, before any ledger account is named for it."""

    asset: str  # USD_CODE, or the code of a GPU-hour entitlement commodity.
    amount: int  # Micro-USD, or GPU-hours.
    month: date | None = None  # An entitlement's month.


def amounts_for(
    instrument: Instrument,
    side: str,
    price: Decimal,
    quantity: int,
    margin: int,
    maker_fee_rate: Decimal,
    taker_fee_rate: Decimal,
) -> list[Amount]:
    """What an order of ``quantity`` open contracts at ``price`` must hold (see the table); a
    pure computation, shared by ``needs_for`` and ``collateral_preview``."""
    if quantity == 0:
        return []
    kind = instrument.kind
    hours = instrument.gpu_hours_per_contract
    highest_rate = max(maker_fee_rate, taker_fee_rate)
    if kind == Instrument.Kind.RESALE and side == Side.SELL:
        return [
            Amount(
                entitlement_code(instrument.sku.code, instrument.region.code, month),
                hours_of_month * quantity,
                month,
            )
            for month, hours_of_month in entitlement_months(instrument)
        ]
    per_contract = margin + fee_micros(kind, highest_rate, 1, notional_micros(price, 1, hours))
    paying = side == Side.BUY and kind in (Instrument.Kind.OPTION, Instrument.Kind.RESALE)
    if paying:
        per_contract += notional_micros(price, 1, hours)
    amount = per_contract * quantity
    if amount == 0:
        return []
    return [Amount(USD_CODE, amount)]


def needs_for(
    account: Account,
    instrument: Instrument,
    side: str,
    price: Decimal,
    quantity: int,
    margin: int,
    maker_fee_rate: Decimal,
    taker_fee_rate: Decimal,
) -> list[Need]:
    """What an order of ``quantity`` open contracts at ``price`` must hold, on the ledger
    accounts it is held on (opening the entitlement accounts that do not exist yet)."""
    needs = []
    for part in amounts_for(
        instrument, side, price, quantity, margin, maker_fee_rate, taker_fee_rate
    ):
        if part.month is None:
            needs.append(
                Need(
                    cash_account_reference(account),
                    Hold.Side.DEBIT,
                    part.amount,
                    OrderRejectCode.INSUFFICIENT_FUNDS,
                    "USD",
                )
            )
            continue
        commodity = entitlement(instrument.sku.code, instrument.region.code, part.month)
        needs.append(
            Need(
                entitlement_account(account, commodity),
                Hold.Side.CREDIT,
                part.amount,
                OrderRejectCode.INSUFFICIENT_ENTITLEMENT,
                commodity.name,
            )
        )
    return needs


def needs_of_order(
    order: Order, instrument: Instrument, quantity: int, price: Decimal, margin: int
) -> list[Need]:
    """What ``order`` must hold for ``quantity`` open contracts at ``price``."""
    account = order.account if Order.account.is_cached(order) else Account(pk=order.account_id)
    return needs_for(
        account,
        instrument,
        order.side,
        price,
        quantity,
        margin,
        order.maker_fee_rate,
        order.taker_fee_rate,
    )


def shortfall(needs: list[Need], error: LedgerError) -> OrderRejected:
    """The named rejection for a hold the ledger refused, saying what is missing.

    Call it after the refused transaction rolled back: it reads the accounts as they are.
    """
    if error.code == LedgerErrorCode.AMOUNT_INVALID:
        return _too_large()
    for need in needs:
        # An account opened by the refused transaction is gone with it: nothing available.
        account = LedgerAccount.objects.filter(pk=need.account.pk).first()
        available = account.available if account is not None else 0
        if available < need.amount:
            return _missing(need.code, need.amount, available, need.what)
    # Nothing is short any more: what the account had available changed between the ledger's
    # refusal and this read (an order of its own ended, a deposit came in), or the ledger
    # refused for another reason. The customer reads what the order needs, in dollars and
    # GPU-hours; never the ledger's message, which names its account codes and micro-dollars.
    needed = " and ".join(_amount_text(need.amount, need.what) for need in needs)
    if error.code in (LedgerErrorCode.INSUFFICIENT_FUNDS, LedgerErrorCode.CREDITS_EXCEED_DEBITS):
        message = (
            f"The order needs {needed} available, which the account did not have when the "
            "order was placed; try again."
        )
    else:
        message = f"The order's collateral ({needed}) could not be held. "
        message += ledger_refusal_text(error)
    return OrderRejected(needs[0].code, message, field="quantity")


def _too_large() -> OrderRejected:
    return OrderRejected(
        OrderRejectCode.NOTIONAL_TOO_LARGE,
        "The order's collateral is larger than the exchange can hold.",
        field="quantity",
    )


def _amount_text(amount: int, what: str) -> str:
    """Collateral for people: micro-dollars as dollars (``2,790.50 USD``), GPU-hours with the
    entitlement's name (``720 GPU-hours of H100SXM in USEAST, March 2027``)."""
    if what == USD_CODE:
        return usd_text(amount)
    return f"{amount:,} {what}"


def _missing(code: OrderRejectCode, amount: int, available: int, what: str) -> OrderRejected:
    if code == OrderRejectCode.INSUFFICIENT_FUNDS:
        detail = (
            f"needs {usd_text(amount)} available; the account has "
            f"{usd_text(max(available, 0))} available"
        )
    else:
        detail = (
            f"needs {_amount_text(amount, what)}; the account has {max(available, 0):,} available"
        )
    return OrderRejected(code, f"The order {detail}.", field="quantity")


@dataclass(frozen=True)
class PreviewAmount:
    asset: str  # USD_CODE, or the code of a GPU-hour entitlement commodity.
    amount: Decimal | int  # USD, or GPU-hours.


@dataclass(frozen=True)
class Preview:
    """What an order would hold if placed now (``orders.order_dry_run``). USD amounts are
    dollars (Decimal, exact to the micro-dollar), entitlements GPU-hours."""

    instrument: Instrument
    collateral: list[PreviewAmount]
    margin_per_contract: Decimal
    fee_per_contract_max: Decimal
    protection_price: Decimal | None


def collateral_preview(
    account: Account,
    instrument: Instrument,
    side: str,
    price: Decimal,
    quantity: int,
    terms: Terms,
    *,
    protection_price: Decimal | None = None,
) -> Preview:
    """The collateral of an order of ``quantity`` contracts at ``price`` (a market order's
    protection price) under ``terms``, checked against what the account has available now.

    Reads only: unlike ``needs_for`` it opens no ledger account. Raises the rejection that
    placing the order would (``RISK_INSUFFICIENT_FUNDS``, ``RISK_INSUFFICIENT_ENTITLEMENT``,
    ``RISK_NOTIONAL_TOO_LARGE``), with the same message.
    """
    amounts = amounts_for(
        instrument,
        side,
        price,
        quantity,
        terms.margin_per_contract,
        terms.maker_fee_rate,
        terms.taker_fee_rate,
    )
    _check_available(account, instrument, amounts)
    highest_rate = max(terms.maker_fee_rate, terms.taker_fee_rate)
    notional = notional_micros(price, 1, instrument.gpu_hours_per_contract)
    return Preview(
        instrument=instrument,
        collateral=[
            PreviewAmount(
                part.asset, micros_to_usd(part.amount) if part.month is None else part.amount
            )
            for part in amounts
        ],
        margin_per_contract=micros_to_usd(terms.margin_per_contract),
        fee_per_contract_max=micros_to_usd(fee_micros(instrument.kind, highest_rate, 1, notional)),
        protection_price=protection_price,
    )


def _check_available(account: Account, instrument: Instrument, amounts: list[Amount]) -> None:
    """The ledger's checks of ``holds_create`` for these amounts, without holding anything:
    every amount within the ledger's bound, then each available on its account."""
    if any(not 0 < part.amount < AMOUNT_MAX for part in amounts):
        raise _too_large()
    for part in amounts:
        if part.month is None:
            code, what = cash_account_code(account), USD_CODE
            rejection = OrderRejectCode.INSUFFICIENT_FUNDS
        else:
            code = entitlement_account_code(account, part.asset)
            what = entitlement_name(instrument.sku.code, instrument.region.code, part.month)
            rejection = OrderRejectCode.INSUFFICIENT_ENTITLEMENT
        ledger_account = LedgerAccount.objects.filter(code=code).first()
        available = ledger_account.available if ledger_account is not None else 0
        if available < part.amount:
            raise _missing(rejection, part.amount, available, what)


def holds_place(
    order: Order, needs: list[Need], key_prefix: str, *, command: OrderCommand | None = None
) -> list[OrderHold]:
    """Hold ``needs`` for ``order`` in the caller's transaction; ``LedgerError`` if refused.

    Holds placed for a replace (``command``) stay inactive until the matcher applies it.
    """
    if not needs:
        return []
    specs = [
        HoldSpec(
            key=f"{key_prefix}:{index}",
            account=need.account,
            side=need.side,
            amount=need.amount,
            description=f"Collateral of order #{order.pk} ({need.what})",
        )
        for index, need in enumerate(needs)
    ]
    # Keys carry the id of the order or command just inserted in this transaction, which rolls
    # back on a refusal (``LedgerError``: the caller turns it into ``shortfall`` afterwards).
    holds = holds_create(specs, fresh_keys=True, savepoint=False)
    rows = [
        OrderHold(order=order, hold=hold, command=command, active=command is None) for hold in holds
    ]
    insert_rows(OrderHold, rows)  # Nobody needs their ids back; a prepared INSERT.
    return rows


def needs_short(order: Order, needs: list[Need]) -> list[Need]:
    """What of ``needs`` the order's active holds do not cover (read from the ledger): each
    need less what the order holds on its ledger account, those left above 0."""
    remaining: dict[int, int] = {}
    for row in OrderHold.objects.filter(order=order, active=True).select_related("hold"):
        if row.hold.status == Hold.Status.PENDING:
            remaining[row.hold.account_id] = remaining.get(row.hold.account_id, 0) + (
                row.hold.remaining
            )
    return [
        replace(need, amount=need.amount - remaining.get(need.account.pk, 0))
        for need in needs
        if need.amount > remaining.get(need.account.pk, 0)
    ]
