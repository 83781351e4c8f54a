"""Scenario margin: the 16 SPAN scenarios, monotone in size, minimums and offsets."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pricing import black76
from pricing.margin import (
    SCENARIO_COUNT,
    Position,
    ScanParameters,
    portfolio_margin,
    scenario_margin,
    scenarios,
)

HOURS = 730  # GPU-hours in a monthly contract of about 730 hours.


def test_there_are_sixteen_scenarios_with_the_extremes_weighted():
    table = scenarios(0.15, 0.10)

    assert table.shape == (SCENARIO_COUNT, 3)
    moves = sorted(set(np.round(table[:14, 0] / 0.15 * 3).astype(int)))
    assert moves == [-3, -2, -1, 0, 1, 2, 3]
    assert sorted(set(table[:14, 1])) == [-0.10, 0.10]
    assert list(table[14:, 0]) == [0.30, -0.30] and list(table[14:, 2]) == [0.35, 0.35]


def test_a_long_future_loses_the_full_price_scan_on_the_way_down():
    # given 10 contracts long at $2.40/GPU-hr and a 15% price scan
    result = scenario_margin([Position(10, HOURS)], forward=2.40, sigma=0.6)

    # then the worst of the down moves: the full scan range (the 2x extreme counts 35%: 0.7x)
    assert result.scan_risk == pytest.approx(10 * HOURS * 2.40 * 0.15)
    assert result.delta == pytest.approx(10 * HOURS)


def test_a_hedged_position_needs_less_than_its_parts():
    future = [Position(-10, HOURS)]
    call = [Position(10, HOURS, strike=2.40, call=True, expiry_years=0.25)]

    both = scenario_margin(future + call, forward=2.40, sigma=0.6).margin
    alone = scenario_margin(future, forward=2.40, sigma=0.6).margin

    assert both < alone


def test_short_options_pay_at_least_the_minimum():
    # given a deep out-of-the-money short call whose scan risk is tiny
    short = [Position(-5, HOURS, strike=10.0, call=True, expiry_years=0.1)]
    parameters = ScanParameters(short_option_minimum=25.0)

    result = scenario_margin(short, forward=2.40, sigma=0.5, parameters=parameters)

    assert result.short_option_minimum == 125.0
    assert result.margin == max(result.scan_risk, 125.0) == 125.0


@given(
    quantity=st.integers(1, 500),
    extra=st.integers(1, 500),
    strike=st.floats(1.0, 4.0),
    call=st.booleans(),
    short=st.booleans(),
)
def test_margin_never_falls_as_a_position_grows(quantity, extra, strike, call, short):
    sign = -1 if short else 1

    def margin(size):
        position = Position(sign * size, HOURS, strike=strike, call=call, expiry_years=0.3)
        return scenario_margin([position], forward=2.4, sigma=0.7).margin

    assert margin(quantity + extra) >= margin(quantity) - 1e-9
    # Linear in size: one portfolio of n contracts is n portfolios of one.
    assert margin(2 * quantity) == pytest.approx(2 * margin(quantity), rel=1e-9)


def test_an_option_scenario_values_by_black76():
    # One scenario recomputed by hand: down a full scan, volatility up.
    position = Position(3, HOURS, strike=2.5, call=False, expiry_years=0.5)
    result = scenario_margin([position], forward=2.4, sigma=0.6)

    base = black76.price(2.4, 2.5, 0.5, 0.0, 0.6, False)
    moved = black76.price(2.4 * 0.85, 2.5, 0.5, 0.0, 0.7, False)
    expected = 3 * HOURS * (base - moved)
    assert np.isclose(result.scenario_losses, expected, rtol=1e-12).any()


def test_offsets_credit_opposite_deltas_once_and_never_below_the_largest():
    near = scenario_margin([Position(10, HOURS)], forward=2.40, sigma=0.6)
    far = scenario_margin([Position(-10, HOURS)], forward=2.30, sigma=0.6)
    same_way = scenario_margin([Position(10, HOURS)], forward=2.30, sigma=0.6)
    rates = {frozenset({"near", "far"}): 0.5, frozenset({"near", "same"}): 0.5}

    hedged = portfolio_margin({"near": near, "far": far}, rates)
    unhedged = portfolio_margin({"near": near, "same": same_way}, rates)

    assert hedged == pytest.approx(near.margin + far.margin - 0.5 * far.scan_risk)
    assert unhedged == pytest.approx(near.margin + same_way.margin)
    assert hedged >= max(near.margin, far.margin)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        scenario_margin([Position(1, HOURS)], forward=0.0, sigma=0.5)
    with pytest.raises(ValueError):
        portfolio_margin({}, {frozenset({"a", "b"}): 1.5})


def test_the_portfolio_delta_is_the_sum_of_black76_deltas():
    future = Position(-4, HOURS)
    put = Position(10, HOURS, strike=2.3, call=False, expiry_years=0.4)

    result = scenario_margin([future, put], forward=2.4, sigma=0.6)

    put_delta = black76.greeks(2.4, 2.3, 0.4, 0.0, 0.6, False).delta
    assert result.delta == pytest.approx(-4 * HOURS + 10 * HOURS * put_delta)


def test_an_option_needs_its_time_to_expiry_and_a_low_volatility_is_scanned_down_to_zero():
    with pytest.raises(ValueError):
        Position(1, HOURS, strike=2.4)

    result = scenario_margin(
        [Position(-1, HOURS, strike=2.4, expiry_years=0.2)], forward=2.4, sigma=0.05
    )

    assert result.scan_risk > 0
