"""Initial margin from ``pricing.margin``: per contract when an order is accepted, and for a
whole account's positions at the end of the day.

Scenario (SPAN-like) margin values each underlying (a future) with the options on it under 16
price and volatility scenarios (``pricing.margin``); the scan ranges and the short option
minimum are settings (``EXCHANGE_PRICE_SCAN``, ``EXCHANGE_VOLATILITY_SCAN``,
``EXCHANGE_SHORT_OPTION_MINIMUM``).

- **Order acceptance.** A future's margin per contract is the scenario margin of one contract
  at the order's price (the largest loss of a full price scan: ``price scan x P x H``). A written
  option's is the scenario margin of one short contract on the underlying's reference price
  (its mark, ``selectors.marks``: the newer of the latest settlement and the last trade; else
  the strike) at the option's latest implied volatility. The premium a writer receives is kept
  as margin on the option (``matcher.settlement``): it pays the buy-back value the end of the
  day adds. An option buyer pays the premium and holds no margin.
- **End of day.** An account's requirement is, for each underlying's positions together (so a
  covered or spread position needs less), the larger of the scan risk and the short option
  minimum less the net option value at settlement prices, never below zero; then less the
  offset credits of ``pricing.margin.portfolio_margin`` between adjacent months of a SKU and
  region and between regions of a SKU. Options are premium-style (paid in full at the trade),
  so, as in SPAN, a writer holds what buying the option back would cost on top of its risk,
  while a long option's value covers its own risk.
  The requirement is shared among the instruments' margin accounts in proportion to each
  position's stand-alone requirement.

Amounts are micro-USD, rounded up: a margin never rounds in the trader's favour.
"""

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from functools import lru_cache

from django.conf import settings
from django.utils import timezone

from exchange.models import Instrument, SettlementPrice, Side
from exchange.selectors.marks import mark_price
from exchange.selectors.volatility import historical_volatility
from exchange.services.ledger_accounts import MICROS_PER_USD
from pricing import black76
from pricing.margin import MarginResult, Position, ScanParameters, portfolio_margin, scenario_margin

DAYS_PER_YEAR = 365
MINIMUM_EXPIRY_YEARS = 1 / (DAYS_PER_YEAR * 24)  # An hour: options are valued as they expire.


def scan_parameters(forward: float, gpu_hours: int) -> ScanParameters:
    """The settings as ``pricing.margin`` takes them; the short option minimum per contract is
    a fraction of the underlying's notional."""
    minimum = float(settings.EXCHANGE_SHORT_OPTION_MINIMUM) * forward * gpu_hours
    return ScanParameters(
        price_scan=float(settings.EXCHANGE_PRICE_SCAN),
        volatility_scan=float(settings.EXCHANGE_VOLATILITY_SCAN),
        short_option_minimum=minimum,
        rate=float(settings.EXCHANGE_RISK_FREE_RATE),
    )


def usd_to_micros_up(amount: float) -> int:
    """A USD float from the pricing library, as micro-USD rounded up."""
    return math.ceil(round(amount * MICROS_PER_USD, 3))


def years_to_expiry(option: Instrument, on: date) -> float:
    days = (option.last_trading_day - on).days
    return max(days / DAYS_PER_YEAR, MINIMUM_EXPIRY_YEARS)


def latest_settlements(
    instrument_ids: Iterable[int], *, on_or_before: date | None = None
) -> dict[int, SettlementPrice]:
    """Each instrument's latest settlement price (on or before a day, if given)."""
    rows = SettlementPrice.objects.filter(instrument_id__in=list(instrument_ids))
    if on_or_before is not None:
        rows = rows.filter(trading_date__lte=on_or_before)
    latest: dict[int, SettlementPrice] = {}
    for row in rows.order_by("instrument_id", "trading_date"):
        latest[row.instrument_id] = row
    return latest


class VolatilitySource(StrEnum):
    """Where the volatility a listed option is valued at comes from (`option_volatility`), or
    a future's without one (`future_volatility`: historical or default)."""

    # Its latest settlement price is the market's (closing-window VWAP or mid) or a staff
    # override: the volatility that price implies.
    IMPLIED = "implied"
    # Its latest settlement price is the model's: the volatility the daily settlement took from
    # its chain (its own earlier implied volatility, else its siblings' that day, else its
    # future's historical volatility or the default then).
    CHAIN = "chain"
    # Not settled with a volatility yet: its future's historical volatility now.
    HISTORICAL = "historical"
    # Neither, nor enough of the future's settlement prices: ``EXCHANGE_DEFAULT_VOLATILITY``.
    DEFAULT = "default"
    # Never returned by `option_volatility`: a calculator given a volatility reports it so.
    REQUESTED = "requested"


@dataclass(frozen=True)
class OptionVolatility:
    sigma: float  # Annualized.
    source: VolatilitySource


def option_volatility(
    option: Instrument, latest: SettlementPrice | None = None
) -> OptionVolatility:
    """The volatility the exchange values ``option`` at (the option chain, margin, the option
    quote and the hedge), and where it comes from: its latest settlement's implied volatility
    (``latest`` when given, read otherwise); without one (an option not yet settled), its
    future's historical volatility (``selectors.volatility``); else the default."""
    if latest is None:
        latest = latest_settlements([option.pk]).get(option.pk)
    if latest is not None and latest.implied_volatility is not None:
        modelled = latest.source == SettlementPrice.Source.MODEL
        source = VolatilitySource.CHAIN if modelled else VolatilitySource.IMPLIED
        return OptionVolatility(float(latest.implied_volatility), source)
    return future_volatility(option.underlying_id)


def future_volatility(future_id: int | None) -> OptionVolatility:
    """The volatility of a future with no option valued on it (`option_volatility`'s rule past
    the option's own): its historical volatility (``selectors.volatility``), else the default
    (also for no future, ``None``)."""
    if future_id is not None:
        historical = historical_volatility(future_id)
        if historical is not None:
            return OptionVolatility(historical, VolatilitySource.HISTORICAL)
    return OptionVolatility(float(settings.EXCHANGE_DEFAULT_VOLATILITY), VolatilitySource.DEFAULT)


def volatility_of(option: Instrument, latest: SettlementPrice | None = None) -> float:
    """`option_volatility`'s volatility alone."""
    return option_volatility(option, latest).sigma


def order_margin_per_contract(instrument: Instrument, side: str, price: Decimal) -> int:
    """Initial margin for one opening contract of an order, micro-USD (see the docstring)."""
    hours = instrument.gpu_hours_per_contract
    if instrument.kind == Instrument.Kind.FUTURE:
        return _future_margin(
            price,
            side == Side.BUY,
            hours,
            settings.EXCHANGE_DEFAULT_VOLATILITY,
            settings.EXCHANGE_PRICE_SCAN,
            settings.EXCHANGE_VOLATILITY_SCAN,
            settings.EXCHANGE_SHORT_OPTION_MINIMUM,
            settings.EXCHANGE_RISK_FREE_RATE,
        )
    if instrument.kind == Instrument.Kind.OPTION and side == Side.SELL:
        assert instrument.underlying is not None and instrument.strike is not None
        forward_price = mark_price(instrument.underlying) or instrument.strike
        forward = float(forward_price)
        position = Position(
            -1,
            hours,
            strike=float(instrument.strike),
            call=instrument.option_type == Instrument.OptionType.CALL,
            expiry_years=years_to_expiry(instrument, timezone.now().date()),
        )
        result = scenario_margin(
            [position], forward, volatility_of(instrument), scan_parameters(forward, hours)
        )
        return usd_to_micros_up(result.margin)
    return 0


@lru_cache(maxsize=8192)
def _future_margin(price: Decimal, buy: bool, hours: int, *settings_in_force: object) -> int:
    """A future's margin per contract: a function of its price, side and hours and of the risk
    settings, so a busy book's few prices are evaluated once per process (16 scenarios in numpy
    each time otherwise). The settings it reads are passed in only to be part of the cache key:
    a changed setting is a different entry."""
    forward = float(price)
    result = scenario_margin(
        [Position(1 if buy else -1, hours)],
        forward,
        float(settings.EXCHANGE_DEFAULT_VOLATILITY),
        scan_parameters(forward, hours),
    )
    return usd_to_micros_up(result.margin)


@dataclass(frozen=True)
class Requirement:
    """An account's initial margin at settlement prices, micro-USD, and its share per symbol."""

    total: int
    by_symbol: dict[str, int]


def _position(instrument: Instrument, contracts: int, on: date) -> Position:
    if instrument.kind == Instrument.Kind.FUTURE:
        return Position(contracts, instrument.gpu_hours_per_contract)
    assert instrument.strike is not None
    return Position(
        contracts,
        instrument.gpu_hours_per_contract,
        strike=float(instrument.strike),
        call=instrument.option_type == Instrument.OptionType.CALL,
        expiry_years=years_to_expiry(instrument, on),
    )


def _option_value(instrument: Instrument, contracts: int, price: Decimal) -> int:
    """Net option value at ``price``, micro-USD: long options positive, short negative."""
    if instrument.kind != Instrument.Kind.OPTION:
        return 0
    return int(price * contracts * instrument.gpu_hours_per_contract * MICROS_PER_USD)


def _requirement(result: MarginResult, net_option_value: int) -> int:
    """SPAN's rule for premium-style options: the larger of scan risk and the short option
    minimum, less the net option value (a long option's value covers its own risk; a short
    option's buy-back value is added), never below zero."""
    risk = max(usd_to_micros_up(result.scan_risk), usd_to_micros_up(result.short_option_minimum))
    return max(risk - net_option_value, 0)


def account_requirement(
    positions: dict[Instrument, int], prices: dict[int, Decimal], on: date
) -> Requirement:
    """The end-of-day initial margin of ``positions`` (instrument: contracts, long positive)
    at ``prices`` (instrument id: settlement price). Futures and options only; every
    instrument and each option's underlying must have a price.

    Per underlying: ``max(max(scan risk, short option minimum) - net option value, 0)``;
    across underlyings, less the offset credits of ``pricing.margin.portfolio_margin``.
    """
    groups: dict[Instrument, list[tuple[Instrument, int]]] = defaultdict(list)
    for instrument, contracts in positions.items():
        if contracts == 0:
            continue
        underlying = instrument.underlying if instrument.kind == Instrument.Kind.OPTION else None
        groups[underlying or instrument].append((instrument, contracts))
    if not groups:
        return Requirement(0, {})
    results: dict[str, MarginResult] = {}
    standalone: dict[str, int] = {}
    total = 0
    for future, members in groups.items():
        forward = float(prices[future.pk])
        if forward <= 0:
            raise ValueError(f"{future.symbol} has no positive settlement price.")
        hours = future.gpu_hours_per_contract
        parameters = scan_parameters(forward, hours)
        sigma = _group_volatility(members)
        result = results[future.symbol] = scenario_margin(
            [_position(instrument, contracts, on) for instrument, contracts in members],
            forward,
            sigma,
            parameters,
        )
        values = {
            instrument.symbol: _option_value(instrument, contracts, prices[instrument.pk])
            for instrument, contracts in members
        }
        total += _requirement(result, sum(values.values()))
        for instrument, contracts in members:
            alone = scenario_margin(
                [_position(instrument, contracts, on)], forward, sigma, parameters
            )
            standalone[instrument.symbol] = _requirement(alone, values[instrument.symbol])
    credits = _credit_rates(list(groups))
    offset = usd_to_micros_up(sum(r.margin for r in results.values())) - usd_to_micros_up(
        portfolio_margin(results, credits)
    )
    total = max(total - max(offset, 0), 0)
    return Requirement(total, _shares(total, standalone))


def _group_volatility(members: list[tuple[Instrument, int]]) -> float:
    """The volatility an underlying's options are scanned at: the mean of their latest implied
    volatilities (the default without options or history)."""
    options = [instrument for instrument, _ in members if instrument.kind == Instrument.Kind.OPTION]
    if not options:
        return float(settings.EXCHANGE_DEFAULT_VOLATILITY)
    latest = latest_settlements([option.pk for option in options])
    return sum(volatility_of(option, latest.get(option.pk)) for option in options) / len(options)


def _credit_rates(futures: list[Instrument]) -> dict[frozenset[str], float]:
    adjacent = float(settings.EXCHANGE_CREDIT_ADJACENT_MONTHS)
    regions = float(settings.EXCHANGE_CREDIT_SAME_SKU_OTHER_REGION)
    rates: dict[frozenset[str], float] = {}
    for index, first in enumerate(futures):
        for second in futures[index + 1 :]:
            if first.sku_id != second.sku_id:
                continue
            months_apart = abs(
                (first.delivery_start.year - second.delivery_start.year) * 12
                + first.delivery_start.month
                - second.delivery_start.month
            )
            pair = frozenset({first.symbol, second.symbol})
            if first.region_id == second.region_id and months_apart == 1:
                rates[pair] = adjacent
            elif first.region_id != second.region_id and months_apart == 0:
                rates[pair] = regions
    return rates


def _shares(total: int, standalone: dict[str, int]) -> dict[str, int]:
    """``total`` shared in proportion to ``standalone``: rounded down, the rest to the largest."""
    weight = sum(standalone.values())
    if weight == 0:
        return {symbol: 0 for symbol in standalone}
    shares = {symbol: total * value // weight for symbol, value in standalone.items()}
    largest = max(standalone, key=lambda symbol: (standalone[symbol], symbol))
    shares[largest] += total - sum(shares.values())
    return shares


def option_value(
    option: Instrument, forward: Decimal, sigma: float, on: date
) -> tuple[Decimal, float]:
    """Black-76 value of ``option`` on the trading day ``on``; from its last trading day, the
    intrinsic value. Either to the nearest tick of the option, half to even, as the futures'
    settlement prices are set (``settlement_prices.on_tick``): it is the option's model
    settlement price, and the forward's tick need not be a multiple of the option's (a future
    on 0.005 at 2.605 leaves a call struck 2.50 0.105 in the money, off a 0.01 tick)."""
    assert option.strike is not None
    call = option.option_type == Instrument.OptionType.CALL
    if on >= option.last_trading_day:
        value = (
            max(forward - option.strike, Decimal(0))
            if call
            else max(option.strike - forward, Decimal(0))
        )
    else:
        raw = black76.price(
            float(forward),
            float(option.strike),
            years_to_expiry(option, on),
            float(settings.EXCHANGE_RISK_FREE_RATE),
            sigma,
            call,
        )
        value = Decimal(repr(raw))
    tick = option.tick_size
    ticks = (value / tick).to_integral_value(rounding=ROUND_HALF_EVEN)
    return ticks * tick, sigma
