"""Hedge recommendations for a planned need of GPU-hours: ``pricing.hedge.recommend`` fed
with the SKU and region's forward curve (``exchange.selectors.market_data.forward_curve``).

A need is ``gpus`` GPUs for every hour of ``months`` consecutive delivery months from
``first_month``. Each month must have a listed future that still trades: that is what the
strip buys, and its curve price (settlement, mid, last trade or model) is the month's forward.
Volatility and rate default to ``EXCHANGE_DEFAULT_VOLATILITY`` and ``EXCHANGE_RISK_FREE_RATE``.

Floats exist only at the call into ``pricing``; strikes come back as $/GPU-hr Decimals on
``PRICE_QUANTUM`` and costs as USD on cents. Nothing here writes.
"""

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.utils import timezone

from exchange import calendar
from exchange.errors import PricingError, PricingErrorCode
from exchange.models import Instrument, Region, Sku
from exchange.selectors.market_data import forward_curve
from exchange.services.listing import LISTED_MONTHS_MAX
from exchange.services.option_pricing import DAYS_PER_YEAR, PRICE_QUANTUM, to_decimal
from pricing import hedge

HEDGE_MONTHS_MAX = LISTED_MONTHS_MAX
GPUS_MAX = 100_000
# A higher volatility over years of delivery makes the simulated prices overflow what the
# costs are shown with; 500% a year is far beyond any GPU market.
HEDGE_VOLATILITY_MAX = Decimal("5")
USD_QUANTUM = Decimal("0.01")


@dataclass(frozen=True)
class FuturesLeg:
    month: date
    symbol: str
    forward: Decimal  # $/GPU-hr, the curve's price of the month.
    source: str  # Of the forward: settlement, mid, last_trade or model.
    gpu_hours_per_contract: int
    contracts: int  # To buy.


@dataclass(frozen=True)
class OptionLeg:
    month: date
    underlying: str  # The month's future.
    option_type: str
    strike: Decimal  # $/GPU-hr.
    contracts: int  # Calls to buy, or puts to sell in the collar.


@dataclass(frozen=True)
class Outcome:
    """A strategy's cost of the whole need, USD: expected and the 95th percentile of the
    simulated costs, with the option premium paid (positive) or received now."""

    expected_cost: Decimal
    worst_case_cost: Decimal
    premium: Decimal


@dataclass(frozen=True)
class Distribution:
    """The simulated costs of the whole need per strategy (``none``, ``futures``, ``cap``,
    ``collar``), counted in shared bins: ``edges`` in USD, one more than each strategy's
    counts; the counts of a strategy sum to the simulation's paths."""

    edges: list[Decimal]
    counts: dict[str, list[int]]


@dataclass(frozen=True)
class Hedge:
    sku: str
    region: str
    gpus: int
    volatility: Decimal
    rate: Decimal
    futures: list[FuturesLeg]
    calls: list[OptionLeg]  # The cap, and the bought side of the collar.
    puts: list[OptionLeg]  # Sold in the collar.
    unhedged: Outcome
    futures_outcome: Outcome
    cap_outcome: Outcome
    collar_outcome: Outcome
    distribution: Distribution


def _usd(value: float) -> Decimal:
    result = to_decimal(value, USD_QUANTUM)
    assert result is not None, "costs are finite within the input bounds"
    return result


def _outcome(cost: hedge.StrategyCost) -> Outcome:
    return Outcome(_usd(cost.expected), _usd(cost.worst_case), _usd(cost.premium))


def _years_to_middle(month: date, on: date) -> float:
    """Years from ``on`` to the middle of the delivery month (Actual/365)."""
    half_month_days = calendar.hours_in_month(month) / 48
    return ((month - on).days + half_month_days) / DAYS_PER_YEAR


def hedge_recommendation(
    *,
    sku: Sku,
    region: Region,
    gpus: int,
    first_month: date,
    months: int,
    volatility: Decimal | None = None,
    rate: Decimal | None = None,
    on: date | None = None,
) -> Hedge:
    """The futures strip, the call cap and the collar for ``gpus`` GPUs over ``months``
    delivery months from ``first_month``, with their expected and 95% worst-case costs and
    the cost left unhedged (``pricing.hedge.recommend``, seeded: results repeat).

    Raises
    ------
    PricingError
        ``PRICING_NO_FUTURES`` (no future of the SKU and region still trades),
        ``PRICING_NO_PRICES`` (none has a price), ``PRICING_MONTH_NOT_LISTED`` (a month of the
        need has no listed future that still trades).
    """
    on = on or timezone.now().date()
    volatility = Decimal(settings.EXCHANGE_DEFAULT_VOLATILITY) if volatility is None else volatility
    rate = Decimal(settings.EXCHANGE_RISK_FREE_RATE) if rate is None else rate
    points = {point.month: point for point in forward_curve(sku, region, on=on)}
    if not points:
        trading = Instrument.objects.filter(
            kind=Instrument.Kind.FUTURE, sku=sku, region=region, last_trading_day__gte=on
        ).exists()
        code = PricingErrorCode.NO_PRICES if trading else PricingErrorCode.NO_FUTURES
        message = "have no price yet" if trading else "are listed"
        raise PricingError(code, f"No {sku.code} futures in {region.code} {message}.")
    wanted = [calendar.add_months(calendar.month_start(first_month), i) for i in range(months)]
    missing = [month for month in wanted if month not in points]
    if missing:
        raise PricingError(
            PricingErrorCode.MONTH_NOT_LISTED,
            f"No listed {sku.code} future in {region.code} still trades for {missing[0]:%Y-%m}.",
            field="first_month" if missing[0] == wanted[0] else "months",
        )
    curve = [points[month] for month in wanted]
    hours = tuple(calendar.hours_in_month(month) for month in wanted)
    try:
        need = hedge.PlannedNeed(
            gpus=gpus,
            hours=hours,
            forwards=tuple(float(point.price) for point in curve),
            years_to_delivery=tuple(_years_to_middle(month, on) for month in wanted),
        )
        result = hedge.recommend(need, float(volatility), rate=float(rate))
    except hedge.HedgeInputError as error:
        raise PricingError(PricingErrorCode.HEDGE_INVALID, str(error)) from error

    def strikes(values: tuple[float, ...], option_type: str) -> list[OptionLeg]:
        return [
            OptionLeg(point.month, str(point.symbol), option_type, strike, contracts)
            for point, strike, contracts in zip(
                curve,
                (Decimal(repr(value)).quantize(PRICE_QUANTUM, ROUND_HALF_EVEN) for value in values),
                result.futures_per_month,
                strict=True,
            )
        ]

    return Hedge(
        sku=sku.code,
        region=region.code,
        gpus=gpus,
        volatility=volatility,
        rate=rate,
        futures=[
            FuturesLeg(point.month, str(point.symbol), point.price, point.source, hour, contracts)
            for point, hour, contracts in zip(curve, hours, result.futures_per_month, strict=True)
        ],
        calls=strikes(result.cap_strikes, Instrument.OptionType.CALL),
        puts=strikes(result.floor_strikes, Instrument.OptionType.PUT),
        unhedged=_outcome(result.costs["none"]),
        futures_outcome=_outcome(result.costs["futures"]),
        cap_outcome=_outcome(result.costs["cap"]),
        collar_outcome=_outcome(result.costs["collar"]),
        distribution=Distribution(
            edges=[_usd(edge) for edge in result.distribution.edges],
            counts={name: list(counts) for name, counts in result.distribution.counts.items()},
        ),
    )
