"""Black-76 prices, Greeks and implied volatility ($/GPU-hr, years, annualized sigma)."""

from __future__ import annotations

import doctest
import math
import re

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from pricing import bench, black76
from pricing.black76 import (
    Greeks,
    InvalidOptionInput,
    PriceAboveUpperBound,
    PriceBelowIntrinsic,
    PriceOutsideBounds,
    greeks,
    implied_volatility,
    implied_volatility_result,
    implied_volatility_with_reasons,
    price,
)

# A warning from numpy means an unhandled edge case: fail on it.
pytestmark = pytest.mark.filterwarnings("error")

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, database=None)

# The wide grid of the issue: sigma 0.05..3, K/F 0.5..2, T one day..3 years, calls and puts.
GRID_SIGMA = np.linspace(0.05, 3.0, 60)
GRID_MONEYNESS = np.exp(np.linspace(math.log(0.5), math.log(2.0), 61))
GRID_EXPIRY = np.exp(np.linspace(math.log(1.0 / 365.0), math.log(3.0), 40))
GRID_FORWARD = 2.5  # $/GPU-hr
GRID_RATE = 0.05
VEGA_NEGLIGIBLE = 1e-8  # $/GPU-hr per 1.00 of sigma
ROUND_TRIP_TOLERANCE = 1e-10  # in sigma


def wide_grid() -> tuple[np.ndarray, ...]:
    """sigma, K, T and call on the wide grid, each of shape (60, 61, 40, 2)."""
    sigma, moneyness, expiry, call = np.meshgrid(
        GRID_SIGMA, GRID_MONEYNESS, GRID_EXPIRY, [True, False], indexing="ij"
    )
    return sigma, GRID_FORWARD * moneyness, expiry, call


def reference_price(F: float, K: float, T: float, r: float, sigma: float, call: bool) -> float:
    """The textbook formula, one option at a time with math.erfc: the slow reference."""
    discount = math.exp(-r * T)
    if sigma * math.sqrt(T) == 0.0:
        return discount * max((F - K) if call else (K - F), 0.0)
    stdev = sigma * math.sqrt(T)
    d1 = (math.log(F / K) + 0.5 * stdev * stdev) / stdev
    d2 = d1 - stdev

    def normal_cdf(value: float) -> float:
        return 0.5 * math.erfc(-value / math.sqrt(2.0))

    if call:
        return discount * (F * normal_cdf(d1) - K * normal_cdf(d2))
    return discount * (K * normal_cdf(-d2) - F * normal_cdf(-d1))


def test_hull_textbook_put() -> None:
    # given Hull, "Options, Futures, and Other Derivatives", the worked example of Black's model
    # for a European put futures option: F0 = 20, K = 20, r = 9%, T = 4 months, sigma = 25%,
    # whose value the book gives as 1.12 (1.1166 to four places).
    # when
    value = price(20.0, 20.0, 4.0 / 12.0, 0.09, 0.25, call=False)
    # then the book's figure, to the four places it prints
    assert value == pytest.approx(1.1166, abs=5e-5)
    # and at the money a call is worth the same (parity with F = K)
    assert price(20.0, 20.0, 4.0 / 12.0, 0.09, 0.25, call=True) == pytest.approx(value, abs=1e-14)


def test_price_matches_the_slow_reference() -> None:
    # given seeded random options over a wide range, priced one at a time by the textbook formula
    generator = np.random.default_rng(11)
    count = 2_000
    F = generator.uniform(0.5, 5.0, count)
    K = F * np.exp(generator.uniform(-1.0, 1.0, count))
    T = generator.uniform(0.0, 3.0, count)
    r = generator.uniform(-0.01, 0.1, count)
    sigma = generator.uniform(0.0, 3.0, count)
    call = generator.random(count) < 0.5
    expected = np.array(
        [reference_price(*arguments) for arguments in zip(F, K, T, r, sigma, call, strict=True)]
    )
    # when priced in one vectorized call
    values = price(F, K, T, r, sigma, call)
    # then they agree to rounding: the textbook formula loses up to a few ulps of max(F, K)
    # in the money, where N(d) is close to 1.
    np.testing.assert_allclose(values, expected, rtol=1e-13, atol=1e-14 * np.maximum(F, K).max())


def test_put_call_parity_on_a_grid() -> None:
    # given calls and puts on the wide grid
    sigma, K, T, _ = wide_grid()
    # when
    calls = price(GRID_FORWARD, K, T, GRID_RATE, sigma, True)
    puts = price(GRID_FORWARD, K, T, GRID_RATE, sigma, False)
    # then C - P = exp(-rT) (F - K), to rounding of values of a few dollars
    parity = np.exp(-GRID_RATE * T) * (GRID_FORWARD - K)
    np.testing.assert_allclose(calls - puts, parity, rtol=0, atol=1e-14)


@PROPERTY_SETTINGS
@given(
    F=st.floats(0.01, 100.0),
    moneyness=st.floats(0.2, 5.0),
    T=st.floats(0.0, 5.0),
    r=st.floats(-0.05, 0.2),
    sigma=st.floats(0.0, 4.0),
)
# At the strike with sigma sqrt(T) below the smallest float, though neither is 0: the value was
# NaN (0/0) until 2026-12-07 (found by this test in a CI run).
@example(F=1.0, moneyness=1.0, T=2.9322461749854965e-285, r=0.0, sigma=2.9322461749854965e-285)
def test_put_call_parity_and_bounds_hold_everywhere(
    F: float, moneyness: float, T: float, r: float, sigma: float
) -> None:
    # given any option in the domain
    K = F * moneyness
    discount = math.exp(-r * T)
    # when
    call_value = price(F, K, T, r, sigma, True)
    put_value = price(F, K, T, r, sigma, False)
    # then parity holds and both values lie within their no-arbitrage bounds
    scale = max(F, K)
    assert call_value - put_value == pytest.approx(discount * (F - K), abs=1e-14 * scale)
    assert discount * max(F - K, 0.0) - 1e-14 * scale <= call_value <= discount * F
    assert discount * max(K - F, 0.0) - 1e-14 * scale <= put_value <= discount * K


def test_zero_time_or_volatility_gives_discounted_intrinsic_without_warnings() -> None:
    # given strikes below, at and above the forward, with T = 0 or sigma = 0
    K = np.array([1.5, 2.0, 2.5])
    # when (a numpy warning fails every test in this module: see pytestmark)
    expired = price(2.0, K, 0.0, 0.05, 0.4, True)
    still = price(2.0, K, 0.5, 0.05, 0.0, False)
    expired_greeks = greeks(2.0, K, 0.0, 0.05, 0.4, True)
    still_greeks = greeks(2.0, K, 0.5, 0.05, 0.0, False)
    # then values are intrinsic, discounted
    np.testing.assert_allclose(expired, [0.5, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(still, math.exp(-0.025) * np.array([0.0, 0.0, 0.5]), atol=1e-15)
    # and Greeks are their limits: delta a step (half at the strike), gamma 0 off the strike
    np.testing.assert_allclose(expired_greeks.delta, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(still_greeks.delta, math.exp(-0.025) * np.array([0.0, -0.5, -1.0]))
    assert expired_greeks.gamma[0] == 0.0 and expired_greeks.gamma[2] == 0.0
    assert math.isinf(expired_greeks.gamma[1])
    np.testing.assert_allclose(expired_greeks.vega, 0.0)
    np.testing.assert_allclose(still_greeks.rho, -0.5 * still)


def test_greeks_match_central_finite_differences() -> None:
    # given a grid away from expiry, where the value is smooth
    sigma, moneyness, T, call = np.meshgrid(
        np.linspace(0.1, 2.0, 8),
        np.linspace(0.6, 1.6, 9),
        np.linspace(0.05, 3.0, 7),
        [True, False],
        indexing="ij",
    )
    F, r = 2.5, 0.04
    K = F * moneyness
    # when
    analytic = greeks(F, K, T, r, sigma, call)

    # then each matches a central difference. A step h leaves truncation errors of order
    # h^2 V''' and rounding errors of order eps V / h (eps V / h^2 for gamma): steps of
    # 1e-6 (1e-4 F for gamma) keep both well inside the tolerances.
    def value(**changes: float | np.ndarray) -> np.ndarray:
        arguments = {"F": F, "K": K, "T": T, "r": r, "sigma": sigma, "call": call} | changes
        return price(**arguments)

    step = 1e-6
    delta = (value(F=F + step) - value(F=F - step)) / (2 * step)
    vega = (value(sigma=sigma + step) - value(sigma=sigma - step)) / (2 * step)
    theta = -(value(T=T + step) - value(T=T - step)) / (2 * step)
    rho = (value(r=r + step) - value(r=r - step)) / (2 * step)
    step_gamma = 1e-4 * F
    gamma = (value(F=F + step_gamma) - 2 * value() + value(F=F - step_gamma)) / step_gamma**2
    np.testing.assert_allclose(analytic.delta, delta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(analytic.vega, vega, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(analytic.theta, theta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(analytic.rho, rho, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(analytic.gamma, gamma, rtol=1e-4, atol=1e-6)


def test_implied_volatility_round_trips_across_the_wide_grid() -> None:
    # given prices on the wide grid of sigma, moneyness, expiry, calls and puts
    sigma, K, T, call = wide_grid()
    values = price(GRID_FORWARD, K, T, GRID_RATE, sigma, call)
    vega = greeks(GRID_FORWARD, K, T, GRID_RATE, sigma, call).vega
    # when solved in one call
    result = implied_volatility_result(values, GRID_FORWARD, K, T, GRID_RATE, call)
    # then every option is solved, in two or three Halley steps for almost all of them
    assert result.converged.all() and not result.reasons.any()
    assert np.median(result.iterations) <= 3
    assert np.mean(result.iterations <= 3) > 0.95
    assert result.iterations.max() < black76.SOLVER_ITERATIONS_MAX
    error = np.abs(result.sigma - sigma)
    not_negligible = vega > VEGA_NEGLIGIBLE
    # and out-of-the-money options (the ones markets quote) round-trip to 1e-10 wherever vega
    # is not negligible
    out_of_the_money = np.where(call, K >= GRID_FORWARD, K <= GRID_FORWARD)
    assert error[not_negligible & out_of_the_money].max() <= ROUND_TRIP_TOLERANCE
    # and so do in-the-money options whose float price carries the digits: a price fixes sigma
    # only to ulp(price) / vega, which for a deep in-the-money option with a small vega is more
    # than 1e-10 whatever the solver does. Those are about 2% of the grid...
    with np.errstate(divide="ignore", over="ignore"):
        resolution = np.spacing(values) / vega
        bound = 1e-11 + 4.0 * resolution
    resolved = not_negligible & (resolution <= 1e-12)
    assert resolved.sum() > 0.96 * not_negligible.sum()
    assert error[resolved].max() <= ROUND_TRIP_TOLERANCE
    # ...and even for them the error stays within a few ulps of the price, over the vega.
    assert (error[not_negligible] <= bound[not_negligible]).all()


@PROPERTY_SETTINGS
@given(
    F=st.floats(0.05, 50.0),
    moneyness=st.floats(0.5, 2.0),
    T=st.floats(1.0 / 365.0, 3.0),
    r=st.floats(-0.02, 0.15),
    sigma=st.floats(0.05, 3.0),
    call=st.booleans(),
)
def test_implied_volatility_round_trips_a_scalar(
    F: float, moneyness: float, T: float, r: float, sigma: float, call: bool
) -> None:
    # given an option whose vega is not negligible and whose price resolves sigma
    K = F * moneyness
    value = price(F, K, T, r, sigma, call)
    vega = greeks(F, K, T, r, sigma, call).vega
    assume(vega > VEGA_NEGLIGIBLE and math.ulp(value) / vega <= 1e-12)
    # when
    solved = implied_volatility(value, F, K, T, r, call)
    # then
    assert isinstance(solved, float)
    assert solved == pytest.approx(sigma, abs=ROUND_TRIP_TOLERANCE)


def test_extreme_prices_solve_without_warnings() -> None:
    # given options far outside the usual grid: tiny and huge total volatility, far strikes
    generator = np.random.default_rng(5)
    count = 20_000
    F = np.exp(generator.uniform(-3.0, 3.0, count))
    K = F * np.exp(generator.uniform(-6.0, 6.0, count))
    T = np.exp(generator.uniform(math.log(1e-5), math.log(30.0), count))
    sigma = np.exp(generator.uniform(math.log(1e-3), math.log(10.0), count))
    call = generator.random(count) < 0.5
    values = price(F, K, T, 0.03, sigma, call)
    # when (a numpy warning fails every test in this module: see pytestmark)
    result = implied_volatility_result(values, F, K, T, 0.03, call)
    # then every price is solved, or rounds to its upper bound (sigma sqrt(T) in the tens)
    solved = result.reasons == ""
    assert set(np.unique(result.reasons)) <= {"", "above_upper_bound"}
    assert (np.sqrt(T) * sigma)[~solved].min() > 10.0
    assert result.converged[solved].all()
    # and the error is within the price's own resolution
    vega = greeks(F, K, T, 0.03, sigma, call).vega
    error = np.abs(result.sigma - sigma)[solved]
    resolution = (np.spacing(values) / np.maximum(vega, 1e-300))[solved]
    checked = vega[solved] > VEGA_NEGLIGIBLE * F[solved]
    assert (
        error[checked]
        <= 1e-10 * np.maximum(1.0, sigma[solved][checked]) + 4.0 * resolution[checked]
    ).all()


def test_price_at_intrinsic_value_implies_zero_volatility() -> None:
    # given prices exactly at the discounted intrinsic value, in and out of the money
    discount = math.exp(-0.05)
    # when, then
    assert implied_volatility(discount * 0.5, 2.0, 1.5, 1.0, 0.05, True) == 0.0
    assert implied_volatility(0.0, 2.0, 2.5, 1.0, 0.05, True) == 0.0


def test_scalar_price_below_intrinsic_raises() -> None:
    # given a call priced below exp(-rT) (F - K)
    intrinsic = math.exp(-0.05) * 0.5
    # when, then
    with pytest.raises(PriceBelowIntrinsic) as raised:
        implied_volatility(intrinsic - 1e-6, 2.0, 1.5, 1.0, 0.05, True)
    assert isinstance(raised.value, PriceOutsideBounds)
    assert isinstance(raised.value, ValueError)
    assert raised.value.reason == "below_intrinsic"


def test_scalar_price_at_or_above_upper_bound_raises() -> None:
    # given a call at exp(-rT) F and a put above exp(-rT) K, which no finite sigma reaches
    discount = math.exp(-0.05)
    # when, then
    with pytest.raises(PriceAboveUpperBound) as raised:
        implied_volatility(discount * 2.0, 2.0, 1.5, 1.0, 0.05, True)
    assert raised.value.reason == "above_upper_bound"
    with pytest.raises(PriceOutsideBounds):
        implied_volatility(discount * 1.5 + 1e-9, 2.0, 1.5, 1.0, 0.05, False)


def test_scalar_nan_price_raises_invalid_input() -> None:
    with pytest.raises(InvalidOptionInput):
        implied_volatility(math.nan, 2.0, 1.5, 1.0, 0.05, True)


def test_array_prices_outside_bounds_give_nan_with_reasons() -> None:
    # given calls F = 2, K = 1.5, T = 1, r = 5%: below intrinsic, fair, at the upper bound, NaN
    discount = math.exp(-0.05)
    fair = price(2.0, 1.5, 1.0, 0.05, 0.6, True)
    values = np.array([discount * 0.5 - 1e-6, fair, discount * 2.0, math.nan])
    # when
    sigma, reasons = implied_volatility_with_reasons(values, 2.0, 1.5, 1.0, 0.05, True)
    plain = implied_volatility(values, 2.0, 1.5, 1.0, 0.05, True)
    # then NaN with a reason at each bad position, and no exception
    assert reasons.tolist() == ["below_intrinsic", "", "above_upper_bound", "nan_price"]
    assert np.isnan(sigma[[0, 2, 3]]).all()
    assert sigma[1] == pytest.approx(0.6, abs=1e-12)
    np.testing.assert_array_equal(plain, sigma)


def test_prices_within_rounding_below_intrinsic_count_as_intrinsic() -> None:
    # given a deep in-the-money put at a tiny volatility, whose value rounds to intrinsic
    value = price(1.0, 3.0, 0.5, 0.02, 0.01, False)
    intrinsic = math.exp(-0.01) * 2.0
    assert abs(value - intrinsic) <= 4 * math.ulp(intrinsic)
    # when, then: sigma 0 rather than an arbitrage error
    assert implied_volatility(math.nextafter(intrinsic, 0.0), 1.0, 3.0, 0.5, 0.02, False) == 0.0


def test_broadcasting_shapes() -> None:
    # given forwards down a column, strikes along a row and call/put in a third axis
    F = np.array([[1.0], [2.0], [3.0]])
    K = np.array([1.5, 2.0, 2.5, 3.0])
    call = np.array([True, False]).reshape(2, 1, 1)
    # when
    values = price(F, K, 0.5, 0.03, 0.6, call)
    sensitivities = greeks(F, K, 0.5, 0.03, 0.6, call)
    sigma, reasons = implied_volatility_with_reasons(values, F, K, 0.5, 0.03, call)
    # then everything has the broadcast shape
    assert values.shape == (2, 3, 4)
    assert all(np.shape(field) == (2, 3, 4) for field in sensitivities)
    assert sigma.shape == reasons.shape == (2, 3, 4)
    np.testing.assert_allclose(sigma, 0.6, atol=1e-12)
    # and one option of the array equals its scalar price
    assert values[1, 2, 0] == pytest.approx(price(3.0, 1.5, 0.5, 0.03, 0.6, False), abs=1e-15)


def test_scalars_give_floats_and_arrays_give_arrays() -> None:
    assert type(price(2.0, 2.0, 1.0, 0.0, 0.5, True)) is float
    assert isinstance(price(np.array(2.0), 2.0, 1.0, 0.0, 0.5, True), np.ndarray)
    assert isinstance(price([2.0], 2.0, 1.0, 0.0, 0.5, True), np.ndarray)
    scalar_greeks = greeks(2.0, 2.0, 1.0, 0.0, 0.5, True)
    assert isinstance(scalar_greeks, Greeks)
    assert all(type(field) is float for field in scalar_greeks)
    assert type(implied_volatility(0.4, 2.0, 2.0, 1.0, 0.0, True)) is float
    sigma, reasons = implied_volatility_with_reasons(0.4, 2.0, 2.0, 1.0, 0.0, True)
    assert sigma.shape == reasons.shape == ()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"F": 0.0}, "F"),
        ({"F": -1.0}, "F"),
        ({"K": math.nan}, "K"),
        ({"T": -0.1}, "T"),
        ({"sigma": -0.2}, "sigma"),
        ({"r": math.inf}, "r"),
        ({"F": np.array([1.0, math.inf])}, "F"),
        ({"call": 1}, "call"),
        ({"call": "call"}, "call"),
        ({"F": "two"}, "F"),
    ],
)
def test_invalid_inputs_raise(arguments: dict[str, object], message: str) -> None:
    inputs = {"F": 2.0, "K": 2.0, "T": 1.0, "r": 0.0, "sigma": 0.5, "call": True} | arguments
    with pytest.raises(InvalidOptionInput, match=message):
        price(**inputs)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionInput, match=message):
        greeks(**inputs)  # type: ignore[arg-type]


def test_implied_volatility_needs_time_to_expiry() -> None:
    with pytest.raises(InvalidOptionInput, match="T"):
        implied_volatility(0.1, 2.0, 2.0, 0.0, 0.0, True)


def test_docstring_examples() -> None:
    results = doctest.testmod(black76)
    assert results.attempted > 0 and results.failed == 0


def test_bench_prints_both_rates_last(capsys: pytest.CaptureFixture[str]) -> None:
    # given a tiny run of the benchmark
    assert bench.main(["--prices", "2000", "--implied-vols", "500", "--repeats", "1"]) == 0
    # then its last line is the machine-readable pair of rates
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"prices_per_second=\d+ implied_vols_per_second=\d+", lines[-1])


def test_theta_at_expiry_away_from_the_strike_is_the_discounting_alone():
    # given an in-the-money call at expiry: its value is the discounted intrinsic value
    rate, step = 0.05, 1e-7

    theta = black76.greeks(2.0, 1.5, 0.0, rate, 0.4, True).theta

    # then theta is -dV/dT, here r x intrinsic (a forward difference: T cannot go below 0)
    forward_difference = -(black76.price(2.0, 1.5, step, rate, 0.4, True) - 0.5) / step
    assert theta == pytest.approx(rate * 0.5)
    assert theta == pytest.approx(forward_difference, rel=1e-5)
