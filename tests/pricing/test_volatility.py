"""Historical and EWMA volatility from settlement prices ($/GPU-hr; annualized sigma)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing import volatility
from pricing.volatility import (
    InvalidParameter,
    InvalidPrices,
    TooFewPrices,
    ewma,
    historical,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)
DAYS_PER_YEAR = 365


def geometric_brownian_motion(
    sigma: float, drift: float, days: int, paths: int, seed: int
) -> np.ndarray:
    """Daily prices starting at $2.00/GPU-hr, shape (paths, days + 1); sigma and drift per year."""
    generator = np.random.default_rng(seed)
    step = 1.0 / DAYS_PER_YEAR
    returns = (drift - 0.5 * sigma**2) * step + sigma * math.sqrt(step) * generator.standard_normal(
        (paths, days)
    )
    log_prices = np.concatenate([np.zeros((paths, 1)), np.cumsum(returns, axis=1)], axis=1)
    return 2.0 * np.exp(log_prices)


def test_historical_recovers_the_volatility_of_a_seeded_series() -> None:
    # given 20,000 daily prices of a GBM with sigma = 80% a year and a strong drift
    sigma, days = 0.8, 20_000
    prices = geometric_brownian_motion(sigma, drift=0.3, days=days, paths=1, seed=42)[0]
    # when
    estimate = historical(prices, periods_per_year=DAYS_PER_YEAR)
    # then within 4 standard errors: for normal returns the sample standard deviation has a
    # relative standard error of 1 / sqrt(2 (n - 1)), 0.5% here, so the band is 2%; a
    # different seed would fail with probability about 6e-5. The drift does not count.
    standard_error = sigma / math.sqrt(2 * (days - 1))
    assert abs(estimate - sigma) <= 4 * standard_error


def test_historical_by_hand() -> None:
    # given returns +a, -a, +a with a = ln(1.01): mean a/3, squared deviations
    # (4 + 16 + 4)/9 a^2, sample variance (24/9 a^2) / 2 = 4/3 a^2
    a = math.log(1.01)
    # when
    estimate = historical([100.0, 101.0, 100.0, 101.0], periods_per_year=252)
    # then
    assert estimate == pytest.approx(math.sqrt(4.0 / 3.0) * a * math.sqrt(252), rel=1e-12)


@PROPERTY_SETTINGS
@given(
    log_prices=st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=40),
    scale=st.floats(1e-3, 1e3),
)
def test_historical_ignores_units_and_constant_drift(log_prices: list[float], scale: float) -> None:
    # given any series, the same in other units, and the same with a steady trend added
    prices = np.exp(np.array(log_prices))
    trend = np.exp(0.01 * np.arange(len(log_prices)))
    # when, then: only the dispersion of log returns matters
    base = historical(prices)
    assert historical(scale * prices) == pytest.approx(base, rel=1e-9, abs=1e-12)
    assert historical(prices * trend) == pytest.approx(base, rel=1e-9, abs=1e-12)


def test_ewma_by_hand() -> None:
    # given settlements 100, 102, 99, 101: log returns
    #   r1 = ln(102/100) = 0.019802627, r2 = ln(99/102) = -0.029852963,
    #   r3 = ln(101/99) = 0.020000667, so r1^2 = 3.921440e-4, r2^2 = 8.911994e-4,
    #   r3^2 = 4.000267e-4; seeded with v1 = r1^2, then v_i = 0.94 v_{i-1} + 0.06 r_i^2:
    #   v3 = 0.94^2 r1^2 + 0.06 * 0.94 r2^2 + 0.06 r3^2
    #      = 3.464985e-4 + 5.026365e-5 + 2.400160e-5 = 4.207637e-4,
    # so 2.051253% a day and, times sqrt(365), 39.18913% a year.
    prices = [100.0, 102.0, 99.0, 101.0]
    # when
    daily = ewma(prices, lam=0.94, periods_per_year=1)
    annual = ewma(prices, lam=0.94, periods_per_year=365)
    # then
    assert daily == pytest.approx(math.sqrt(4.207637e-4), rel=1e-6)
    assert daily == pytest.approx(0.02051253, rel=1e-6)
    assert annual == pytest.approx(0.3918913, rel=1e-6)


def test_ewma_matches_the_recursion_on_a_long_series() -> None:
    # given a seeded year of prices and the recursion written as a loop
    prices = geometric_brownian_motion(0.5, drift=0.0, days=400, paths=1, seed=3)[0]
    returns = np.diff(np.log(prices))
    variance = returns[0] ** 2
    for value in returns[1:]:
        variance = 0.97 * variance + 0.03 * value**2
    # when, then
    assert ewma(prices, lam=0.97, periods_per_year=1) == pytest.approx(
        math.sqrt(variance), rel=1e-12
    )


def test_ewma_of_constant_absolute_returns_is_that_return() -> None:
    # given returns of +-1% whatever the order: every weighted mean of r^2 is 1e-4
    prices = 50.0 * np.exp(np.cumsum([0.0, 0.01, -0.01, -0.01, 0.01, 0.01, 0.01]))
    # when, then
    for lam in (0.5, 0.94, 0.99):
        assert ewma(prices, lam=lam, periods_per_year=365) == pytest.approx(
            0.01 * math.sqrt(365), rel=1e-12
        )


def test_ewma_variance_is_unbiased_across_seeded_paths() -> None:
    # given 4,000 independent 100-day paths with sigma = 60% a year and no drift
    sigma, days, paths = 0.6, 100, 4_000
    prices = geometric_brownian_motion(sigma, drift=0.0, days=days, paths=paths, seed=7)
    # when
    variances = np.array([ewma(path, lam=0.94) ** 2 for path in prices])
    # then the mean annualized variance is sigma^2, within 4 standard errors of the mean (the
    # standard error estimated from the sample itself: 0.4% of sigma^2 here). The weights sum
    # to one, so there is no bias but the drift term: E[r^2] = sigma^2 dt (1 + sigma^2 dt / 4),
    # 0.025% high. A seed of zero would lose weight lam^99 (0.2%), too little to see here; the
    # constant-returns test above catches it on a short series.
    standard_error = variances.std(ddof=1) / math.sqrt(paths)
    assert standard_error < 0.01 * sigma**2
    assert abs(variances.mean() - sigma**2) <= 4 * standard_error


def test_ewma_reacts_to_a_recent_shock_more_than_historical() -> None:
    # given 200 calm days, then three days of 10% moves
    calm = geometric_brownian_motion(0.2, drift=0.0, days=200, paths=1, seed=9)[0]
    shocked = np.concatenate([calm, calm[-1] * np.exp(np.cumsum([0.1, -0.1, 0.1]))])
    # when, then: EWMA weights the shock by 0.06 a day, the sample std by 1/202
    assert ewma(shocked) > 2 * historical(shocked)


@pytest.mark.parametrize("function", [historical, ewma])
@pytest.mark.parametrize(
    ("prices", "error"),
    [
        ([1.0, 0.0, 2.0], InvalidPrices),
        ([1.0, -1.0, 2.0], InvalidPrices),
        ([1.0, math.nan, 2.0], InvalidPrices),
        ([1.0, math.inf, 2.0], InvalidPrices),
        ([[1.0, 2.0], [3.0, 4.0]], InvalidPrices),
        (["a", "b", "c"], InvalidPrices),
        ([], TooFewPrices),
        ([1.0], TooFewPrices),
    ],
)
def test_invalid_series_raise_named_value_errors(
    function: object, prices: object, error: type[ValueError]
) -> None:
    assert issubclass(error, ValueError)
    with pytest.raises(error):
        function(prices)  # type: ignore[operator]


def test_historical_needs_three_prices_and_ewma_two() -> None:
    with pytest.raises(TooFewPrices):
        historical([1.0, 1.1])
    assert ewma([1.0, 1.1], periods_per_year=1) == pytest.approx(math.log(1.1), rel=1e-12)


@pytest.mark.parametrize("lam", [0.0, 1.0, -0.5, 1.5, math.nan])
def test_ewma_rejects_lambda_outside_the_unit_interval(lam: float) -> None:
    with pytest.raises(InvalidParameter):
        ewma([1.0, 1.1, 1.2], lam=lam)


@pytest.mark.parametrize("periods_per_year", [0.0, -365.0, math.inf, math.nan])
def test_periods_per_year_must_be_positive(periods_per_year: float) -> None:
    with pytest.raises(InvalidParameter):
        historical([1.0, 1.1, 1.2], periods_per_year=periods_per_year)
    with pytest.raises(InvalidParameter):
        ewma([1.0, 1.1, 1.2], periods_per_year=periods_per_year)


def test_docstring_examples() -> None:
    results = doctest.testmod(volatility)
    assert results.attempted > 0 and results.failed == 0
