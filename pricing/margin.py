"""SPAN-like scenario margin for futures and options on GPU-hour futures.

Units: prices in $/GPU-hr, positions in contracts (long positive), ``gpu_hours`` per contract,
time to expiry in years, margins in USD.

One underlying (a futures contract of one SKU, region and delivery month) and the options on it
are valued together under the 16 risk scenarios of CME's SPAN:

- the underlying moves by 0, +-1/3, +-2/3 and +-3/3 of the *price scan range*, each with the
  volatility moved up and down by the *volatility scan range* (14 scenarios);
- two extreme moves of +-2 price scan ranges at unchanged volatility, of which only 35% of the
  loss counts (they stand for a deep out-of-the-money short option's tail risk).

The *scan risk* is the largest loss over the scenarios (0 if the portfolio gains in all). A
portfolio with short options also pays at least the *short option minimum* per short option
contract; the margin is the larger of the two.

Across underlyings (``portfolio_margin``) margins add up, less an *offset credit* for pairs of
underlyings whose positions hedge each other. The rule: for each pair with net deltas of
opposite sign, the credit is ``credit_rate x min(scan risk of each)``; pairs are taken in order
of decreasing credit and each underlying's scan risk is used by at most one pair, so a credit
never counts the same risk twice and the total never drops below the largest single margin.
Typical credit rates: adjacent delivery months of one SKU and region 50-75%, the same SKU in
two regions 30-50% (set them from the correlation of returns, see ``pricing.hedge``).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pricing import black76

SCENARIO_COUNT = 16
EXTREME_MOVE = 2.0
EXTREME_WEIGHT = 0.35


@dataclass(frozen=True)
class Position:
    """One line of a portfolio: a future (``strike`` None) or an option on the underlying."""

    quantity: int  # Contracts; long positive.
    gpu_hours: int  # GPU-hours per contract.
    strike: float | None = None  # $/GPU-hr; None for the future itself.
    call: bool = True
    expiry_years: float = 0.0  # Options: time to expiry.

    def __post_init__(self) -> None:
        if self.gpu_hours < 1:
            raise ValueError("A contract has at least one GPU-hour.")
        if self.strike is not None and not (self.strike > 0 and self.expiry_years > 0):
            raise ValueError("An option needs a positive strike and time to expiry.")

    @property
    def is_option(self) -> bool:
        return self.strike is not None


@dataclass(frozen=True)
class ScanParameters:
    """``price_scan``: fraction of the underlying's price; ``volatility_scan``: absolute
    change of annualized volatility; ``short_option_minimum``: USD per short option contract."""

    price_scan: float = 0.15
    volatility_scan: float = 0.10
    short_option_minimum: float = 0.0
    rate: float = 0.0  # Continuously compounded, per year: discounts option values.


@dataclass(frozen=True)
class MarginResult:
    margin: float  # USD: the larger of scan risk and the short option minimum.
    scan_risk: float  # USD: the largest scenario loss (weighted for the extremes).
    short_option_minimum: float  # USD.
    scenario_losses: NDArray[np.float64]  # USD, one per scenario (negative: a gain).
    delta: float  # Net delta of the portfolio, in GPU-hours of the underlying.


def scenarios(price_scan: float, volatility_scan: float) -> NDArray[np.float64]:
    """The 16 scenarios as rows (price move as a fraction of the price, volatility change,
    weight of the loss)."""
    rows = []
    for fraction in (0.0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1.0, -1.0):
        for volatility in (volatility_scan, -volatility_scan):
            rows.append((fraction * price_scan, volatility, 1.0))
    rows.append((EXTREME_MOVE * price_scan, 0.0, EXTREME_WEIGHT))
    rows.append((-EXTREME_MOVE * price_scan, 0.0, EXTREME_WEIGHT))
    table = np.array(rows, dtype=np.float64)
    assert table.shape == (SCENARIO_COUNT, 3)
    return table


def _values(
    positions: Sequence[Position],
    forward: NDArray[np.float64],
    sigma: NDArray[np.float64],
    rate: float,
) -> NDArray[np.float64]:
    """Portfolio value in USD for each (forward, sigma) pair."""
    total = np.zeros_like(forward)
    for position in positions:
        size = position.quantity * position.gpu_hours
        if position.strike is None:
            total += size * forward
        else:
            total += size * black76.price(
                forward, position.strike, position.expiry_years, rate, sigma, position.call
            )
    return total


def scenario_margin(
    positions: Sequence[Position],
    forward: float,
    sigma: float,
    parameters: ScanParameters = ScanParameters(),
) -> MarginResult:
    """The margin of ``positions`` on one underlying priced ``forward`` ($/GPU-hr) with
    annualized volatility ``sigma``."""
    if forward <= 0 or sigma < 0:
        raise ValueError("The forward must be positive and the volatility not negative.")
    if parameters.price_scan <= 0 or parameters.volatility_scan < 0:
        raise ValueError("The price scan must be positive and the volatility scan not negative.")
    table = scenarios(parameters.price_scan, parameters.volatility_scan)
    base = _values(positions, np.array([forward]), np.array([sigma]), parameters.rate)[0]
    moved = _values(
        positions,
        forward * (1.0 + table[:, 0]),
        np.maximum(sigma + table[:, 1], 0.0),  # A volatility scan below zero stops at zero.
        parameters.rate,
    )
    losses = (base - moved) * table[:, 2]
    scan_risk = max(float(losses.max()), 0.0)
    short_options = sum(-p.quantity for p in positions if p.is_option and p.quantity < 0)
    minimum = short_options * parameters.short_option_minimum
    delta = 0.0
    for position in positions:
        size = position.quantity * position.gpu_hours
        if position.strike is None:
            delta += size
        else:
            greeks = black76.greeks(
                forward,
                position.strike,
                position.expiry_years,
                parameters.rate,
                sigma,
                position.call,
            )
            delta += size * greeks.delta
    return MarginResult(
        margin=max(scan_risk, minimum),
        scan_risk=scan_risk,
        short_option_minimum=minimum,
        scenario_losses=losses,
        delta=delta,
    )


def portfolio_margin(
    margins: dict[str, MarginResult], credit_rates: dict[frozenset[str], float]
) -> float:
    """Total USD margin across underlyings with the offset rule of the module docstring.

    ``credit_rates`` maps a pair of underlying names to its credit rate (0 to 1); pairs not
    listed get no credit.
    """
    credits = []
    for pair, rate in credit_rates.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"Credit rate {rate} is outside 0..1.")
        first, second = sorted(pair)
        if first not in margins or second not in margins:
            continue
        a, b = margins[first], margins[second]
        if a.delta * b.delta < 0:
            credits.append((rate * min(a.scan_risk, b.scan_risk), first, second))
    total = sum(result.margin for result in margins.values())
    used: set[str] = set()
    for credit, first, second in sorted(credits, reverse=True):
        if first in used or second in used:
            continue
        used |= {first, second}
        total -= credit
    return total
