"""Hedging a planned need for GPU-hours, or a planned capacity to sell, with futures and
options.

Units: prices in $/GPU-hr, quantities in GPUs and GPU-hours, times in years, costs and
revenues in USD.

A planned need (``side`` buy) or capacity (``side`` sell) is ``gpus`` GPUs for every hour of
consecutive delivery months, each month with its forward price (from ``pricing.curve``) and its
time to delivery. Left unhedged, the buyer pays (the seller earns) the month's price when the
month comes; the model for it is lognormal around the forward (a martingale: the forward is the
expected price), each month at its own volatility ``sigma`` (one for all, or one per month: the
market may expect one month to move more than another), driven by one Brownian motion so that
nearby months move together.

Strategies compared for a buyer, all for the whole need:
- ``none``: pay the price of each month;
- ``futures``: buy ``hedge_ratio`` of each month's hours on the monthly future at its forward;
- ``cap``: buy a call on each month's future, struck ``cap_moneyness`` x forward or at the
  listed strike given in ``ListedOptions``;
- ``collar``: the same calls, paid for in part by selling puts struck ``floor_moneyness`` x
  forward (or at the listed strike).

For a seller, the mirror image, for the whole capacity:
- ``none``: earn the price of each month;
- ``futures``: sell the strip (the same contracts);
- ``floor``: buy a put on each month's future, struck ``floor_moneyness`` x forward (or at the
  listed strike);
- ``collar``: the same puts, paid for in part by selling calls struck ``cap_moneyness`` x
  forward (or at the listed strike), which give away the rise above them.

The option a side buys is its protective leg (a buyer's calls, a seller's puts), the one it
sells in the collar its financing leg; one formula serves both sides (`recommend`).

An option expires before its month is delivered (``years_to_expiry`` of each option, at most
the month's time to delivery). A call exercised at expiry (the month's forward then above the
strike) buys the future at the strike, which fixes the month's cost per GPU-hour at the strike;
otherwise the month costs its price at delivery, which may by then be above the strike. A put
sold in the collar is exercised against the buyer when the forward at its expiry is below its
strike: the month then costs the strike. For a seller the same rule fixes the month's revenue:
at a bought put's strike when the forward at its expiry is below it, at a sold call's strike
when it is above. The forward at an expiry comes from the same Brownian
motion as the prices at delivery (a Brownian bridge between the delivery times, so the prices
at delivery do not change with the expiries). A month with no option (``None`` in
``ListedOptions``) is left unhedged by that strategy's leg.

Each reports the expected cost and the 95% worst case (the 95th percentile of the simulated cost,
seeded so results repeat); for a seller the expected revenue and its 95% worst case, the 5th
percentile of the simulated revenue (a seller's bad tail is low prices). Premiums are Black-76
values at each option's time to expiry and its own volatility where ``ListedOptions`` gives one (the
market's price of that option), else its month's volatility, carried to delivery at ``rate``. The
prices are simulated at each month's volatility whatever the options' own: an option's volatility
sets what it costs, the simulated market whether it is exercised.

``minimum_variance_hedge_ratio`` gives the futures per unit of need when the need (one SKU and
region) is hedged with another's futures: ``correlation x sigma_need / sigma_hedge`` from the
two series' log returns.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from pricing import black76
from pricing.volatility import log_returns

PATHS_DEFAULT = 20_000
DISTRIBUTION_BINS = 30  # Of the simulated costs, for drawing them.
WORST_CASE_QUANTILE = 0.95  # Of a buyer's costs: the high tail.
WORST_CASE_QUANTILE_REVENUE = 0.05  # Of a seller's revenues: the low tail.
# Above this annualized volatility the simulation says nothing: over months of delivery almost
# every path falls to 0 while a handful carry the expected price, so the mean and percentiles of
# 20,000 paths are noise, and far above it ``sigma**2`` overflows. 500% a year is far beyond any
# GPU market; a month is simulated at no more.
VOLATILITY_MAX = 5.0


class Side(StrEnum):
    """Who hedges: a buyer a planned need (its cost), a seller a planned capacity (its
    revenue)."""

    BUY = "buy"
    SELL = "sell"


# The strategies of each side, in the order they are shown: no hedge, the strip, the option
# the side buys alone, then the collar.
STRATEGIES = {
    Side.BUY: ("none", "futures", "cap", "collar"),
    Side.SELL: ("none", "futures", "floor", "collar"),
}


class HedgeInputError(ValueError):
    pass


@dataclass(frozen=True)
class PlannedNeed:
    gpus: int
    hours: tuple[int, ...]  # GPU-hours per GPU in each delivery month.
    forwards: tuple[float, ...]  # $/GPU-hr, each month's forward price.
    years_to_delivery: tuple[float, ...]  # Years from now to the middle of each month.

    def __post_init__(self) -> None:
        months = len(self.hours)
        if self.gpus < 1 or months == 0:
            raise HedgeInputError("A need has at least one GPU and one month.")
        if not len(self.forwards) == len(self.years_to_delivery) == months:
            raise HedgeInputError("Hours, forwards and times need one value per month.")
        if min(self.hours) < 1 or min(self.forwards) <= 0 or min(self.years_to_delivery) <= 0:
            raise HedgeInputError("Hours, forwards and times must be positive.")
        if list(self.years_to_delivery) != sorted(self.years_to_delivery):
            raise HedgeInputError("Months must be in delivery order.")


@dataclass(frozen=True)
class ListedOptions:
    """The options that carry out the cap and the collar, one entry per month of the need:
    strikes in $/GPU-hr and times to expiry in years from now, None where the month has no
    option of that type (its leg is then left out). Each option's annualized volatility, the
    one its value is taken at, may be given too (None for the month: the simulation's)."""

    call_strikes: tuple[float | None, ...]
    call_years_to_expiry: tuple[float | None, ...]
    put_strikes: tuple[float | None, ...]
    put_years_to_expiry: tuple[float | None, ...]
    call_volatilities: tuple[float | None, ...] | None = None
    put_volatilities: tuple[float | None, ...] | None = None

    def check(self, need: PlannedNeed) -> None:
        months = len(need.hours)
        options = (
            (self.call_strikes, self.call_years_to_expiry),
            (self.put_strikes, self.put_years_to_expiry),
        )
        for strikes, years in options:
            if not len(strikes) == len(years) == months:
                raise HedgeInputError("Listed options need one entry (or None) per month.")
            for strike, expiry, delivery in zip(
                strikes, years, need.years_to_delivery, strict=True
            ):
                if (strike is None) != (expiry is None):
                    raise HedgeInputError("An option has both a strike and an expiry.")
                if strike is None or expiry is None:
                    continue
                if not (strike > 0 and 0 < expiry <= delivery):
                    raise HedgeInputError(
                        "Strikes are positive; options expire after now, by their delivery."
                    )
        for strikes, sigmas in (
            (self.call_strikes, self.call_volatilities),
            (self.put_strikes, self.put_volatilities),
        ):
            if sigmas is None:
                continue
            if len(sigmas) != months:
                raise HedgeInputError("Option volatilities need one entry (or None) per month.")
            for strike, sigma in zip(strikes, sigmas, strict=True):
                if sigma is not None and (strike is None or not 0 <= sigma < math.inf):
                    raise HedgeInputError(
                        "An option's volatility is finite and not negative, given for an option."
                    )


@dataclass(frozen=True)
class StrategyOutcome:
    """A strategy's cost of a need (side buy) or revenue of a capacity (side sell)."""

    expected: float  # USD.
    worst_case: float  # USD: the 95th percentile of costs, the 5th of revenues.
    premium: float  # USD paid (positive) or received (negative) now for options.


@dataclass(frozen=True)
class CostDistribution:
    """The simulated costs (or revenues) of each strategy counted in the same bins (USD edges,
    one more than the counts), so they can be drawn side by side."""

    edges: tuple[float, ...]
    counts: dict[str, tuple[int, ...]]  # Keyed like ``HedgeRecommendation.outcomes``.


@dataclass(frozen=True)
class HedgeRecommendation:
    futures_per_month: tuple[int, ...]  # Contracts to buy (or sell), 1 GPU for the month each.
    cap_strikes: tuple[float | None, ...]  # $/GPU-hr of the calls, per month (None: no call).
    floor_strikes: tuple[float | None, ...]  # $/GPU-hr of the puts, per month (None: none).
    call_values: tuple[float | None, ...]  # $/GPU-hr, Black-76 value of each month's call.
    put_values: tuple[float | None, ...]  # $/GPU-hr, Black-76 value of each month's put.
    call_premiums: tuple[float | None, ...]  # USD now for each month's calls (the need's hours).
    put_premiums: tuple[float | None, ...]  # USD now for each month's puts.
    outcomes: dict[str, StrategyOutcome]  # Keyed by ``STRATEGIES[side]``.
    distribution: CostDistribution
    side: Side = Side.BUY

    @property
    def costs(self) -> dict[str, StrategyOutcome]:
        """A buyer's costs: none, futures, cap, collar."""
        assert self.side is Side.BUY, "a seller's outcomes are revenues"
        return self.outcomes

    @property
    def revenues(self) -> dict[str, StrategyOutcome]:
        """A seller's revenues: none, futures, floor, collar."""
        assert self.side is Side.SELL, "a buyer's outcomes are costs"
        return self.outcomes


Volatilities = float | Sequence[float] | NDArray[np.float64]


def month_sigmas(need: PlannedNeed, sigma: Volatilities) -> NDArray[np.float64]:
    """``sigma`` as one annualized volatility per month of ``need``: a single one for every
    month, else one per month as given.

    Raises
    ------
    HedgeInputError
        Not one per month, or one negative, not finite or above ``VOLATILITY_MAX``.

    Examples
    --------
    >>> need = PlannedNeed(gpus=1, hours=(720, 744), forwards=(2.0, 2.1),
    ...                    years_to_delivery=(0.5, 0.6))
    >>> month_sigmas(need, 0.6).tolist(), month_sigmas(need, (0.35, 0.6)).tolist()
    ([0.6, 0.6], [0.35, 0.6])
    """
    months = len(need.hours)
    sigmas = np.asarray(sigma, dtype=np.float64)
    if sigmas.ndim == 0:
        sigmas = np.full(months, float(sigmas))
    if sigmas.shape != (months,):
        raise HedgeInputError("Volatility: one for every month, or one per month.")
    if not np.all(np.isfinite(sigmas) & (sigmas >= 0) & (sigmas <= VOLATILITY_MAX)):
        raise HedgeInputError(f"Volatilities are from 0 to {VOLATILITY_MAX:g}, a year.")
    return sigmas


def simulate_prices(
    need: PlannedNeed, sigma: Volatilities, paths: int = PATHS_DEFAULT, seed: int = 1
) -> NDArray[np.float64]:
    """Simulated prices ($/GPU-hr) at delivery, shape (paths, months); ``sigma`` is one
    annualized volatility for every month or one per month (`month_sigmas`)."""
    sigmas = month_sigmas(need, sigma)
    brownian, _ = _simulate_brownian(need, paths, seed, ())
    return _prices(need, sigmas, brownian, need.years_to_delivery)


def _prices(
    need: PlannedNeed,
    sigmas: NDArray[np.float64],
    brownian: NDArray[np.float64],
    times: Sequence[float],
) -> NDArray[np.float64]:
    """Each month's forward at ``times`` (one per month) given the Brownian motion there, at
    each month's volatility (``sigmas``)."""
    forwards = np.asarray(need.forwards, dtype=np.float64)
    at = np.asarray(times, dtype=np.float64)
    prices: NDArray[np.float64] = forwards * np.exp(sigmas * brownian - 0.5 * sigmas**2 * at)
    return prices


def _simulate_brownian(
    need: PlannedNeed, paths: int, seed: int, extra_times: Sequence[float]
) -> tuple[NDArray[np.float64], dict[float, NDArray[np.float64]]]:
    """The Brownian motion at each month's delivery time, shape (paths, months), and at each
    of ``extra_times`` (a column of paths each).

    The delivery times are drawn first, as increments, so they are the same whatever the extra
    times; each extra time is then drawn from the bridge between its known neighbours (the
    motion is Markov: the nearest known times on each side are all that matters).
    """
    if paths < 100:
        raise HedgeInputError("Use at least 100 paths.")
    rng = np.random.default_rng(seed)
    times = np.asarray(need.years_to_delivery, dtype=np.float64)
    steps = np.diff(times, prepend=0.0)
    brownian = np.cumsum(rng.standard_normal((paths, times.size)) * np.sqrt(steps), axis=1)
    known: dict[float, NDArray[np.float64]] = {0.0: np.zeros(paths)}
    for time, column in zip(times.tolist(), brownian.T, strict=True):
        known[time] = column
    # At most one new time per option of the need: the loop is bounded by its months.
    for time in sorted(set(extra_times)):
        if time in known:
            continue
        earlier = max(t for t in known if t < time)
        later = min((t for t in known if t > time), default=None)
        if later is None:
            column = known[earlier] + np.sqrt(time - earlier) * rng.standard_normal(paths)
        else:
            weight = (time - earlier) / (later - earlier)
            spread = np.sqrt((time - earlier) * (later - time) / (later - earlier))
            mean = known[earlier] + weight * (known[later] - known[earlier])
            column = mean + spread * rng.standard_normal(paths)
        known[time] = column
    return brownian, known


def _summary(amounts: NDArray[np.float64], premium: float, side: Side) -> StrategyOutcome:
    quantile = WORST_CASE_QUANTILE if side is Side.BUY else WORST_CASE_QUANTILE_REVENUE
    return StrategyOutcome(
        expected=float(amounts.mean()),
        worst_case=float(np.quantile(amounts, quantile)),
        premium=premium,
    )


def recommend(
    need: PlannedNeed,
    sigma: Volatilities,
    *,
    rate: float = 0.0,
    hedge_ratio: float = 1.0,
    cap_moneyness: float = 1.10,
    floor_moneyness: float = 0.90,
    options: ListedOptions | None = None,
    futures_per_month: tuple[int, ...] | None = None,
    paths: int = PATHS_DEFAULT,
    seed: int = 1,
    side: Side = Side.BUY,
) -> HedgeRecommendation:
    """The futures strip and the option cap and collar for ``need``, with their costs; for a
    seller (``side`` sell, ``need`` its capacity) the strip sold, the put floor and the collar
    (the puts bought, calls sold), with their revenues.

    ``sigma`` is the annualized volatility the prices are simulated at: one for every month,
    or one per month (`month_sigmas`); an option is valued at its month's unless
    ``ListedOptions`` gives its own.

    Without ``options`` the calls are struck ``cap_moneyness`` x forward and the puts
    ``floor_moneyness`` x forward, every month, expiring at delivery; with them, each month's
    options are those given (see `ListedOptions`) and the moneyness is not used.

    Without ``futures_per_month`` the strip buys (or sells) ``hedge_ratio`` x ``gpus`` contracts (1
    GPU for the month each) of every month; with it, each month's given contracts (0: a month the
    strip cannot buy, left to its price) and ``hedge_ratio`` is not used.

    Examples
    --------
    >>> need = PlannedNeed(gpus=1, hours=(720,), forwards=(2.0,), years_to_delivery=(0.5,))
    >>> listed = ListedOptions((2.25,), (0.45,), (None,), (None,))
    >>> result = recommend(need, 0.6, options=listed)
    >>> result.cap_strikes, result.floor_strikes
    ((2.25,), (None,))
    >>> sale = recommend(need, 0.6, options=ListedOptions((None,), (None,), (1.75,), (0.45,)),
    ...                  side=Side.SELL)
    >>> sorted(sale.revenues), sale.floor_strikes
    (['collar', 'floor', 'futures', 'none'], (1.75,))
    """
    side = Side(side)
    if not 0.0 <= hedge_ratio <= 2.0:
        raise HedgeInputError("The hedge ratio is between 0 and 2.")
    if not (0.0 < floor_moneyness < 1.0 <= cap_moneyness):
        raise HedgeInputError("The floor is below the forward and the cap at or above it.")
    if options is None:
        options = ListedOptions(
            call_strikes=tuple(forward * cap_moneyness for forward in need.forwards),
            call_years_to_expiry=need.years_to_delivery,
            put_strikes=tuple(forward * floor_moneyness for forward in need.forwards),
            put_years_to_expiry=need.years_to_delivery,
        )
    options.check(need)
    sigmas = month_sigmas(need, sigma)
    if futures_per_month is None:
        futures_per_month = tuple(round(hedge_ratio * need.gpus) for _ in need.hours)
        ratios = np.full(len(need.hours), hedge_ratio, dtype=np.float64)
    else:
        if len(futures_per_month) != len(need.hours) or any(n < 0 for n in futures_per_month):
            raise HedgeInputError("Futures need a count, 0 or more, per month.")
        ratios = np.asarray(futures_per_month, dtype=np.float64) / need.gpus
    expiries = [
        expiry
        for expiry in (*options.call_years_to_expiry, *options.put_years_to_expiry)
        if expiry is not None
    ]
    brownian, known = _simulate_brownian(need, paths, seed, expiries)
    prices = _prices(need, sigmas, brownian, need.years_to_delivery)
    volume = need.gpus * np.asarray(need.hours, dtype=np.float64)  # GPU-hours per month.
    times = np.asarray(need.years_to_delivery, dtype=np.float64)
    carry = np.exp(rate * times)  # A premium paid now costs this much more at delivery.
    call = _Leg(
        need,
        sigmas,
        rate,
        (options.call_strikes, options.call_years_to_expiry, options.call_volatilities),
        True,
        known,
    )
    put = _Leg(
        need,
        sigmas,
        rate,
        (options.put_strikes, options.put_years_to_expiry, options.put_volatilities),
        False,
        known,
    )

    # The side's protective leg is the option it buys alone; the collar sells the other to pay
    # for it. An exercised option fixes its month at the strike (the holder of a call, or the
    # writer of a put, is left long the future at it; the other party short): that month then
    # costs a buyer, or earns a seller, the strike rather than its price at delivery.
    protective, financing = (call, put) if side is Side.BUY else (put, call)
    protective_premium = float((protective.values * carry) @ volume)
    financing_premium = float((financing.values * carry) @ volume)
    # A premium paid adds to a buyer's cost and takes from a seller's revenue.
    sign = 1.0 if side is Side.BUY else -1.0
    protected = prices - protective.exercised * (prices - protective.strikes)
    collared = protected - financing.exercised * (prices - financing.strikes)
    amounts = {
        "none": prices @ volume,
        "futures": (ratios * np.asarray(need.forwards) + (1.0 - ratios) * prices) @ volume,
        "protected": protected @ volume + sign * protective_premium,
        "collar": collared @ volume + sign * (protective_premium - financing_premium),
    }
    premiums = {
        "none": 0.0,
        "futures": 0.0,
        "protected": float(protective.values @ volume),
        "collar": float((protective.values - financing.values) @ volume),
    }
    names = dict(zip(amounts, STRATEGIES[side], strict=True))
    return HedgeRecommendation(
        futures_per_month=futures_per_month,
        cap_strikes=options.call_strikes,
        floor_strikes=options.put_strikes,
        call_values=call.per_month(call.values),
        put_values=put.per_month(put.values),
        call_premiums=call.per_month(call.values * volume),
        put_premiums=put.per_month(put.values * volume),
        outcomes={
            names[key]: _summary(values, premiums[key], side) for key, values in amounts.items()
        },
        distribution=cost_distribution({names[key]: values for key, values in amounts.items()}),
        side=side,
    )


class _Leg:
    """One option per month (or none), as arrays: strikes, Black-76 values (0 where there is no
    option) at each option's own volatility (else its month's, of ``sigmas``) and, per simulated
    path, whether each month's option is exercised (in the money at its expiry in the prices
    simulated at its month's volatility; never where there is no option)."""

    def __init__(
        self,
        need: PlannedNeed,
        sigmas: NDArray[np.float64],
        rate: float,
        options: tuple[
            tuple[float | None, ...], tuple[float | None, ...], tuple[float | None, ...] | None
        ],
        call: bool,
        brownian: dict[float, NDArray[np.float64]],
    ) -> None:
        strikes, years_to_expiry, volatilities = options
        self.listed = np.array([strike is not None for strike in strikes])
        forwards = np.asarray(need.forwards, dtype=np.float64)
        # Months without an option get a placeholder strike and expiry that value to nothing.
        self.strikes = np.array([strike or 1.0 for strike in strikes], dtype=np.float64)
        expiry = np.array([years or 0.0 for years in years_to_expiry], dtype=np.float64)
        own = volatilities or (None,) * len(strikes)
        valued_at = np.array(
            [
                month_sigma if own_sigma is None else own_sigma
                for month_sigma, own_sigma in zip(sigmas.tolist(), own, strict=True)
            ],
            dtype=np.float64,
        )
        values = np.asarray(
            black76.price(forwards, self.strikes, expiry, rate, valued_at, call), dtype=np.float64
        )
        self.values = np.where(self.listed, values, 0.0)
        paths = next(iter(brownian.values())).size
        self.exercised = np.zeros((paths, forwards.size), dtype=np.float64)
        for month, years in enumerate(years_to_expiry):
            if years is None:
                continue
            sigma = sigmas[month]
            forward_at_expiry = forwards[month] * np.exp(
                sigma * brownian[years] - 0.5 * sigma**2 * years
            )
            strike = self.strikes[month]
            in_the_money = forward_at_expiry > strike if call else forward_at_expiry < strike
            self.exercised[:, month] = in_the_money

    def per_month(self, values: NDArray[np.float64]) -> tuple[float | None, ...]:
        return tuple(
            float(value) if listed else None
            for value, listed in zip(values, self.listed, strict=True)
        )


def cost_distribution(
    costs: dict[str, NDArray[np.float64]], bins: int = DISTRIBUTION_BINS
) -> CostDistribution:
    """Each strategy's simulated costs counted in ``bins`` equal bins spanning all of them."""
    low = min(float(values.min()) for values in costs.values())
    high = max(float(values.max()) for values in costs.values())
    if high <= low:  # Every path costs the same (no volatility): one bin around it.
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    return CostDistribution(
        edges=tuple(float(edge) for edge in edges),
        counts={
            name: tuple(int(count) for count in np.histogram(values, bins=edges)[0])
            for name, values in costs.items()
        },
    )


def minimum_variance_hedge_ratio(
    need_prices: Sequence[float] | NDArray[np.float64],
    hedge_prices: Sequence[float] | NDArray[np.float64],
) -> tuple[float, float]:
    """(hedge ratio, correlation) from two aligned price series, by their log returns."""
    if np.shape(need_prices) != np.shape(hedge_prices):
        raise HedgeInputError("Two aligned price series are needed.")
    try:
        need_returns = log_returns(need_prices, minimum_prices=3)
        hedge_returns = log_returns(hedge_prices, minimum_prices=3)
    except ValueError as error:
        raise HedgeInputError(str(error)) from error
    hedge_std = hedge_returns.std(ddof=1)
    if hedge_std == 0:
        raise HedgeInputError("The hedge's prices never move.")
    correlation = float(np.corrcoef(need_returns, hedge_returns)[0, 1])
    ratio = correlation * float(need_returns.std(ddof=1)) / float(hedge_std)
    return ratio, correlation
