"""Volatility estimates from a series of settlement prices.

Units: prices in $/GPU-hr (any positive unit works: only ratios enter), one price per period,
``periods_per_year`` periods in a year (365 for daily settlements of a market that settles
every calendar day, 252 for trading days). Volatilities are annualized, as fractions per year
(0.60 is 60%), the unit of ``sigma`` in `pricing.black76`.

Both estimators use close-to-close log returns ``r_i = ln(P_i / P_{i-1})``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

RISKMETRICS_DAILY_LAMBDA = 0.94
DAILY_PERIODS_PER_YEAR = 365


class InvalidPrices(ValueError):
    """The prices are not a one-dimensional series of positive, finite numbers."""


class TooFewPrices(ValueError):
    """The series is too short for the estimator (3 prices for historical, 2 for EWMA)."""


class InvalidParameter(ValueError):
    """A parameter is out of range: periods_per_year must be positive, lam in (0, 1)."""


def historical(prices: npt.ArrayLike, periods_per_year: float = DAILY_PERIODS_PER_YEAR) -> float:
    """Annualized close-to-close volatility: the sample standard deviation of log returns.

    ``sigma = std(r, ddof=1) * sqrt(periods_per_year)``. The sample mean is subtracted (ddof=1
    makes the variance unbiased), so a steady drift does not count as volatility.

    Parameters
    ----------
    prices : one-dimensional series, oldest first, $/GPU-hr; at least 3 positive finite prices
        (two returns are the fewest a sample standard deviation can use).
    periods_per_year : number of price intervals in a year; 365 for daily prices.

    Returns
    -------
    float
        Annualized volatility, per year.

    Raises
    ------
    InvalidPrices, TooFewPrices, InvalidParameter
        All `ValueError`.

    Examples
    --------
    >>> round(historical([100.0, 101.0, 100.0, 101.0], periods_per_year=365), 4)
    0.2195
    """
    returns = log_returns(prices, minimum_prices=3)
    scale = _checked_periods_per_year(periods_per_year)
    return float(np.std(returns, ddof=1)) * scale


def ewma(
    prices: npt.ArrayLike,
    lam: float = RISKMETRICS_DAILY_LAMBDA,
    periods_per_year: float = DAILY_PERIODS_PER_YEAR,
) -> float:
    """RiskMetrics EWMA volatility after the last price, annualized.

    The variance per period follows ``v_i = lam v_{i-1} + (1 - lam) r_i^2`` with zero-mean
    returns (RiskMetrics, 1996). Seed: ``v_1 = r_1^2``, the first squared return. The result is
    then a weighted mean of squared returns whose weights sum to exactly one,
    ``v_n = lam^(n-1) r_1^2 + sum_{i=2..n} (1 - lam) lam^(n-i) r_i^2``, so it is unbiased for
    any length of series, and a short series is not pulled toward an arbitrary prior (a seed of
    zero would understate the variance by ``lam^(n-1)``). On a long series the seed's weight
    vanishes (0.94^100 is 0.2%).

    Parameters
    ----------
    prices : one-dimensional series, oldest first, $/GPU-hr; at least 2 positive finite prices.
    lam : decay factor per period, in (0, 1); 0.94 is RiskMetrics' daily value.
    periods_per_year : number of price intervals in a year; 365 for daily prices.

    Returns
    -------
    float
        Annualized volatility after the last price, per year: ``sqrt(v_n periods_per_year)``.

    Raises
    ------
    InvalidPrices, TooFewPrices, InvalidParameter
        All `ValueError`.

    Examples
    --------
    Constant absolute returns of 1% a day give 1% a day, whatever lam:

    >>> prices = 100.0 * np.exp(0.01 * np.array([0, 1, 0, 1, 2]))
    >>> round(ewma(prices, lam=0.94, periods_per_year=1), 12)
    0.01
    """
    returns = log_returns(prices, minimum_prices=2)
    scale = _checked_periods_per_year(periods_per_year)
    if not 0.0 < lam < 1.0:
        raise InvalidParameter(f"lam must be in (0, 1), not {lam!r}")
    count = returns.size
    # Weight of r_i in v_n: (1 - lam) lam^(n-i), and lam^(n-1) for the seed r_1. Computing the
    # powers directly avoids a Python loop; lam^k underflows harmlessly to 0 on long series.
    weights = (1.0 - lam) * np.power(lam, np.arange(count - 1, -1, -1, dtype=np.float64))
    weights[0] = lam ** (count - 1)
    variance = float(np.dot(weights, returns * returns))
    return math.sqrt(variance) * scale


def log_returns(prices: npt.ArrayLike, *, minimum_prices: int) -> FloatArray:
    """Log returns of a price series: one-dimensional, at least ``minimum_prices`` prices, all
    positive and finite (else a named ``ValueError``)."""
    try:
        series = np.asarray(prices, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidPrices("prices must be numbers") from error
    if series.ndim != 1:
        raise InvalidPrices(f"prices must be one-dimensional, not {series.ndim}-dimensional")
    if series.size < minimum_prices:
        raise TooFewPrices(f"need at least {minimum_prices} prices, got {series.size}")
    if not np.all((series > 0.0) & (series < math.inf)):
        raise InvalidPrices("prices must be positive and finite")
    returns: FloatArray = np.diff(np.log(series))
    return returns


def _checked_periods_per_year(periods_per_year: float) -> float:
    """sqrt(periods_per_year), the factor from per-period to annual volatility."""
    if not 0.0 < periods_per_year < math.inf:
        raise InvalidParameter(f"periods_per_year must be positive, not {periods_per_year!r}")
    return math.sqrt(periods_per_year)
