"""Hedging a planned need for GPU-hours with futures and options.

Units: prices in $/GPU-hr, quantities in GPUs and GPU-hours, times in years, costs in USD.

A planned need is ``gpus`` GPUs for every hour of consecutive delivery months, each month with
its forward price (from ``pricing.curve``) and its time to delivery. Left unhedged, the buyer
pays the month's price when the month comes; the model for it is lognormal around the forward
(a martingale: the forward is the expected price), driven by one Brownian motion so that
nearby months move together.

Strategies compared, all for the whole need:
- ``none``: pay the price of each month;
- ``futures``: buy ``hedge_ratio`` of each month's hours on the monthly future at its forward;
- ``cap``: buy calls struck ``cap_moneyness`` x forward: the cost per GPU-hour never exceeds
  the strike, plus the premium paid now;
- ``collar``: the same calls, paid for in part by selling puts struck ``floor_moneyness`` x
  forward: the cost per GPU-hour stays between the two strikes.

Each reports the expected cost and the 95% worst case (the 95th percentile of the simulated
cost, seeded so results repeat). Premiums are Black-76 values at the given volatility, carried
to delivery at ``rate``.

``minimum_variance_hedge_ratio`` gives the futures per unit of need when the need (one SKU and
region) is hedged with another's futures: ``correlation x sigma_need / sigma_hedge`` from the
two series' log returns.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pricing import black76
from pricing.volatility import log_returns

PATHS_DEFAULT = 20_000
DISTRIBUTION_BINS = 30  # Of the simulated costs, for drawing them.
WORST_CASE_QUANTILE = 0.95


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
class StrategyCost:
    expected: float  # USD.
    worst_case: float  # USD, 95th percentile.
    premium: float  # USD paid (positive) or received (negative) now for options.


@dataclass(frozen=True)
class CostDistribution:
    """The simulated costs of each strategy counted in the same bins (USD edges, one more
    than the counts), so they can be drawn side by side."""

    edges: tuple[float, ...]
    counts: dict[str, tuple[int, ...]]  # Keyed like ``HedgeRecommendation.costs``.


@dataclass(frozen=True)
class HedgeRecommendation:
    futures_per_month: tuple[int, ...]  # Contracts to buy (1 GPU for the month each).
    cap_strikes: tuple[float, ...]  # $/GPU-hr of the calls, per month.
    floor_strikes: tuple[float, ...]  # $/GPU-hr of the puts sold in the collar, per month.
    costs: dict[str, StrategyCost]  # Keyed none, futures, cap, collar.
    distribution: CostDistribution


def simulate_prices(
    need: PlannedNeed, sigma: float, paths: int = PATHS_DEFAULT, seed: int = 1
) -> NDArray[np.float64]:
    """Simulated prices ($/GPU-hr) at delivery, shape (paths, months)."""
    if sigma < 0 or paths < 100:
        raise HedgeInputError("Volatility must not be negative; use at least 100 paths.")
    rng = np.random.default_rng(seed)
    times = np.asarray(need.years_to_delivery, dtype=np.float64)
    steps = np.diff(times, prepend=0.0)
    brownian = np.cumsum(rng.standard_normal((paths, times.size)) * np.sqrt(steps), axis=1)
    forwards = np.asarray(need.forwards, dtype=np.float64)
    prices: NDArray[np.float64] = forwards * np.exp(sigma * brownian - 0.5 * sigma**2 * times)
    return prices


def _summary(costs: NDArray[np.float64], premium: float) -> StrategyCost:
    return StrategyCost(
        expected=float(costs.mean()),
        worst_case=float(np.quantile(costs, WORST_CASE_QUANTILE)),
        premium=premium,
    )


def recommend(
    need: PlannedNeed,
    sigma: float,
    *,
    rate: float = 0.0,
    hedge_ratio: float = 1.0,
    cap_moneyness: float = 1.10,
    floor_moneyness: float = 0.90,
    paths: int = PATHS_DEFAULT,
    seed: int = 1,
) -> HedgeRecommendation:
    """The futures strip and the option cap and collar for ``need``, with their costs."""
    if not 0.0 <= hedge_ratio <= 2.0:
        raise HedgeInputError("The hedge ratio is between 0 and 2.")
    if not (0.0 < floor_moneyness < 1.0 <= cap_moneyness):
        raise HedgeInputError("The floor is below the forward and the cap at or above it.")
    prices = simulate_prices(need, sigma, paths, seed)
    volume = need.gpus * np.asarray(need.hours, dtype=np.float64)  # GPU-hours per month.
    forwards = np.asarray(need.forwards, dtype=np.float64)
    times = np.asarray(need.years_to_delivery, dtype=np.float64)
    carry = np.exp(rate * times)  # A premium paid now costs this much more at delivery.
    caps = forwards * cap_moneyness
    floors = forwards * floor_moneyness
    call = np.asarray(black76.price(forwards, caps, times, rate, sigma, True), dtype=np.float64)
    put = np.asarray(black76.price(forwards, floors, times, rate, sigma, False), dtype=np.float64)

    unhedged = prices @ volume
    hedged = (hedge_ratio * forwards + (1.0 - hedge_ratio) * prices) @ volume
    call_premium = float((call * carry) @ volume)
    put_premium = float((put * carry) @ volume)
    capped = np.minimum(prices, caps) @ volume + call_premium
    collared = np.clip(prices, floors, caps) @ volume + call_premium - put_premium
    costs = {
        "none": _summary(unhedged, 0.0),
        "futures": _summary(hedged, 0.0),
        "cap": _summary(capped, float(call @ volume)),
        "collar": _summary(collared, float((call - put) @ volume)),
    }
    return HedgeRecommendation(
        futures_per_month=tuple(round(hedge_ratio * need.gpus) for _ in need.hours),
        cap_strikes=tuple(float(value) for value in caps),
        floor_strikes=tuple(float(value) for value in floors),
        costs=costs,
        distribution=cost_distribution(
            {"none": unhedged, "futures": hedged, "cap": capped, "collar": collared}
        ),
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
