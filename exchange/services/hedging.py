"""Hedge recommendations for a planned need of GPU-hours (a buyer's, ``side`` buy) or a planned
capacity to sell (a provider's, ``side`` sell): ``pricing.hedge.recommend`` fed with the SKU and
region's forward curve (``exchange.selectors.market_data.forward_curve``).

A need (or capacity) is ``gpus`` GPUs for every hour of ``months`` consecutive delivery months from
``first_month``. Each month must have a listed future that still trades (until the close of its last
trading day, ``calendar.trading_ends_at``: an order on it after that is refused): that is what the
strip buys (a seller's sells), and its curve price (settlement, mid, last trade or model) is the
month's forward. A month priced at 0 (a settlement price set to 0) has no price to hedge at and is
one the lognormal model cannot start from: it is left out of the costs, its legs unavailable with
the reason. A halted future is not traded (an order on it is refused until trading resumes): its leg
says so with 0 contracts, and the strip's costs leave that month to its price. Its options are
halted with it (an option trades only while its future is not halted): that month's call and put
legs are unavailable with the reason, and the options' strategies leave the month to its price too.
Rate defaults to ``EXCHANGE_RISK_FREE_RATE``. Each option leg is valued at the volatility
requested, else at the one the option chain and margin value that option at
(``margin.option_volatility``: its latest implied volatility, else its future's historical
volatility, else the default), so that at the same forward and rate a leg is worth what the
chain shows; the leg says which volatility it took and where from (``volatility_source``).
Each month's prices are simulated at the volatility requested, else at the market's for that
month by the same rule (`_month_volatilities`): the volatility of the month's option the side
buys (a buyer's call, a seller's put) where it has one, else its future's historical volatility,
else the default (``margin.future_volatility``); so the options' premiums and the simulated
market they are exercised in agree. Its futures leg says which and where from. A market
volatility above ``HEDGE_VOLATILITY_MAX`` is simulated at that bound (see it).

The calls are aimed 10% over each month's forward and the puts 10% under it (``CAP_MONEYNESS``,
``FLOOR_MONEYNESS``): a buyer's cap buys the calls and its collar sells the puts too; a
seller's floor buys the puts and its collar sells the calls too. They are recommended only on
listed options: each leg is the month's listed option that still trades at the nearest strike
on the protective side of its aim (`_listed_option`), and its premium, the cap or floor and the
strategies' costs or revenues are valued at that strike and that option's expiry (its last
trading day), never at the aim. A month whose future lists no such option has that leg
unavailable (with the reason), and so does one whose nearest option is halted (the leg is not
moved to another strike): the futures leg is still recommended, and the options' strategies
leave the month to its price. A month without the option its side buys sells none in the
collar either (`_paired`): the option sold only pays for the one bought.

Each leg's contracts are the need's GPUs rounded up to whole lots of its instrument
(`whole_lots`), given as the orders it accepts (`order_split`): the recommendation can be
placed as it stands.

Floats exist only at the call into ``pricing``; strikes come back as $/GPU-hr Decimals on
``PRICE_QUANTUM`` and costs as USD on cents. Nothing here writes.
"""

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import ClassVar

from django.conf import settings
from django.utils import timezone

from exchange import calendar
from exchange.errors import PricingError, PricingErrorCode
from exchange.models import Instrument, Region, Sku
from exchange.selectors.market_data import CurvePoint, forward_curve
from exchange.services.listing import LISTED_MONTHS_MAX
from exchange.services.margin import (
    OptionVolatility,
    VolatilitySource,
    future_volatility,
    latest_settlements,
    option_volatility,
    years_to_expiry,
)
from exchange.services.option_pricing import (
    DAYS_PER_YEAR,
    PRICE_QUANTUM,
    VOLATILITY_QUANTUM,
    YEARS_QUANTUM,
    to_decimal,
)
from pricing import hedge
from pricing.hedge import Side

HEDGE_MONTHS_MAX = LISTED_MONTHS_MAX
GPUS_MAX = 100_000
# A higher volatility over years of delivery makes the simulated prices overflow what the
# costs are shown with (``pricing.hedge.VOLATILITY_MAX``, which refuses one); 500% a year is far
# beyond any GPU market. A request above it is refused; a month whose market volatility (an
# option's implied one, a future's history) is above it is simulated at it.
HEDGE_VOLATILITY_MAX = Decimal(hedge.VOLATILITY_MAX)  # 5, exactly: the float is an integer.
USD_QUANTUM = Decimal("0.01")
CAP_MONEYNESS = Decimal("1.10")  # The cap's calls aim 10% over each month's forward.
FLOOR_MONEYNESS = Decimal("0.90")  # The collar's puts aim 10% under it.


@dataclass(frozen=True)
class Orders:
    """``count`` orders of ``quantity`` contracts each."""

    quantity: int
    count: int


def whole_lots(gpus: int, lot_size: int) -> int:
    """The contracts that cover ``gpus`` GPUs in whole lots of the instrument: rounded up, so
    the whole need is hedged (what is over it, less than a lot, can be sold before delivery),
    where an order off the lot is refused (``ORDER_QUANTITY_OFF_LOT``)."""
    return -(-gpus // lot_size) * lot_size


def order_split(contracts: int, lot_size: int, quantity_max: int) -> tuple[Orders, ...]:
    """``contracts`` (whole lots) as the fewest orders the instrument accepts: each at most its
    maximum order size (``ORDER_QUANTITY_TOO_LARGE`` above it) in whole lots, all but the last
    at the largest such size. At most two sizes, however many orders."""
    largest = quantity_max // lot_size * lot_size
    assert largest > 0 and contracts % lot_size == 0, "a lot fits in an order"
    full, rest = divmod(contracts, largest)
    return tuple(
        Orders(quantity, count)
        for quantity, count in ((largest, full), (rest, 1))
        if quantity and count
    )


def _unorderable(instrument: Instrument) -> str:
    """Why no order on ``instrument`` can be placed, or empty: halted, an option whose future
    is halted, or a maximum order size under one lot (every quantity is refused)."""
    if instrument.status == Instrument.Status.HALTED:
        return _halted(instrument)
    if (future := instrument.halted_by) is not None:
        return (
            f"{instrument.symbol} is halted with its future: {future.symbol} is halted, and an "
            f"order on one of its options is refused until it resumes"
        )
    if instrument.quantity_max < instrument.lot_size:
        return (
            f"{instrument.symbol} accepts orders of at most {instrument.quantity_max} contracts, "
            f"under one lot of {instrument.lot_size}: no order on it can be placed"
        )
    return ""


class _Staged:
    """A leg's ``orders`` as the page stages them: one ticket for the first order."""

    orders: tuple[Orders, ...]

    @property
    def order_quantity(self) -> int:
        """The first order's contracts: what one ticket stages."""
        return self.orders[0].quantity if self.orders else 0

    @property
    def split(self) -> bool:
        """Whether ``contracts`` take more than one order (above the maximum order size)."""
        return sum(orders.count for orders in self.orders) > 1


@dataclass(frozen=True)
class FuturesLeg(_Staged):
    month: date
    symbol: str
    forward: Decimal  # $/GPU-hr, the curve's price of the month.
    source: str  # Of the forward: settlement, mid, last_trade or model.
    gpu_hours_per_contract: int
    # To buy (a buyer) or sell (a seller), whole lots; 0 when the future cannot be traded.
    contracts: int
    reason: str = ""  # Why the month's future is not traded; empty when it is.
    lot_size: int = 1
    orders: tuple[Orders, ...] = ()  # ``contracts`` as orders the future accepts.
    # Annualized, the one the month's prices are simulated at (at most HEDGE_VOLATILITY_MAX),
    # and where it comes from (a ``VolatilitySource``); None for a month priced at 0, left out.
    volatility: Decimal | None = None
    volatility_source: str | None = None

    @property
    def available(self) -> bool:
        return not self.reason


@dataclass(frozen=True)
class OptionLeg(_Staged):
    """One month's call or put (a buyer's calls and a seller's puts are bought, the other sold
    in the collar): the listed option that carries it out, valued with Black-76 at its strike,
    expiry and volatility (``volatility_source``: implied, chain, historical, default or
    requested; see ``margin.VolatilitySource``); or, when the month lists none on the
    protective side of the aim, unavailable with the reason (no symbol, strike, value or
    volatility, no contracts)."""

    month: date
    underlying: str  # The month's future.
    option_type: str
    target_strike: Decimal  # $/GPU-hr: the aim, 10% over (calls) or under (puts) the forward.
    contracts: int  # Options to trade, whole lots; 0 when unavailable.
    symbol: str | None = None  # The listed option.
    strike: Decimal | None = None  # $/GPU-hr, the listed option's.
    expiry: date | None = None  # The listed option's last trading day.
    years_to_expiry: Decimal | None = None  # From the day of the recommendation (Actual/365).
    value: Decimal | None = None  # $/GPU-hr, Black-76 at the strike, expiry and volatility.
    premium: Decimal | None = None  # USD for the contracts, paid if bought, received if sold.
    reason: str = ""  # Why the leg is unavailable; empty when it is available.
    lot_size: int | None = None  # The listed option's.
    orders: tuple[Orders, ...] = ()  # ``contracts`` as orders the option accepts.
    volatility: Decimal | None = None  # Annualized, the one ``value`` is taken at.
    volatility_source: str | None = None  # A ``VolatilitySource``.

    @property
    def available(self) -> bool:
        return self.symbol is not None


@dataclass(frozen=True)
class Outcome:
    """A strategy's cost of the whole need, USD: expected and the 95th percentile of the
    simulated costs, with the option premium paid (positive) or received now."""

    expected_cost: Decimal
    worst_case_cost: Decimal
    premium: Decimal


@dataclass(frozen=True)
class Revenue:
    """A seller's strategy's revenue of the whole capacity, USD: expected and the 95% worst
    case (the 5th percentile of the simulated revenues: a seller's bad tail is low prices),
    with the option premium paid (positive) or received now."""

    expected_revenue: Decimal
    worst_case_revenue: Decimal
    premium: Decimal


@dataclass(frozen=True)
class Distribution:
    """The simulated costs of the whole need (or revenues of the capacity) per strategy
    (keyed by ``pricing.hedge.STRATEGIES``), counted in shared bins: ``edges`` in USD, one more
    than each strategy's counts; the counts of a strategy sum to the simulation's paths."""

    edges: list[Decimal]
    counts: dict[str, list[int]]


@dataclass(frozen=True)
class _Recommendation:
    sku: str
    region: str
    gpus: int
    # The one requested, which every month is simulated at; else the default, that a month
    # with neither an option's volatility nor a history of its future is simulated at. Each
    # month's own is on its futures leg.
    volatility: Decimal
    rate: Decimal
    futures: list[FuturesLeg]
    calls: list[OptionLeg]
    puts: list[OptionLeg]
    distribution: Distribution


@dataclass(frozen=True)
class Hedge(_Recommendation):
    """A buyer's hedge of a need: the strip bought, the cap (``calls`` bought) and the collar
    (those calls, and ``puts`` sold), with their costs."""

    side: ClassVar[Side] = Side.BUY
    unhedged: Outcome
    futures_outcome: Outcome
    cap_outcome: Outcome
    collar_outcome: Outcome


@dataclass(frozen=True)
class SellHedge(_Recommendation):
    """A seller's hedge of a capacity: the strip sold, the floor (``puts`` bought) and the
    collar (those puts, and ``calls`` sold), with their revenues."""

    side: ClassVar[Side] = Side.SELL
    unhedged: Revenue
    futures_outcome: Revenue
    floor_outcome: Revenue
    collar_outcome: Revenue


def _usd(value: float) -> Decimal:
    result = to_decimal(value, USD_QUANTUM)
    assert result is not None, "costs are finite within the input bounds"
    return result


def _amounts(
    result: hedge.HedgeRecommendation, premiums: dict[str, Decimal]
) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """Each strategy's expected and worst-case amount (cost or revenue) on cents, with its
    premium: the one in ``premiums`` (the sum of its legs') where given."""
    return {
        name: (
            _usd(outcome.expected),
            _usd(outcome.worst_case),
            premiums.get(name, _usd(outcome.premium)),
        )
        for name, outcome in result.outcomes.items()
    }


def _years_to_middle(month: date, on: date) -> float:
    """Years from ``on`` to the middle of the delivery month (Actual/365)."""
    half_month_days = calendar.hours_in_month(month) / 48
    return ((month - on).days + half_month_days) / DAYS_PER_YEAR


def _listed_option(options: list[Instrument], option_type: str, aim: Decimal) -> Instrument | None:
    """The listed option of ``option_type`` at the nearest strike on the protective side of
    ``aim``: the call at the lowest strike at or above it, the put at the highest strike at or
    below it; None when there is none on that side.

    Why those sides: a buyer's recommendation is a cap at about 10% over the forward and a
    floor given away at about 10% under it. A call below the aim would be a dearer hedge than
    the one recommended (in the money when the grid is coarse, a different strategy), and a put
    above the aim would give away more of a fall than the collar means to; so a leg moves at
    most one strike step away from the forward, never towards it, and is unavailable rather
    than recommended on the wrong side. A seller's is the mirror image with the same strikes: a
    floor at about 10% under the forward (a put above the aim: a dearer, in-the-money floor)
    and a cap given away at about 10% over it (a call below the aim: more of a rise given away).
    """
    if option_type == Instrument.OptionType.CALL:
        above = [option for option in options if _strike(option) >= aim]
        return min(above, key=_strike) if above else None
    below = [option for option in options if _strike(option) <= aim]
    return max(below, key=_strike) if below else None


def _strike(option: Instrument) -> Decimal:
    assert option.strike is not None, "a listed option has a strike"
    return option.strike


def _options_by_future(futures: list[str], at: datetime) -> dict[tuple[str, str], list[Instrument]]:
    """The options that still trade at ``at`` (before the close of their last trading day) on
    each of ``futures`` (symbols), by (future symbol, option type). Halted ones are among them:
    one that would be a leg makes the leg unavailable with that reason (`_choose`), rather than
    the leg moving to another strike or reading as no option listed."""
    by_future: dict[tuple[str, str], list[Instrument]] = {}
    options = (
        Instrument.objects.trading_at(at)
        .filter(kind=Instrument.Kind.OPTION, underlying__symbol__in=futures)
        .exclude(status=Instrument.Status.EXPIRED)
        .select_related("underlying")
    )
    for option in options:
        assert option.underlying is not None, "an option has an underlying"
        by_future.setdefault((option.underlying.symbol, option.option_type), []).append(option)
    return by_future


@dataclass(frozen=True)
class _Choice:
    """A month's option leg before valuation: the aim and the listed option (or the reason)."""

    month: date
    underlying: str
    option_type: str
    aim: Decimal
    option: Instrument | None
    reason: str


def _choose(
    curve: list[CurvePoint],
    option_type: str,
    moneyness: Decimal,
    listed: dict[tuple[str, str], list[Instrument]],
) -> list[_Choice]:
    kind = "call" if option_type == Instrument.OptionType.CALL else "put"
    bound = "at or above" if option_type == Instrument.OptionType.CALL else "at or below"
    choices = []
    for point in curve:
        underlying = str(point.symbol)
        aim = (point.price * moneyness).quantize(PRICE_QUANTUM, ROUND_HALF_EVEN)
        options = listed.get((underlying, option_type), [])
        option = _listed_option(options, option_type, aim)
        if not options:
            reason = f"no {kind}s listed on {underlying}"
        elif option is None:
            reason = f"no listed {kind} struck {bound} {aim:.3f}"
        elif unorderable := _unorderable(option):
            reason, option = unorderable, None
        else:
            reason = ""
        choices.append(_Choice(point.month, underlying, option_type, aim, option, reason))
    return choices


def _halted(instrument: Instrument) -> str:
    return f"{instrument.symbol} is halted: an order on it is refused until trading resumes"


def _futures_legs(curve: list[CurvePoint], hours: tuple[int, ...], gpus: int) -> list[FuturesLeg]:
    """Each month's future to buy: ``gpus`` contracts in whole lots (`whole_lots`), as orders
    it accepts (`order_split`). One no order can be placed on (halted: refused until trading
    resumes) is not bought, with the reason, and the strip leaves its month to its price."""
    futures = Instrument.objects.in_bulk(
        [str(point.symbol) for point in curve], field_name="symbol"
    )
    legs = []
    for point, hour in zip(curve, hours, strict=True):
        future = futures[str(point.symbol)]
        reason = _unorderable(future)
        contracts = 0 if reason else whole_lots(gpus, future.lot_size)
        legs.append(
            FuturesLeg(
                point.month,
                future.symbol,
                point.price,
                point.source,
                hour,
                contracts,
                reason,
                future.lot_size,
                () if reason else order_split(contracts, future.lot_size, future.quantity_max),
            )
        )
    return legs


def _unpriced(point: CurvePoint) -> str:
    return f"{point.symbol} is priced at 0 (its {point.source.replace('_', ' ')})"


def _with_unpriced(
    unpriced: list[CurvePoint],
    futures: list[FuturesLeg],
    calls: list[OptionLeg],
    puts: list[OptionLeg],
    side: Side,
) -> tuple[list[FuturesLeg], list[OptionLeg], list[OptionLeg]]:
    """The legs with those of the months priced at 0 put back in month order: nothing traded,
    each saying why, and the months left out of the costs (a seller's revenues)."""
    amounts = "costs" if side is Side.BUY else "revenues"
    reasons = {
        point.month: f"{_unpriced(point)}: no price to hedge the month at, left out of the "
        f"{amounts}"
        for point in unpriced
    }

    def skipped(option_type: str) -> list[OptionLeg]:
        return [
            OptionLeg(
                point.month,
                str(point.symbol),
                option_type,
                point.price,
                0,
                reason=reasons[point.month],
            )
            for point in unpriced
        ]

    skipped_futures = [
        FuturesLeg(
            point.month,
            str(point.symbol),
            point.price,
            point.source,
            calendar.hours_in_month(point.month),
            0,
            reasons[point.month],
        )
        for point in unpriced
    ]

    def month(leg: FuturesLeg | OptionLeg) -> date:
        return leg.month

    return (
        sorted([*futures, *skipped_futures], key=month),
        sorted([*calls, *skipped(Instrument.OptionType.CALL)], key=month),
        sorted([*puts, *skipped(Instrument.OptionType.PUT)], key=month),
    )


def _paired(sold: _Choice, bought: _Choice) -> _Choice:
    """The collar sells a month's option (a buyer's put, a seller's call) only to pay for that
    month's option bought (a buyer's call, a seller's put): sold alone it would be a bet on
    where prices go, not a hedge, so without the one bought the one sold is unavailable too
    (and the collar leaves the month to its price)."""
    if bought.option is not None or sold.option is None:
        return sold
    kind = "call" if bought.option_type == Instrument.OptionType.CALL else "put"
    return replace(sold, option=None, reason=f"no {kind} to pair it with ({bought.reason})")


def _volatilities(
    choices: list[_Choice], requested: Decimal | None
) -> list[OptionVolatility | None]:
    """Each chosen option's volatility (None for a month without one): the one requested, else
    the one the chain and margin value it at (`margin.option_volatility`, their rule). The
    options' latest settlements are read in one query."""
    if requested is not None:
        given = OptionVolatility(float(requested), VolatilitySource.REQUESTED)
        return [given if choice.option is not None else None for choice in choices]
    latest = latest_settlements([choice.option.pk for choice in choices if choice.option])
    return [
        option_volatility(choice.option, latest.get(choice.option.pk)) if choice.option else None
        for choice in choices
    ]


def _month_volatilities(
    curve: list[CurvePoint],
    bought: list[OptionVolatility | None],
    requested: Decimal | None,
) -> list[OptionVolatility]:
    """The volatility each month's prices are simulated at: the one requested; else the
    market's, by the legs' rule: that of the month's option bought alone (``bought``, a buyer's
    call or a seller's put, valued at `_volatilities`), else its future's (historical, else the
    default: ``margin.future_volatility``), at most ``HEDGE_VOLATILITY_MAX``.

    Why the option bought: its premium is what the side pays for protection, and simulating the
    month at its volatility makes the payoff it is exercised for worth that premium on average
    (a lognormal month has one volatility: the one sold in the collar, at a strike of its own,
    may imply another). A month without one has no option sold either (`_paired`)."""
    if requested is not None:
        return [OptionVolatility(float(requested), VolatilitySource.REQUESTED) for _ in curve]
    unvalued = [str(point.symbol) for point, own in zip(curve, bought, strict=True) if own is None]
    future_ids = dict(Instrument.objects.filter(symbol__in=unvalued).values_list("symbol", "pk"))
    volatilities = []
    for point, own in zip(curve, bought, strict=True):
        market = own if own is not None else future_volatility(future_ids[str(point.symbol)])
        volatilities.append(replace(market, sigma=min(market.sigma, hedge.VOLATILITY_MAX)))
    return volatilities


def _listed_inputs(
    choices: list[_Choice], volatilities: list[OptionVolatility | None], on: date
) -> tuple[tuple[float | None, ...], tuple[float | None, ...], tuple[float | None, ...]]:
    """The strikes, times to expiry (the margin model's: at least an hour) and volatilities for
    pricing."""
    return (
        tuple(float(_strike(c.option)) if c.option else None for c in choices),
        tuple(years_to_expiry(c.option, on) if c.option else None for c in choices),
        tuple(v.sigma if v is not None else None for v in volatilities),
    )


def _legs(
    choices: list[_Choice],
    gpus: int,
    values: tuple[float | None, ...],
    volatilities: list[OptionVolatility | None],
    on: date,
) -> list[OptionLeg]:
    """The legs of ``choices`` valued at ``values`` (at ``volatilities``): ``gpus`` contracts in
    whole lots of each option (`whole_lots`), as orders it accepts, with their premium."""
    legs = []
    for choice, value, sigma in zip(choices, values, volatilities, strict=True):
        option = choice.option
        if option is None or value is None or sigma is None:
            legs.append(
                OptionLeg(
                    choice.month,
                    choice.underlying,
                    choice.option_type,
                    choice.aim,
                    0,
                    reason=choice.reason,
                )
            )
            continue
        legs.append(
            OptionLeg(
                choice.month,
                choice.underlying,
                choice.option_type,
                choice.aim,
                contracts := whole_lots(gpus, option.lot_size),
                symbol=option.symbol,
                strike=option.strike,
                expiry=option.last_trading_day,
                years_to_expiry=Decimal(repr(years_to_expiry(option, on))).quantize(
                    YEARS_QUANTUM, ROUND_HALF_EVEN
                ),
                value=to_decimal(value, PRICE_QUANTUM),
                premium=_usd(value * (contracts * option.gpu_hours_per_contract)),
                lot_size=option.lot_size,
                orders=order_split(contracts, option.lot_size, option.quantity_max),
                volatility=to_decimal(sigma.sigma, VOLATILITY_QUANTUM),
                volatility_source=str(sigma.source),
            )
        )
    return legs


def _premium(legs: list[OptionLeg]) -> Decimal:
    return sum((leg.premium for leg in legs if leg.premium is not None), Decimal("0.00"))


def _need_curve(
    sku: Sku, region: Region, first_month: date, months: int, at: datetime, side: Side
) -> tuple[list[CurvePoint], list[CurvePoint]]:
    """The curve's points of the need's (capacity's) months priced above 0, and those at 0;
    `hedge_recommendation` says what it raises."""
    points = {point.month: point for point in forward_curve(sku, region, at=at)}
    if not points:
        trading = (
            Instrument.objects.trading_at(at)
            .filter(kind=Instrument.Kind.FUTURE, sku=sku, region=region)
            .exists()
        )
        if trading:
            raise PricingError(
                PricingErrorCode.NO_PRICES,
                f"No {sku.code} future in {region.code} has a price yet (a settlement price, "
                "a trade, or a bid and an ask).",
            )
        raise PricingError(
            PricingErrorCode.NO_FUTURES, f"No {sku.code} futures in {region.code} are listed."
        )
    wanted = [calendar.add_months(calendar.month_start(first_month), i) for i in range(months)]
    missing = [month for month in wanted if month not in points]
    if missing:
        raise PricingError(
            PricingErrorCode.MONTH_NOT_LISTED,
            f"No listed {sku.code} future in {region.code} still trades for {missing[0]:%Y-%m}.",
            field="first_month" if missing[0] == wanted[0] else "months",
        )
    # A month priced at 0 (a settlement price set to 0) has no price to hedge at, nor one the
    # lognormal model can start from: it is left out, its legs saying so, not the whole need.
    curve = [points[month] for month in wanted if points[month].price > 0]
    unpriced = [points[month] for month in wanted if points[month].price <= 0]
    if not curve:
        planned = "need" if side is Side.BUY else "capacity"
        raise PricingError(
            PricingErrorCode.NO_PRICES,
            f"Every month of the {planned} is priced at 0 ({_unpriced(unpriced[0])}): there is "
            "no price to hedge at.",
        )
    return curve, unpriced


def hedge_recommendation(
    *,
    sku: Sku,
    region: Region,
    gpus: int,
    first_month: date,
    months: int,
    volatility: Decimal | None = None,
    rate: Decimal | None = None,
    at: datetime | None = None,
    side: Side = Side.BUY,
) -> Hedge | SellHedge:
    """A buyer's (``side`` buy: a `Hedge`) futures strip, call cap and collar for a need of
    ``gpus`` GPUs over ``months`` delivery months from ``first_month``, with their expected and
    95% worst-case costs and the cost left unhedged; or a seller's (``side`` sell: a
    `SellHedge`) strip sold, put floor and collar for a capacity of as many, with their
    expected and 95% worst-case revenues (``pricing.hedge.recommend``, seeded: results
    repeat), at ``at`` (now if not given): only futures and options that still trade then are
    used.

    Each option leg is a listed option (see the module's docstring and `_listed_option`) or
    unavailable; the strategies' premiums are the sums of their legs' premiums. Each option leg
    is valued at ``volatility`` when given, else at its own (`_volatilities`); each month's
    prices are simulated at ``volatility`` when given, else at the market's for the month
    (`_month_volatilities`).

    Raises
    ------
    PricingError
        ``PRICING_NO_FUTURES`` (no future of the SKU and region still trades),
        ``PRICING_NO_PRICES`` (none has a price, or every month of the need is priced at 0),
        ``PRICING_MONTH_NOT_LISTED`` (a month of the need has no listed future that still
        trades).
    """
    side = Side(side)
    at = at or timezone.now()
    on = at.date()
    requested = volatility
    volatility = Decimal(settings.EXCHANGE_DEFAULT_VOLATILITY) if volatility is None else volatility
    rate = Decimal(settings.EXCHANGE_RISK_FREE_RATE) if rate is None else rate
    curve, unpriced = _need_curve(sku, region, first_month, months, at, side)
    hours = tuple(calendar.hours_in_month(point.month) for point in curve)
    listed = _options_by_future([str(point.symbol) for point in curve], at)
    calls = _choose(curve, Instrument.OptionType.CALL, CAP_MONEYNESS, listed)
    puts = _choose(curve, Instrument.OptionType.PUT, FLOOR_MONEYNESS, listed)
    if side is Side.BUY:
        puts = [_paired(put, call) for put, call in zip(puts, calls, strict=True)]
    else:
        calls = [_paired(call, put) for call, put in zip(calls, puts, strict=True)]
    futures = _futures_legs(curve, hours, gpus)
    call_volatilities = _volatilities(calls, requested)
    put_volatilities = _volatilities(puts, requested)
    call_strikes, call_years, call_sigmas = _listed_inputs(calls, call_volatilities, on)
    put_strikes, put_years, put_sigmas = _listed_inputs(puts, put_volatilities, on)
    bought = call_volatilities if side is Side.BUY else put_volatilities
    month_volatilities = _month_volatilities(curve, bought, requested)
    futures = [
        replace(
            leg,
            volatility=to_decimal(sigma.sigma, VOLATILITY_QUANTUM),
            volatility_source=str(sigma.source),
        )
        for leg, sigma in zip(futures, month_volatilities, strict=True)
    ]
    try:
        need = hedge.PlannedNeed(
            gpus=gpus,
            hours=hours,
            forwards=tuple(float(point.price) for point in curve),
            years_to_delivery=tuple(_years_to_middle(point.month, on) for point in curve),
        )
        options = hedge.ListedOptions(
            call_strikes, call_years, put_strikes, put_years, call_sigmas, put_sigmas
        )
        result = hedge.recommend(
            need,
            tuple(sigma.sigma for sigma in month_volatilities),
            rate=float(rate),
            options=options,
            futures_per_month=tuple(leg.contracts for leg in futures),
            side=side,
        )
    except hedge.HedgeInputError as error:
        raise PricingError(PricingErrorCode.HEDGE_INVALID, str(error)) from error
    # The options hedge the need whatever the strip can buy, except on a halted future: its
    # options are halted with it, and their legs are unavailable (`_choose`).
    call_legs = _legs(calls, gpus, result.call_values, call_volatilities, on)
    put_legs = _legs(puts, gpus, result.put_values, put_volatilities, on)
    if unpriced:
        futures, call_legs, put_legs = _with_unpriced(unpriced, futures, call_legs, put_legs, side)
    recommendation = _Recommendation(
        sku=sku.code,
        region=region.code,
        gpus=gpus,
        volatility=volatility,
        rate=rate,
        futures=futures,
        calls=call_legs,
        puts=put_legs,
        distribution=Distribution(
            edges=[_usd(edge) for edge in result.distribution.edges],
            counts={name: list(counts) for name, counts in result.distribution.counts.items()},
        ),
    )
    return _of_side(recommendation, result)


def _of_side(
    recommendation: _Recommendation, result: hedge.HedgeRecommendation
) -> Hedge | SellHedge:
    """``recommendation`` with its strategies' outcomes: a buyer's costs, or a seller's
    revenues. The premium of the option bought alone (a buyer's calls, a seller's puts) is its
    legs'; the collar's is that net of the legs of the option it sells."""
    shared = {
        field: getattr(recommendation, field) for field in _Recommendation.__dataclass_fields__
    }
    calls, puts = _premium(recommendation.calls), _premium(recommendation.puts)
    if result.side is Side.BUY:
        costs = _amounts(result, {"cap": calls, "collar": calls - puts})
        return Hedge(
            **shared,
            unhedged=Outcome(*costs["none"]),
            futures_outcome=Outcome(*costs["futures"]),
            cap_outcome=Outcome(*costs["cap"]),
            collar_outcome=Outcome(*costs["collar"]),
        )
    revenues = _amounts(result, {"floor": puts, "collar": puts - calls})
    return SellHedge(
        **shared,
        unhedged=Revenue(*revenues["none"]),
        futures_outcome=Revenue(*revenues["futures"]),
        floor_outcome=Revenue(*revenues["floor"]),
        collar_outcome=Revenue(*revenues["collar"]),
    )
