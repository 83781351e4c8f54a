"""Reads for the daily risk cycle: the day's prices beside the previous ones, what variation
margin the day would post (the preview staff confirm), margin calls, and option chains with
fair values, implied volatilities and deltas."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import F, QuerySet

from exchange import calendar
from exchange.models import Account, Instrument, MarginCall, SettlementPrice
from exchange.selectors.market import Quote, quotes_for
from exchange.selectors.marks import MarkSource, forward_of
from exchange.services import margin
from exchange.services.ledger_accounts import MICROS_PER_USD, micros_to_usd
from exchange.services.settlement_prices import implied_volatility
from exchange.units import usd_figure
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity
from pricing import black76


@dataclass(frozen=True)
class PriceRow:
    settlement: SettlementPrice
    previous: Decimal | None

    @property
    def change(self) -> Decimal | None:
        return None if self.previous is None else self.settlement.price - self.previous


def day_prices(trading_date: date) -> list[PriceRow]:
    """The day's settlement prices, futures first, each with the previous day's price."""
    rows = list(
        SettlementPrice.objects.filter(trading_date=trading_date)
        .select_related("instrument", "set_by")
        .order_by("instrument__kind", "instrument__symbol")
    )
    # The calendar's first day has no day before it (and nothing listed to settle on it).
    previous = (
        margin.latest_settlements(
            [row.instrument_id for row in rows], on_or_before=trading_date - timedelta(days=1)
        )
        if trading_date > date.min
        else {}
    )
    return [
        PriceRow(row, previous[row.instrument_id].price if row.instrument_id in previous else None)
        for row in rows
    ]


def prices_missing(trading_date: date, close: datetime | None = None) -> list[Instrument]:
    """Instruments some account holds (a position, or a cost memo not yet marked: contracts
    closed since the last variation margin) that have no settlement price on ``trading_date``,
    with the underlying of every held option: the day cannot settle until each has one
    (``RISK_SETTLEMENT_PRICE_MISSING``). Those listed after the day's ``close`` (the
    standard one by default) are not the day's: what is held of them traded after it, and the
    next day settles it. By symbol."""
    held = set(
        LedgerAccount.objects.filter(commodity__kind=Commodity.Kind.POSITION)
        .exclude(debits_posted=F("credits_posted"))
        .values_list("commodity__code", flat=True)
    )
    costs = LedgerAccount.objects.filter(
        code__startswith="trading:", code__contains=":cost:", commodity__code="USD"
    ).exclude(debits_posted=F("credits_posted"))
    held |= {code.split(":")[3] for code in costs.values_list("code", flat=True)}
    instruments = list(
        Instrument.objects.settled_by(close or calendar.close_at(trading_date)).filter(
            symbol__in=held
        )
    )
    needed = {i.pk for i in instruments} | {
        i.underlying_id for i in instruments if i.underlying_id is not None
    }
    priced = set(
        SettlementPrice.objects.filter(
            trading_date=trading_date, instrument_id__in=needed
        ).values_list("instrument_id", flat=True)
    )
    return list(Instrument.objects.filter(pk__in=needed - priced).order_by("symbol"))


@dataclass(frozen=True)
class VariationRow:
    account: Account
    symbol: str
    contracts: int
    marked_at: Decimal | None  # $/GPU-hr: cost memo per GPU-hour (None when flat).
    settlement: Decimal
    amount: Decimal  # USD; positive: the account receives it.


def variation_preview(trading_date: date) -> list[VariationRow]:
    """The variation margin ``daily_settlement_run`` would post for the day's prices (before
    any option exercise of the day, which adds futures at the strike)."""
    prices = {
        row.instrument_id: row.price
        for row in SettlementPrice.objects.filter(
            trading_date=trading_date, instrument__kind=Instrument.Kind.FUTURE
        )
    }
    futures = {i.symbol: i for i in Instrument.objects.filter(pk__in=prices)}
    positions = LedgerAccount.objects.filter(
        commodity__kind=Commodity.Kind.POSITION, commodity__code__in=list(futures)
    ).select_related("commodity")
    costs = LedgerAccount.objects.filter(
        code__startswith="trading:", code__contains=":cost:", commodity__code="USD"
    ).exclude(debits_posted=F("credits_posted"))
    figures: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in positions:
        if row.balance:
            figures[(int(row.code.split(":")[1]), row.commodity.code)][0] = row.balance
    for row in costs:
        _, account_key, _, symbol, _ = row.code.split(":")
        if symbol in futures:
            figures[(int(account_key), symbol)][1] = row.balance
    accounts = Account.objects.in_bulk({account_id for account_id, _ in figures})
    rows = []
    for (account_id, symbol), (contracts, cost) in sorted(figures.items()):
        future = futures[symbol]
        hours = future.gpu_hours_per_contract
        price = prices[future.pk]
        amount = int(price * contracts * hours * MICROS_PER_USD) - cost
        if not amount:
            continue
        marked = (Decimal(cost) / (contracts * hours) / MICROS_PER_USD) if contracts else None
        rows.append(
            VariationRow(
                accounts[account_id],
                symbol,
                contracts,
                None if marked is None else marked.quantize(Decimal("0.000001")),
                price,
                micros_to_usd(amount),
            )
        )
    return rows


def margin_calls_open() -> QuerySet[MarginCall]:
    return MarginCall.objects.filter(status=MarginCall.Status.OPEN).select_related(
        "account__organization"
    )


@dataclass(frozen=True)
class MarginCallStanding:
    """An account's open margin call as its owner sees it, in USD."""

    call: MarginCall
    required: Decimal  # Initial margin the day's positions need.
    held: Decimal  # Margin the account holds for them.
    deficit: Decimal  # Losses it could not pay: owed to the exchange.
    amount_due: Decimal  # What it must bring (or free by reducing) to cure the call.
    amount_called: Decimal  # What the call asked for on its day (amount_due then).


def margin_call_of(account: Account) -> MarginCallStanding | None:
    """``account``'s open margin call (reduce-only until cured), or None."""
    call = MarginCall.objects.filter(account=account, status=MarginCall.Status.OPEN).first()
    if call is None:
        return None
    return MarginCallStanding(
        call=call,
        required=micros_to_usd(call.required),
        held=micros_to_usd(call.held),
        deficit=micros_to_usd(call.deficit),
        amount_due=micros_to_usd(call.amount),
        amount_called=micros_to_usd(call.amount_called),
    )


def cash_out_refusal(account: Account, doing: str) -> str | None:
    """Why no cash may leave ``account`` now, or None when it may.

    No cash leaves an account under a margin call until the call is met: what it has goes to
    meet the call, and a deficit it owes is repaid first from later cash (``risk_cycle``). The
    one rule for every service that moves cash out of a customer's account (withdrawals, a
    pool's funding and withdrawal, a member's credit repayment); each refuses with its own
    error code and this text. ``doing`` completes the sentence: "cash can be withdrawn"."""
    standing = margin_call_of(account)
    if standing is None:
        return None
    owed = (
        f", and owes {usd_figure(standing.deficit)} USD of losses" if standing.call.deficit else ""
    )
    return (
        f"Account {account} is under a margin call ({usd_figure(standing.amount_due)} USD "
        f"due{owed}): {doing} once the call is met."
    )


@dataclass(frozen=True)
class ChainSide:
    """One option of a chain row. Prices $/GPU-hr; delta per contract of the future."""

    option: Instrument
    quote: Quote
    fair_value: Decimal | None  # None while the future has no reference price.
    implied_volatility: Decimal | None  # From the mid, else the last trade.
    delta: float | None


@dataclass(frozen=True)
class ChainRow:
    strike: Decimal
    call: ChainSide | None
    put: ChainSide | None


@dataclass(frozen=True)
class Chain:
    forward: Decimal | None  # The future's forward the chain is valued at.
    forward_source: MarkSource | None  # Where it comes from.
    volatility: float
    rows: list[ChainRow]


def option_chain(future: Instrument, *, at: datetime) -> Chain:
    """The options on ``future`` that still trade at ``at`` (before the close of their last
    trading day, ``Instrument.objects.trading_at``: an order on one whose trading ended is
    refused, though its status stays active until the daily cycle expires it; the forward curve
    and the hedge leave it out too), by strike, valued on ``at``'s day with Black-76 at the
    future's forward (``marks.forward_of``, as the option-quote calculator: the most recent of
    the latest settlement price and the last trade, else the mid) and each option's volatility
    as margin values it (``margin.option_volatility``: its latest settlement's implied
    volatility, else its future's historical volatility, else the default)."""
    on = at.astimezone(UTC).date()
    options = list(
        future.options.exclude(status=Instrument.Status.EXPIRED)
        .trading_at(at)
        .order_by("strike", "option_type")
    )
    quotes = quotes_for([future, *options])
    mark = forward_of(future, quote=quotes[future.pk])
    forward = None if mark is None else mark.price
    default = float(settings.EXCHANGE_DEFAULT_VOLATILITY)
    latest = margin.latest_settlements([option.pk for option in options])
    by_strike: dict[Decimal, dict[str, ChainSide]] = defaultdict(dict)
    for option in options:
        assert option.strike is not None
        quote = quotes[option.pk]
        sigma = margin.volatility_of(option, latest.get(option.pk))
        if forward is None:
            by_strike[option.strike][option.option_type] = ChainSide(
                option, quote, None, None, None
            )
            continue
        value, _ = margin.option_value(option, forward, sigma, on)
        observed = None
        if quote.best_bid and quote.best_ask:
            observed = (quote.best_bid.price + quote.best_ask.price) / 2
        elif quote.last_price is not None:
            observed = quote.last_price
        implied = implied_volatility(option, observed, forward, on) if observed else None
        greeks = black76.greeks(
            float(forward),
            float(option.strike),
            margin.years_to_expiry(option, on),
            float(settings.EXCHANGE_RISK_FREE_RATE),
            sigma,
            option.option_type == Instrument.OptionType.CALL,
        )
        by_strike[option.strike][option.option_type] = ChainSide(
            option, quote, value, implied, float(greeks.delta)
        )
    rows = [
        ChainRow(strike, sides.get("call"), sides.get("put"))
        for strike, sides in sorted(by_strike.items())
    ]
    return Chain(forward, None if mark is None else mark.source, default, rows)
